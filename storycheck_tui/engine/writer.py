"""The writer: group commits of results, hand-backs and batch log records.

Owner: the writer thread (once :meth:`Runner.stop` has joined it, the stopping thread).
It alone changes the ledger of held jobs (claimed by this worker, no result written yet),
the count of finished checks and their times. Other threads talk to it through queues:
the claimer puts what it claimed on ``claims``, check threads put results on ``results`` and
hand-backs on ``releases``. It publishes ``held_count``, ``held_batches`` and ``finished``
(immutable values, replaced whole) for the snapshot, the keeper and ``wait_done``.
"""

from __future__ import annotations

import bisect
import collections
import logging
import queue
import threading
import time

from storycheck_tui import logs
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.logs import BatchLogSink
from storycheck_tui.store import queue as q
from storycheck_tui.store.db import Store
from storycheck_tui.store.spend import log_budget_pauses

log = logging.getLogger("storycheck.engine")

#: the window of the "checks/s" a snapshot and a heartbeat report
RATE_WINDOW = 10.0


class Writer:
    def __init__(self, store: Store, worker_id: str, board: BatchBoard, batch_log: BatchLogSink | None,
                 commit_every: float) -> None:
        self._store = store
        self._worker_id = worker_id
        self._board = board
        self._batch_log = batch_log
        self._every = commit_every
        # C-level queues: a check passes through two of them, and queue.Queue's Python-level
        # locking cost more than the rest of the hand-off
        self.claims: queue.SimpleQueue[list[q.Claimed]] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[q.JobResult] = queue.SimpleQueue()
        self.releases: queue.SimpleQueue[tuple[q.Claimed, float]] = queue.SimpleQueue()
        self._held: dict[int, q.Claimed] = {}
        self._times: collections.deque[float] = collections.deque(maxlen=100_000)
        # published for other threads
        self.held_count = 0
        self.held_batches: frozenset[int] = frozenset()
        self.finished = 0

    # -- other threads ------------------------------------------------------------------------

    def rate(self) -> float:
        """Checks/s this worker finished over the last :data:`RATE_WINDOW` seconds."""
        cutoff = time.monotonic() - RATE_WINDOW
        times = list(self._times)  # one C-level copy: iterating the deque while the writer
        return (len(times) - bisect.bisect_left(times, cutoff)) / RATE_WINDOW  # appends raised "deque mutated"

    def busy_for(self, batch_ids: list[int]) -> bool:
        """Something of these batches is held or waits to be written."""
        return (not self.held_batches.isdisjoint(batch_ids) or not self.results.empty()
                or not self.claims.empty())

    # -- the owner ----------------------------------------------------------------------------

    def run(self, abort: threading.Event) -> None:
        while not abort.is_set():
            time.sleep(self._every)
            self.flush()

    def held(self) -> list[q.Claimed]:
        """Every job still held (for the hand-back on stop)."""
        self._take_claims()
        return list(self._held.values())

    def _take_claims(self) -> None:
        while True:
            try:
                jobs = self.claims.get_nowait()
            except queue.Empty:
                break
            for c in jobs:
                self._held[c.id] = c

    def flush(self) -> None:
        self._take_claims()  # before the results: a job's claim is always queued before its result
        results = drain(self.results)
        releases = drain(self.releases)
        entries = self._batch_log.drain() if self._batch_log else []
        if results or releases or entries:
            self._write(results, releases, entries)
        self._publish()

    def _write(self, results: list[q.JobResult], releases: list[tuple[q.Claimed, float]],
               entries: list[logs.LogEntry]) -> None:
        store = self._store
        try:
            report = q.finish(store, self._worker_id, results, entries)
            by_delay: dict[float, list[q.Claimed]] = collections.defaultdict(list)
            for job, delay in releases:
                by_delay[delay].append(job)
            for delay, jobs in by_delay.items():
                q.release(store, self._worker_id, jobs, delay=delay)
        except Exception:
            # Nothing is lost: put everything back and try again on the next tick.
            log.error("could not write %d results; will retry", len(results), exc_info=True)
            store.recover()
            for r in results:
                self.results.put(r)
            for item in releases:
                self.releases.put(item)
            if self._batch_log:
                self._batch_log.requeue(entries)
            return
        for r in results:
            self._held.pop(r.job.id, None)
        for j, _ in releases:
            self._held.pop(j.id, None)
        stamp = time.monotonic()
        times = self._times
        while times and times[0] < stamp - RATE_WINDOW:
            times.popleft()
        for r, (level, event, message) in zip(report.applied, report.messages):
            self.finished += 1
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
            self._board.request()

    def _publish(self) -> None:
        self.held_batches = frozenset(c.batch_id for c in self._held.values())  # a few dozen jobs
        self.held_count = len(self._held)


def drain(qu: queue.SimpleQueue) -> list:
    out = []
    while True:
        try:
            out.append(qu.get_nowait())
        except queue.Empty:
            return out
