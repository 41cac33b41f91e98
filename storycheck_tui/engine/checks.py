"""The check threads: one check at a time each, never inside a transaction.

Owner: each check thread owns its own slot in ``checking`` (what it is checking, or None);
counting the busy slots needs no lock. The keeper alone calls :meth:`CheckThreads.resize`
(the threads knob): it adds slots and moves ``limit``; a slot at or above ``limit`` idles
after its check, never cut off in one. Results go to the writer's queues; a batch whose
credentials the source refused is paused in the database and the keeper asked to re-read.
"""

from __future__ import annotations

import logging
import queue
import threading

from storycheck_tui import logs
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.checker import Checker
from storycheck_tui.engine.writer import HandBack, Writer
from storycheck_tui.errors import AuthFailed, CheckError, CircuitOpen, NoProxyAvailable
from storycheck_tui.states import CLAIMABLE
from storycheck_tui.store import batches as batch_ops
from storycheck_tui.store import queue as q
from storycheck_tui.store.db import Store


class CheckThreads:
    def __init__(self, store: Store, checker: Checker, board: BatchBoard, writer: Writer,
                 inbox: queue.SimpleQueue[q.Claimed | None],
                 *, threads: int, claim_size: int, stop: threading.Event, wake_claimer: threading.Event) -> None:
        self._store = store
        self._checker = checker
        self._board = board
        self._writer = writer
        self._inbox = inbox
        self._claim_size = claim_size
        self._stop = stop
        self._wake_claimer = wake_claimer
        self.checking: list[q.Claimed | None] = [None] * threads
        self.limit = threads  # slots below it check; the others idle (the threads knob)

    def resize(self, threads: int) -> int:
        """Let ``threads`` slots check; returns the first new slot whose thread the caller starts."""
        first_new = len(self.checking)
        if threads > first_new:
            self.checking.extend([None] * (threads - first_new))
        self.limit = threads
        return first_new

    def busy(self) -> int:
        """Check threads in a check right now."""
        return sum(job is not None for job in self.checking)

    def run(self, slot: int) -> None:
        inbox, writer, stop = self._inbox, self._writer, self._stop
        while not stop.is_set():
            if slot >= self.limit:
                stop.wait(0.2)  # idle: the threads knob took this slot away
                continue
            try:
                job = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if job is None:  # wake_all: the runner is stopping
                continue
            if slot >= self.limit:  # the knob moved while this slot waited: the job is another's
                inbox.put(job)
                continue
            if inbox.qsize() < self._claim_size and not self._wake_claimer.is_set():
                self._wake_claimer.set()  # running low: claim now, not at the claimer's next 0.2 s tick
            if stop.is_set() or self._board.states.get(job.batch_id) not in CLAIMABLE:
                writer.releases.put(HandBack(job))  # paused, cancelled, or shutting down
                continue
            self.checking[slot] = job
            try:
                if logs.log.isEnabledFor(logging.DEBUG):  # (without --debug: not even its message is made)
                    logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, f"{job.username}: checking",
                               batch_id=job.batch_id, job_id=job.id, username=job.username, attempt=job.attempts)
                result = self._checker.check(job)
            except (NoProxyAvailable, CircuitOpen) as err:
                writer.releases.put(HandBack(job, 1.0, err.requests_sent, str(err.kind)))  # no attempt spent
                self._wake_claimer.set()
                continue
            except AuthFailed as err:
                writer.releases.put(HandBack(job, 0.0, err.requests_sent, str(err.kind)))
                self._auth_failed(job, err)
                continue
            finally:
                self.checking[slot] = None
            writer.results.put(result)
            if not inbox.qsize() and not self.busy():
                writer.wake.set()  # nothing left here (a batch's end): commit now, not at the next tick
        # the inbox is handed back on stop (the other threads' wake-ups are left for them)
        wakes = 0
        while True:
            try:
                left = inbox.get_nowait()
            except queue.Empty:
                break
            if left is None:
                wakes += 1
            else:
                writer.releases.put(HandBack(left))
        for _ in range(wakes):
            inbox.put(None)

    def wake_all(self) -> None:
        """Wake every check thread waiting on the inbox (the runner is stopping)."""
        for _ in range(len(self.checking)):
            self._inbox.put(None)

    def _auth_failed(self, job: q.Claimed, err: CheckError) -> None:
        reason = f"the story source refused the credentials (HTTP {err.status}): {err.message}; fix the API key, then resume"
        if batch_ops.pause(self._store, job.batch_id, reason, level=logging.ERROR):
            logs.event(logging.ERROR, logs.BATCH_PAUSED, f"batch {job.batch_id} paused: {reason}",
                       batch_id=job.batch_id, job_id=job.id, username=job.username, status=err.status,
                       error_type=type(err).__name__, proxy=err.proxy)
        self._board.request(wait=True)  # the jobs of the paused batch still in the inbox go back unchecked
