"""The runner: starts, supervises and stops one worker's threads; the operator's commands.

Threads it starts (all daemon threads, all stopped by :meth:`Runner.stop`), each the owner of
the state its module names:

* ``claimer``   (:mod:`.claimer`) claims jobs into a local inbox while proxies are usable;
* ``check-N``   (:mod:`.checks`) one check at a time each, never inside a transaction;
* ``writer``    (:mod:`.writer`) every ``commit_every`` seconds, one transaction: fenced
  finishes, counters, stories, log rows, releases; it owns the ledger of held jobs;
* ``keeper``    (:mod:`.keeper`) batch states, heartbeat and leases, reaper, proxy sync;
* ``validator`` (:mod:`.validator`) re-checks cooling/dead proxies.

The runner itself owns only the lifecycle flags (``_stop``, ``_abort``, ``_hurry``) and the
thread list, written by the thread that calls :meth:`start`/:meth:`stop`. Operator commands
write to the database on the caller's thread and then ask the keeper to re-read
(:meth:`BatchBoard.request`), or go to the proxy pool, which guards its own state.

A runner with ``workers=0`` only watches: the console uses it to show work done by
``storycheck worker`` processes elsewhere.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass

from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine import blocked, proxysync
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.breaker import BreakerView, CircuitBreaker
from storycheck_tui.engine.pace import PACE_CHANGED, PaceView, SourcePace, key_of
from storycheck_tui.engine.checker import Checker
from storycheck_tui.engine.checks import CheckThreads
from storycheck_tui.engine.claimer import Claimer
from storycheck_tui.engine.keeper import Keeper
from storycheck_tui.engine.knobs import KnobApplier
from storycheck_tui.engine.proxies import DISABLED, ProxyPool, ProxyView
from storycheck_tui.engine.validator import run_validator
from storycheck_tui.engine.writer import Writer
from storycheck_tui.logs import BatchLogSink
from storycheck_tui.sources.base import StorySource
from storycheck_tui.states import CLAIMABLE
from storycheck_tui.store import batches as batch_ops
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as registry
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.db import Store
from storycheck_tui.store.logrows import store_logs

log = logging.getLogger("storycheck.engine")


@dataclass(frozen=True)
class EngineSnapshot:
    taken_at: float
    worker_id: str
    threads: int
    running: bool
    in_flight: int
    rate: float  # checks/s finished by this process over the last writer.RATE_WINDOW seconds
    finished: int  # by this process since start
    batches: tuple[BatchView, ...] = ()
    proxies: tuple[ProxyView, ...] = ()
    waiting_for_proxy: bool = False
    circuit: BreakerView | None = None  # the source's circuit breaker (state "closed" normally)
    pace: PaceView | None = None  # the pace of requests to the source and why it last changed
    #: why nothing can be sent now, one line (no usable proxy and each one's reason, the circuit
    #: open, waiting for Retry-After); None while checks can go out
    blocked_reason: str | None = None


class Runner:
    def __init__(self, store: Store, settings: Settings, source: StorySource | None, pool: ProxyPool, *,
                 workers: int | None = None, batch_ids: list[int] | None = None, worker_id: str | None = None,
                 batch_log: BatchLogSink | None = None):
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
        self._wake_claimer = threading.Event()
        self._threads: list[threading.Thread] = []
        inbox: queue.SimpleQueue[q.Claimed | None] = queue.SimpleQueue()  # None: a wake-up (stop)
        self._inbox = inbox
        self._batch_log = batch_log
        self.board = BatchBoard(store, self._wake_claimer.set)
        self.writer = Writer(store, self.worker_id, self.board, batch_log, settings.engine.commit_every)
        self._proxy_sync = proxysync.ProxySync(store, pool)
        # what the database says now is what the pool was built from: only later changes are news
        # (a stale row read first would undo what the checks find before the keeper's first sync)
        self._proxy_sync.adopt_all()
        # guards its own state with its lock; it opens when this many different profiles failed
        # (fewer check threads than that could not see them all before their attempts ran out)
        self.breaker = CircuitBreaker(min_profiles=max(2, min(5, self.threads)))
        # the pace of requests to the source (one API key), found by the engine; guards its own state
        self.pace = SourcePace(cap=settings.source.max_rate)
        self.pace_key = key_of(settings.source.url, settings.source.headers)
        knobs = KnobApplier(pace=self.pace, own_cap=settings.source.max_rate, own_threads=self.threads,
                            set_threads=self._set_threads) if self.threads and source is not None else None
        self._keeper = Keeper(store, settings, self.worker_id, pool, self._proxy_sync, self.board, self.writer,
                              threads=self.threads, stop=self._stop, abort=self._abort,
                              wake_claimer=self._wake_claimer, pace=self.pace if self.threads else None,
                              pace_key=self.pace_key, breaker=self.breaker, knobs=knobs,
                              blocked=self.blocked_reason)
        self._checks: CheckThreads | None = None
        self._claimer: Claimer | None = None
        if source is not None and self.threads:
            checker = Checker(source, pool, settings.retry, stop=self._abort, on_send=self.writer.check_sent,
                              breaker=self.breaker, pace=self.pace)
            self._checks = CheckThreads(store, checker, self.board, self.writer, inbox, threads=self.threads,
                                        claim_size=settings.engine.claim_size, stop=self._stop,
                                        wake_claimer=self._wake_claimer)
            checks = self._checks
            self._claimer = Claimer(store, settings.engine, self.worker_id, pool, self.board, self.writer, inbox,
                                    threads=lambda: checks.limit, busy=checks.busy, batch_ids=batch_ids,
                                    stop=self._stop, wake=self._wake_claimer, breaker=self.breaker,
                                    source=source, pace=self.pace)
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
            self._start_pace()
        self.board.refresh()  # before the keeper owns it: the first claims need the states
        self.board.own(self._spawn("keeper", self._keeper.run))
        if self._checks is not None and self._claimer is not None and self.source is not None:
            self._spawn("writer", functools.partial(self.writer.run, self._abort))
            self._spawn("claimer", self._claimer.run)
            self._spawn("validator", functools.partial(run_validator, self.source, self.pool, self._abort))
            for i in range(self.threads):
                self._spawn(f"check-{i}", functools.partial(self._checks.run, i))
        self.started = True
        return self

    def _start_pace(self) -> None:
        """Begin at this worker's share of the pace other workers learned on the same key."""
        total, others = registry.learned_pace(self.store, self.pace_key, me=self.worker_id,
                                              fresh_within=max(10.0, 3 * self.settings.engine.heartbeat_every))
        if others and total > 0:
            share = total / (others + 1)
            self.pace.adopt(share, f"{others} other worker{'s' if others != 1 else ''} on this key learned "
                                   f"{total:.1f}/s in all: starting at a share of {share:.1f}/s")
            logs.event(logging.INFO, PACE_CHANGED, f"source pace: {self.pace.view().reason}")

    def _set_threads(self, threads: int) -> None:
        """The threads knob (called by the keeper): ``threads`` check threads check, the missing
        ones are started; one beyond it idles after its check."""
        if self._checks is None or self._stop.is_set():
            return
        for i in range(self._checks.resize(threads), threads):
            self._spawn(f"check-{i}", functools.partial(self._checks.run, i))
        self.threads = threads

    def _spawn(self, name: str, target) -> threading.Thread:
        t = threading.Thread(target=self._guard(target), name=f"storycheck-{name}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

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
        if self._checks is not None:
            self._checks.wake_all()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._busy() and not self._hurry.is_set():
            time.sleep(0.02)
        self._abort.set()
        self.writer.wake.set()
        self.pool.wake_waiters()  # checks waiting for a route give their jobs back now
        self.board.wake.set()
        self._join(2.0)
        # The threads are gone: their state is this thread's now. Whatever is still held is
        # handed back: a late result is then fenced out.
        if self._checks is not None:
            try:
                self.writer.flush()
                released = q.release(self.store, self.worker_id, self.writer.held())
                if released:
                    logs.event(logging.INFO, logs.WORKER_STOPPED,
                               f"{released} unfinished checks handed back to the queue")
                self._keeper.sync_proxies()
                registry.stop_worker(self.store, self.worker_id)
                logs.event(logging.INFO, logs.WORKER_STOPPED, f"worker {self.worker_id} stopped")
                if self._batch_log is not None:
                    store_logs(self.store, self._batch_log.drain())
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

    def _busy(self) -> int:
        return self._checks.busy() if self._checks is not None else 0

    def blocked_reason(self, views: list[ProxyView] | None = None) -> str | None:
        """Why nothing can be sent now (no usable proxy and each proxy's state and last error; the
        source's circuit open; every route waiting out a Retry-After), or None when checks can go out."""
        retry_after = self.pool.retry_after_wait()
        if self.threads:
            retry_after = max(retry_after, self.pace.view().blocked_for)
        return blocked.blocked_reason(
            self.pool.views() if views is None else views, direct=self.pool.direct,
            waiting_for_proxy=self._claimer.waiting_for_proxy if self._claimer else False,
            circuit=self.breaker.view() if self.threads else None, retry_after=retry_after)

    def hopeless(self) -> bool:
        """No proxy can come back by itself (each is auth_rejected or disabled): only new
        credentials or an operator can unblock this worker."""
        return not self.pool.direct and blocked.hopeless(self.pool.views())

    def wait_done(self, batch_ids: list[int], timeout: float | None = None, poll: float = 0.2) -> bool:
        """Block until none of ``batch_ids`` has pending or running work (or timeout)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.writer.commits
            views = [batch_ops.get_batch(self.store, b) for b in batch_ids]
            if all(v.state not in CLAIMABLE or v.remaining == 0 for v in views) and not self.writer.busy_for(batch_ids):
                return True
            now = time.monotonic()
            if self._stop.is_set() or (end is not None and now >= end):
                return False
            # this worker's next commit, or the poll (other workers' commits are only seen by it)
            self.writer.wait_commit(seen, poll if end is None else min(poll, end - now))

    def idle(self) -> bool:
        """Nothing claimable is left anywhere and this worker holds nothing."""
        if self.writer.held_count or not self.writer.claims.empty():
            return False
        try:
            return q.open_jobs(self.store, self.batch_ids or None) == 0
        except PeeweeException:  # the database is away for now: certainly not idle
            self.store.recover()
            return False

    # -- snapshot and commands --------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        views = self._proxy_sync.views()
        return EngineSnapshot(
            taken_at=time.time(), worker_id=self.worker_id, threads=self.threads, running=not self._stop.is_set(),
            in_flight=self.writer.held_count, rate=self.writer.rate(), finished=self.writer.finished,
            batches=self.board.views, proxies=tuple(views),
            waiting_for_proxy=self._claimer.waiting_for_proxy if self._claimer else False,
            circuit=self.breaker.view(), pace=self.pace.view() if self.threads else None,
            blocked_reason=self.blocked_reason(views),
        )

    def refresh(self) -> None:
        """Re-read batches now (after a change made outside these commands, e.g. a new batch)."""
        self.board.request(wait=True)

    def pause(self, batch_id: int) -> bool:
        changed = batch_ops.pause(self.store, batch_id, "paused by operator")
        self.board.request(wait=True)
        return changed

    def resume(self, batch_id: int) -> bool:
        changed = batch_ops.resume(self.store, batch_id)
        self.board.request(wait=True)
        self._wake_claimer.set()
        return changed

    def cancel(self, batch_id: int) -> int:
        n = batch_ops.cancel(self.store, batch_id)
        self.board.request(wait=True)
        return n

    def retry_failed(self, batch_id: int) -> int:
        n = batch_ops.retry_failed(self.store, batch_id)
        self.board.request(wait=True)
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


__all__ = ["Runner", "EngineSnapshot"]
