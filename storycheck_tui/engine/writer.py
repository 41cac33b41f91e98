"""The writer: group commits of results, hand-backs and batch log records.

Owner: the writer thread (once :meth:`Runner.stop` has joined it, the stopping thread).
It alone changes the ledger of held jobs (claimed by this worker, no result written yet),
the count of finished checks and their times. It commits every ``commit_every`` seconds, or
at once when woken (:attr:`Writer.wake`: the last check this worker held has ended, so a
batch's end is written, and waited for, without waiting out the tick). Other threads talk to it through queues:
the claimer puts what it claimed on ``claims``, check threads put results on ``results`` and
hand-backs on ``releases``, and (:meth:`Writer.check_sent`) the jobs whose first request is
going out on ``started``. A started job still unfinished at a group commit is marked started
in the database (``queue.mark_started``): from then on a death of this worker counts against
its ``max_claims``; a job waiting in the inbox or for a proxy's token does not count. It publishes ``held_count``, ``held_batches`` and ``finished``
(immutable values, replaced whole) for the snapshot, the keeper and ``wait_done``.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import queue
import threading
import time
from typing import NamedTuple

from storycheck_tui import logs
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.logs import BatchLogSink
from storycheck_tui.store import queue as q
from storycheck_tui.store.db import Store
from storycheck_tui.store.spend import log_budget_pauses

log = logging.getLogger("storycheck.engine")

#: the window of the "checks/s" a snapshot and a heartbeat report
RATE_WINDOW = 10.0
#: the longest a re-claimed job's first request waits for its start to be written
MARK_WAIT = 2.0


class HandBack(NamedTuple):
    """A claimed job a check thread gives back unfinished, with the requests it sent for it
    (counted as spent under ``reason``, an error kind, in the release's transaction)."""

    job: q.Claimed
    delay: float = 0.0
    requests_sent: int = 0
    reason: str = "handed_back"


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
        self.started: queue.SimpleQueue[tuple[q.Claimed, threading.Event | None]] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[q.JobResult] = queue.SimpleQueue()
        self.releases: queue.SimpleQueue[HandBack] = queue.SimpleQueue()
        self._held: dict[int, q.Claimed] = {}
        self._times: collections.deque[float] = collections.deque(maxlen=100_000)
        self._started_at = math.inf  # when run() began (the rate's window is no longer than that)
        # published for other threads
        self.held_count = 0
        self.held_batches: frozenset[int] = frozenset()
        self.finished = 0
        #: group commits so far (``flush`` calls); waited on with :meth:`wait_commit`
        self.commits = 0
        self._committed = threading.Condition()
        #: set by another thread: commit now, not at the next tick (this worker's last check
        #: ended with nothing left in its inbox: the end of a batch; or the runner is stopping)
        self.wake = threading.Event()

    # -- other threads ------------------------------------------------------------------------

    def rate(self) -> float:
        """Checks/s this worker finished over the last :data:`RATE_WINDOW` seconds, or since it
        started when that is sooner (7 checks in its first half second are 14/s: over the whole
        window they said 0.7/s, and `storycheck run` printed an ETA of 47 minutes for a 6 s run)."""
        now = time.monotonic()
        window = min(RATE_WINDOW, max(now - self._started_at, self._every))
        times = list(self._times)  # one C-level copy: iterating the deque while the writer
        return (len(times) - bisect.bisect_left(times, now - window)) / window  # appends raised "deque mutated"

    def check_sent(self, job: q.Claimed) -> None:
        """A check thread is sending the first request of ``job`` (called on that thread).

        A job claimed before (``lease_seq`` above 1: it may be the one that keeps killing its
        workers) waits for the next commit to mark it, so its request leaves only once a death
        would count; the others are marked at the next commit, their request already out."""
        if job.lease_seq > 1:
            marked = threading.Event()
            self.started.put((job, marked))
            marked.wait(MARK_WAIT)
        else:
            self.started.put((job, None))

    def wait_commit(self, seen: int, timeout: float) -> int:
        """Wait until there were more than ``seen`` group commits, or ``timeout`` seconds; the
        count now."""
        with self._committed:
            self._committed.wait_for(lambda: self.commits != seen, timeout)
            return self.commits

    def busy_for(self, batch_ids: list[int]) -> bool:
        """Something of these batches is held or waits to be written."""
        return (not self.held_batches.isdisjoint(batch_ids) or not self.results.empty()
                or not self.claims.empty())

    # -- the owner ----------------------------------------------------------------------------

    def run(self, abort: threading.Event) -> None:
        self._started_at = time.monotonic()
        while not abort.is_set():
            self.wake.wait(self._every)
            self.wake.clear()
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
        started = drain(self.started)
        results = drain(self.results)
        releases = drain(self.releases)
        entries = self._batch_log.drain() if self._batch_log else []
        marks = [job for job, _ in started]
        if marks:  # a check that ended before this commit needs no mark: its result is here
            done = {r.job.id for r in results} | {h.job.id for h in releases}
            marks = [j for j in marks if j.id not in done]
        if marks or results or releases or entries:
            self._write(marks, results, releases, entries)
        for _, marked in started:
            if marked is not None:
                marked.set()  # written (or not, on a database error: the check goes on all the same)
        self._publish()
        with self._committed:
            self.commits += 1
            self._committed.notify_all()

    def _write(self, started: list[q.Claimed], results: list[q.JobResult], releases: list[HandBack],
               entries: list[logs.LogEntry]) -> None:
        store = self._store
        try:
            q.mark_started(store, self._worker_id, started)
            report = q.finish(store, self._worker_id, results, entries)
            by_delay: dict[float, list[q.Claimed]] = collections.defaultdict(list)
            for h in releases:
                by_delay[h.delay].append(h.job)
            sent = {h.job.id: (h.reason, h.requests_sent) for h in releases if h.requests_sent}
            for delay, jobs in by_delay.items():
                q.release(store, self._worker_id, jobs, delay=delay, sent=sent)
        except Exception:
            # Nothing is lost: put everything back and try again on the next tick.
            log.error("could not write %d results; will retry", len(results), exc_info=True)
            store.recover()
            for j in started:
                self.started.put((j, None))
            for r in results:
                self.results.put(r)
            for item in releases:
                self.releases.put(item)
            if self._batch_log:
                self._batch_log.requeue(entries)
            return
        for r in results:
            self._held.pop(r.job.id, None)
        for h in releases:
            self._held.pop(h.job.id, None)
        stamp = time.monotonic()
        times = self._times
        while times and times[0] < stamp - RATE_WINDOW:
            times.popleft()
        records = []  # the result records, handed to the log's handlers in one go
        for r, (level, event, message) in zip(report.applied, report.messages):
            times.append(stamp)
            records.append((logging.getLevelName(level), event, message, {
                "persisted": True, "batch_id": r.job.batch_id, "job_id": r.job.id, "username": r.job.username,
                "proxy": r.proxy, "attempt": r.job.attempts, "status": r.http_status, "error_type": r.error_kind}))
        self.finished += len(report.applied)
        logs.events(records)
        for r in report.stale:
            logs.event(logging.WARNING, logs.LEASE_LOST,
                       f"{r.job.username}: result dropped: this worker no longer holds the job (its lease expired "
                       f"and another worker took it)", batch_id=r.job.batch_id, job_id=r.job.id, username=r.job.username)
        q.log_batches_finished(report.finished_batches)
        log_budget_pauses(report.paused_batches)
        if report.finished_batches or report.paused_batches or any(h.requests_sent for h in releases):
            self._board.request()  # (requests of a hand-back may have spent a budget)

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
