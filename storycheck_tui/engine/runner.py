"""The runner: claims jobs, checks them on worker threads, writes results in group commits.

Threads it owns (all daemon threads, all stopped by :meth:`Runner.stop`):

* ``claimer``   claims jobs from the database into a local inbox while proxies are usable;
* ``check-N``   worker threads: one check at a time, never inside a transaction;
* ``writer``    every ``commit_every`` seconds, one transaction: fenced finishes, counters,
  stories, log rows, releases;
* ``keeper``    heartbeat and lease extension, reaper, batch-state and proxy sync with the
  database (so pause and proxy changes made elsewhere arrive within a second or two);
* ``validator`` re-checks cooling/dead proxies against the source's health URL.

A runner with ``workers=0`` only watches: the console uses it to show work done by
``storycheck worker`` processes elsewhere.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass

from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine.checker import Checker
from storycheck_tui.engine.proxies import DISABLED, ProxyPool, ProxyView
from storycheck_tui.engine import proxysync
from storycheck_tui.errors import AuthFailed, CheckError, NoProxyAvailable
from storycheck_tui.sources.base import StorySource
from storycheck_tui.store import batches as batch_ops
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as registry
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import PAUSED, QUEUED, RUNNING, Worker
from storycheck_tui.store.spend import log_budget_pauses

log = logging.getLogger("storycheck.engine")

CLAIMABLE = (QUEUED, RUNNING)


@dataclass(frozen=True)
class WorkerView:
    id: str
    host: str
    pid: int
    threads: int
    state: str
    heartbeat_age: float
    checks: int
    rate: float


@dataclass(frozen=True)
class EngineSnapshot:
    taken_at: float
    worker_id: str
    threads: int
    running: bool
    in_flight: int
    rate: float  # checks/s finished by this process over the last RATE_WINDOW seconds
    finished: int  # by this process since start
    batches: tuple[BatchView, ...] = ()
    proxies: tuple[ProxyView, ...] = ()
    workers: tuple[WorkerView, ...] = ()
    waiting_for_proxy: bool = False
    db_rate: float = 0.0  # checks/s of all workers (from their heartbeats)

    @property
    def usable_proxies(self) -> int:
        return sum(1 for p in self.proxies if p.state in ("unchecked", "healthy")
                   or (p.state == "cooling" and (p.cooldown_until or 0) <= self.taken_at))


RATE_WINDOW = 10.0


class Runner:
    def __init__(self, store: Store, settings: Settings, source: StorySource | None, pool: ProxyPool, *,
                 workers: int | None = None, batch_ids: list[int] | None = None, worker_id: str | None = None):
        self.store = store
        self.settings = settings
        self.source = source
        self.pool = pool
        self.threads = settings.engine.workers if workers is None else workers
        self.batch_ids = batch_ids
        self.worker_id = worker_id or registry.new_worker_id()
        self._stop = threading.Event()  # stop claiming and starting checks
        self._abort = threading.Event()  # grace is over: interrupt waits inside checks
        self._hurry = threading.Event()  # the operator asked again: cut the grace short
        # C-level queues: a check passes through two of them, and queue.Queue's Python-level
        # locking cost more than the rest of the hand-off
        self._inbox: queue.SimpleQueue[q.Claimed] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[q.JobResult] = queue.SimpleQueue()
        self._to_release: queue.SimpleQueue[tuple[q.Claimed, float]] = queue.SimpleQueue()
        self._held: dict[int, q.Claimed] = {}  # claimed, no result recorded yet
        self._held_lock = threading.Lock()
        # what each check thread is checking (None: waiting); one slot per thread, written only
        # by its thread, so counting needs no lock
        self._checking: list[q.Claimed | None] = [None] * self.threads
        self._finished_times: collections.deque[float] = collections.deque(maxlen=100_000)
        self._finished = 0
        self._batch_states: dict[int, str] = {}
        self._batches: tuple[BatchView, ...] = ()
        self._workers: tuple[WorkerView, ...] = ()
        self._waiting_for_proxy = False
        self._wake_claimer = threading.Event()
        self._written = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._checker = Checker(source, pool, settings.retry, stop=self._abort) if source else None
        self._proxy_sync = proxysync.ProxySync(store, pool)
        self.started = False
        self.crashed = False  # an engine thread died on an unexpected error

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Runner":
        if self.threads:
            registry.register_worker(self.store, self.worker_id, self.threads)
            registry.expire_dead_local_workers(self.store, self.worker_id)
            where = "direct (no proxies)" if self.pool.direct else f"{len(self.pool)} proxies"
            logs.event(logging.INFO, logs.WORKER_STARTED,
                       f"worker {self.worker_id} started with {self.threads} check threads, {where}")
            if self.pool.direct:
                logs.event(logging.WARNING, logs.NO_PROXY, "no proxies configured: requests go direct from this machine")
        self._refresh()
        self._spawn("keeper", self._keeper_loop)
        if self.threads:
            self._spawn("writer", self._writer_loop)
            self._spawn("claimer", self._claimer_loop)
            self._spawn("validator", self._validator_loop)
            for i in range(self.threads):
                self._spawn(f"check-{i}", functools.partial(self._check_loop, i))
        self.started = True
        return self

    def _spawn(self, name: str, target) -> None:
        t = threading.Thread(target=self._guard(target), name=f"storycheck-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target):
        def run() -> None:
            try:
                target()
            except Exception:
                log.critical("engine thread %s crashed; stopping this worker", threading.current_thread().name,
                             exc_info=True, extra={"event": "ENGINE_CRASH"})
                self.crashed = True
                self._stop.set()
                self._abort.set()
        return run

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let in-flight checks finish for ``grace`` seconds; release the rest."""
        if not self.started or self._stop.is_set() and self._abort.is_set():
            self._join(1.0)
            return
        grace = self.settings.engine.grace_seconds if grace is None else grace
        self._stop.set()
        self._wake_claimer.set()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._busy() and not self._hurry.is_set():
            time.sleep(0.02)
        self._abort.set()
        self._join(2.0)
        # Whatever is still held is handed back: a late result is then fenced out.
        with self._held_lock:
            leftover = list(self._held.values())
        if self.threads:
            try:
                self._flush()
                released = q.release(self.store, self.worker_id, leftover)
                if released:
                    logs.event(logging.INFO, logs.WORKER_STOPPED,
                               f"{released} unfinished checks handed back to the queue")
                self._log_proxy_changes()
                self._proxy_sync.sync()
                registry.stop_worker(self.store, self.worker_id)
                logs.event(logging.INFO, logs.WORKER_STOPPED, f"worker {self.worker_id} stopped")
                batch_ops.flush_logs(self.store)
            except Exception:
                log.error("could not hand back unfinished checks; their leases will expire", exc_info=True)
        if self.source is not None:
            self.source.close()

    def _join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def hurry(self) -> None:
        """End the grace period of a :meth:`stop` now (a second Ctrl-C); unfinished checks are still
        handed back to the queue, so no lease is left behind."""
        self._hurry.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_done(self, batch_ids: list[int], timeout: float | None = None, poll: float = 0.2) -> bool:
        """Block until none of ``batch_ids`` has pending or running work (or timeout)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            views = [batch_ops.get_batch(self.store, b) for b in batch_ids]
            if all(v.state not in CLAIMABLE or v.remaining == 0 for v in views) and not self._busy_for(batch_ids):
                return True
            if self._stop.is_set() or (end is not None and time.monotonic() >= end):
                return False
            time.sleep(poll)

    def _busy_for(self, batch_ids: list[int]) -> bool:
        with self._held_lock:
            return any(c.batch_id in batch_ids for c in self._held.values()) or not self._results.empty()

    def idle(self) -> bool:
        """Nothing claimable is left anywhere and this worker holds nothing."""
        with self._held_lock:
            if self._held:
                return False
        try:
            return q.open_jobs(self.store, self.batch_ids or None) == 0
        except PeeweeException:  # the database is away for now: certainly not idle
            self.store.recover()
            return False

    # -- snapshot and commands --------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        now = time.time()
        cutoff = time.monotonic() - RATE_WINDOW
        times = list(self._finished_times)  # one C-level copy: iterating the deque while the writer
        recent = len(times) - bisect.bisect_left(times, cutoff)  # appends raised "deque mutated"
        with self._held_lock:
            in_flight = len(self._held)
        return EngineSnapshot(
            taken_at=now, worker_id=self.worker_id, threads=self.threads, running=not self._stop.is_set(),
            in_flight=in_flight, rate=recent / RATE_WINDOW, finished=self._finished, batches=self._batches,
            proxies=tuple(self._proxy_sync.views()), workers=self._workers, waiting_for_proxy=self._waiting_for_proxy,
            db_rate=sum(w.rate for w in self._workers if w.state == "running"),
        )

    def refresh(self) -> None:
        """Re-read batches and workers now (after a change made outside these commands, e.g. a new batch)."""
        self._refresh()

    def pause(self, batch_id: int) -> bool:
        changed = batch_ops.pause(self.store, batch_id, "paused by operator")
        self._refresh()
        return changed

    def resume(self, batch_id: int) -> bool:
        changed = batch_ops.resume(self.store, batch_id)
        self._refresh()
        self._wake_claimer.set()
        return changed

    def cancel(self, batch_id: int) -> int:
        n = batch_ops.cancel(self.store, batch_id)
        self._refresh()
        return n

    def retry_failed(self, batch_id: int) -> int:
        n = batch_ops.retry_failed(self.store, batch_id)
        self._refresh()
        self._wake_claimer.set()
        return n

    def set_proxy_disabled(self, key: str, disabled: bool) -> bool:
        changed = batch_ops.set_proxy_disabled(self.store, int(key), disabled) if key.isdigit() else False
        (self.pool.disable if disabled else self.pool.enable)(key)
        self._wake_claimer.set()
        return changed

    def toggle_proxy(self, key: str) -> bool:
        """Disable an enabled proxy, enable a disabled one; returns True if now disabled."""
        disable = self.pool.state_of(key) != DISABLED
        self.set_proxy_disabled(key, disable)
        return disable

    def retry_proxy(self, key: str) -> None:
        self.pool.retry(key)
        self._proxy_sync.request_validation(key)

    def revalidate_all(self) -> None:
        for v in self.pool.views():
            if v.state != DISABLED:
                self.retry_proxy(v.key)

    # -- threads ---------------------------------------------------------------------------------

    def _claimer_loop(self) -> None:
        eng = self.settings.engine
        said_waiting = False
        while not self._stop.is_set():
            want = min(eng.claim_size, self.threads + 2 * eng.claim_size - self._inbox.qsize() - self._busy())
            if want <= 0 or not self._claimable_batches():
                self._wake_claimer.wait(0.2)
                self._wake_claimer.clear()
                continue
            if self.pool.usable_count() == 0:
                self._waiting_for_proxy = True
                if not said_waiting:
                    logs.event(logging.WARNING, logs.NO_PROXY,
                               "no usable proxy: all are cooling, dead or disabled; batches wait until one is back")
                    said_waiting = True
                self._wake_claimer.wait(0.5)
                self._wake_claimer.clear()
                continue
            if said_waiting:
                logs.event(logging.INFO, logs.PROXY_RECOVERED, "a proxy is usable again; checks resume")
                said_waiting = False
            self._waiting_for_proxy = False
            try:
                claimed = q.claim(self.store, self.worker_id, eng.lease_seconds, want, self._claimable_batches())
            except PeeweeException:
                # The database went away (restart, failover, network) or the claim lost a lock
                # conflict: nothing was claimed. Keep the worker alive and try again shortly.
                log.error("could not claim jobs; will retry", exc_info=True)
                self.store.recover()
                self._stop.wait(1.0)
                continue
            if not claimed:
                self._wake_claimer.wait(0.5)
                self._wake_claimer.clear()
                continue
            with self._held_lock:
                for c in claimed:
                    self._held[c.id] = c
            for c in claimed:
                self._inbox.put(c)

    def _claimable_batches(self) -> list[int]:
        ids = [b for b, s in self._batch_states.items() if s in CLAIMABLE]
        if self.batch_ids is not None:
            ids = [b for b in ids if b in self.batch_ids]
        return ids

    def _check_loop(self, slot: int) -> None:
        assert self._checker is not None
        while not self._stop.is_set():
            try:
                job = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._inbox.qsize() < self.settings.engine.claim_size and not self._wake_claimer.is_set():
                self._wake_claimer.set()  # running low: claim now, not at the claimer's next 0.2 s tick
            if self._stop.is_set() or self._batch_states.get(job.batch_id) not in CLAIMABLE:
                self._to_release.put((job, 0.0))  # paused, cancelled, or shutting down
                continue
            self._checking[slot] = job
            try:
                logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, f"{job.username}: checking",
                           batch_id=job.batch_id, job_id=job.id, username=job.username, attempt=job.attempts)
                result = self._checker.check(job)
            except NoProxyAvailable:
                self._to_release.put((job, 1.0))
                self._wake_claimer.set()
                continue
            except AuthFailed as err:
                self._to_release.put((job, 0.0))
                self._auth_failed(job, err)
                continue
            finally:
                self._checking[slot] = None
            self._results.put(result)
        # the inbox is handed back on stop
        while True:
            try:
                self._to_release.put((self._inbox.get_nowait(), 0.0))
            except queue.Empty:
                break

    def _busy(self) -> int:
        """Check threads in a check right now."""
        return sum(job is not None for job in self._checking)

    def _auth_failed(self, job: q.Claimed, err: CheckError) -> None:
        reason = f"the story source refused the credentials (HTTP {err.status}): {err.message}; fix the API key, then resume"
        if batch_ops.pause(self.store, job.batch_id, reason, level=logging.ERROR):
            logs.event(logging.ERROR, logs.BATCH_PAUSED, f"batch {job.batch_id} paused: {reason}",
                       batch_id=job.batch_id, job_id=job.id, username=job.username, status=err.status,
                       error_type=type(err).__name__, proxy=err.proxy)
        self._batch_states[job.batch_id] = PAUSED

    def _writer_loop(self) -> None:
        every = self.settings.engine.commit_every
        while not self._abort.is_set():
            time.sleep(every)
            self._flush()

    def _flush(self) -> None:
        results = _drain(self._results)
        releases = _drain(self._to_release)
        entries = logs._setup.sink.drain() if logs._setup else []
        if not results and not releases and not entries:
            return
        try:
            report = q.finish(self.store, self.worker_id, results, entries)
            by_delay: dict[float, list[q.Claimed]] = collections.defaultdict(list)
            for job, delay in releases:
                by_delay[delay].append(job)
            for delay, jobs in by_delay.items():
                q.release(self.store, self.worker_id, jobs, delay=delay)
        except Exception:
            # Nothing is lost: put everything back and try again on the next tick.
            log.error("could not write %d results; will retry", len(results), exc_info=True)
            self.store.recover()
            for r in results:
                self._results.put(r)
            for item in releases:
                self._to_release.put(item)
            if logs._setup:
                logs._setup.sink.requeue(entries)
            return
        done = {r.job.id for r in results} | {j.id for j, _ in releases}
        with self._held_lock:
            for job_id in done:
                self._held.pop(job_id, None)
        stamp = time.monotonic()
        times = self._finished_times  # only this (writer) thread changes it; it keeps RATE_WINDOW seconds
        while times and times[0] < stamp - RATE_WINDOW:
            times.popleft()
        for r, (level, event, message) in zip(report.applied, report.messages):
            self._finished += 1
            times.append(stamp)
            logs.event(logging.getLevelName(level), event, message, persisted=True, batch_id=r.job.batch_id,
                       job_id=r.job.id, username=r.job.username, proxy=r.proxy, attempt=r.job.attempts,
                       status=r.http_status, error_type=r.error_kind)
        for r in report.stale:
            logs.event(logging.WARNING, logs.LEASE_LOST,
                       f"{r.job.username}: result dropped: this worker no longer holds the job (its lease expired "
                       f"and another worker took it)", batch_id=r.job.batch_id, job_id=r.job.id, username=r.job.username)
        q.log_batches_finished(report.finished_batches)
        log_budget_pauses(report.paused_batches)
        if report.finished_batches or report.paused_batches:
            self._refresh()

    def _keeper_loop(self) -> None:
        eng = self.settings.engine
        last_beat = last_reap = 0.0
        while not self._abort.is_set():
            now = time.monotonic()
            try:
                self._refresh()
                # Log the pool's transitions first: that marks them for the sync, so a state
                # reaches the database in the same pass, never before its log record.
                self._log_proxy_changes()
                self._proxy_sync.sync()
                if self.threads and now - last_beat >= eng.heartbeat_every:
                    registry.heartbeat(self.store, self.worker_id, checks=self._finished, rate=self.snapshot().rate,
                                       lease_seconds=eng.lease_seconds, state="stopping" if self._stop.is_set() else "running")
                    last_beat = now
                if self.threads and now - last_reap >= min(5.0, eng.lease_seconds / 4):
                    registry.expire_dead_local_workers(self.store, self.worker_id)
                    registry.mark_lost_workers(self.store, eng.lease_seconds)
                    q.reap_expired(self.store, self.settings.retry.max_claims)  # logs what it reaped
                    last_reap = now
                    self._wake_claimer.set()
            except Exception:
                log.error("database upkeep failed; will retry", exc_info=True)
                self.store.recover()
            self._abort.wait(0.5)

    def _refresh(self) -> None:
        views = batch_ops.list_batches(self.store)
        self._batches = tuple(views)
        states = {v.id: v.state for v in views}
        woke = any(s in CLAIMABLE and self._batch_states.get(b) not in CLAIMABLE for b, s in states.items())
        self._batch_states = states
        if woke:
            self._wake_claimer.set()
        wall = q.now(self.store)
        self._workers = tuple(
            WorkerView(w.id, w.host, w.pid, w.threads, w.state, max(0.0, wall - w.heartbeat_at), w.checks, w.rate)
            for w in Worker.select().where(
                ((Worker.state != "stopped") & (Worker.heartbeat_at > wall - registry.WORKER_SHOWN_FOR))
                | (Worker.heartbeat_at > wall - 60))
            .order_by(Worker.started_at))

    def _log_proxy_changes(self) -> None:
        for key, state, reason in self.pool.drain_changes():
            if self.threads:
                # A watch-only runner (the console of `storycheck worker`s) learned nothing first-hand:
                # writing its pool back would blank the workers' latency and last error in the database.
                self._proxy_sync.mark_changed(key)
            route = self.pool.route(key)
            label = route.label if route else key
            event = proxysync.EVENT_FOR_STATE.get(state)
            if event is None or reason in proxysync.OPERATOR_REASONS:
                continue
            level = logging.ERROR if state == "dead" else logging.WARNING if state == "cooling" else logging.INFO
            logs.event(level, event, f"proxy {label} is {state}" + (f": {reason}" if reason else ""), proxy=label)
        self._wake_claimer.set()

    def _validator_loop(self) -> None:
        assert self.source is not None
        while not self._abort.is_set():
            for route in self.pool.due_for_validation():
                if self._abort.is_set():
                    break
                try:
                    latency = self.source.health(route)
                    self.pool.validated(route.key, True, latency, None)
                except CheckError as err:
                    self.pool.validated(route.key, False, None, err.message)
                except Exception as exc:
                    self.pool.validated(route.key, False, None, f"{type(exc).__name__}: {exc}")
            self._abort.wait(0.5)


def _drain(qu: queue.SimpleQueue) -> list:
    out = []
    while True:
        try:
            out.append(qu.get_nowait())
        except queue.Empty:
            return out


__all__ = ["Runner", "EngineSnapshot", "WorkerView"]
