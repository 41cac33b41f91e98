"""The claimer: keeps the inbox of this worker's check threads topped up from the database.

Owner: the claimer thread. It alone claims, and it alone writes ``waiting_for_proxy``
(read by snapshots). It claims only while some proxy is usable, the source's circuit is not
open (a claim is made when its probe is due) and some batch is claimable (as the keeper's
:class:`~storycheck_tui.engine.batchboard.BatchBoard` says); every claim is handed to the
writer's ledger before its jobs reach the inbox. It holds (inbox and checks) at most the live
number of check threads (the threads knob moves it while running) plus two claims. A claim takes
``claim_size`` jobs, or at a high rate :data:`PIECE_SECONDS` worth of checks (at most
:data:`PIECE_MAX`), the rate read from the writer's count of finished checks.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Callable

from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.config import EngineSettings
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.breaker import CircuitBreaker, log_transition
from storycheck_tui.engine.pace import SourcePace
from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.engine.writer import Writer
from storycheck_tui.errors import BadResponse, CheckError, RateLimited, SourceUnavailable
from storycheck_tui.sources.base import StorySource
from storycheck_tui.store import queue as q
from storycheck_tui.store.db import Store

log = logging.getLogger("storycheck.engine")

#: while the source's pace holds checks back, this worker holds (in its inbox and in checks) no
#: more jobs than its pace gets through in this many seconds: a slow worker does not sit on
#: jobs that faster workers on the same key would finish sooner
HOLD_SECONDS = 2.0
#: ... but at least this many
HOLD_MIN = 4
#: a claim takes up to this many seconds' worth of checks at the rate this worker finishes them
#: (at least ``claim_size``, at most :data:`PIECE_MAX`): a claim's commit costs as much as a dozen
#: claimed rows, and at 3,000 checks/s claims of 32 were a commit every 10 ms
PIECE_SECONDS = 0.03
PIECE_MAX = 256
#: the rate that sizes claims is measured over this many seconds
RATE_EVERY = 1.0


class Claimer:
    def __init__(self, store: Store, settings: EngineSettings, worker_id: str, pool: ProxyPool, board: BatchBoard,
                 writer: Writer, inbox: queue.SimpleQueue, *, threads: Callable[[], int], busy: Callable[[], int],
                 batch_ids: list[int] | None, stop: threading.Event, wake: threading.Event,
                 breaker: CircuitBreaker, source: StorySource, pace: SourcePace | None = None) -> None:
        self._breaker = breaker
        self._pace = pace
        self._source = source
        self._store = store
        self._settings = settings
        self._worker_id = worker_id
        self._pool = pool
        self._board = board
        self._writer = writer
        self._inbox = inbox
        self._threads = threads  # the check threads that may check now (the threads knob), read live
        self._busy = busy
        self._batch_ids = batch_ids
        self._stop = stop
        self._wake = wake
        self.waiting_for_proxy = False  # published: no usable proxy, batches wait
        self._rate = 0.0  # checks/s this worker finished over the last RATE_EVERY seconds or so
        self._rate_mark = (time.monotonic(), writer.finished)

    def _probe(self, username: str) -> None:
        """Ask the source about a profile it answered recently: is it up again?"""
        route = self._pool.acquire(timeout=5.0, wait_for_revival=False)
        if route is None:
            self._breaker.probe_abandoned()
            return
        try:
            outcome = self._source.check(username, route)
        except (SourceUnavailable, BadResponse) as err:
            log_transition(self._breaker, self._breaker.failure(username, err.message), username)
            return
        except RateLimited:
            change = self._breaker.success(username)  # it answered: up, if busy
        except CheckError:
            self._breaker.probe_abandoned()  # the route failed, not the source
            return
        else:
            self._pool.success(route.key, outcome.latency_ms)
            change = self._breaker.success(username)
        log_transition(self._breaker, change, username)

    def _piece(self, claim_size: int) -> int:
        """How many jobs one claim takes: ``claim_size``, more at a high rate of checks."""
        now = time.monotonic()
        since, finished = self._rate_mark
        if now - since >= RATE_EVERY:
            done = self._writer.finished
            self._rate = (done - finished) / (now - since)
            self._rate_mark = (now, done)
        return max(claim_size, min(PIECE_MAX, int(self._rate * PIECE_SECONDS)))

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def run(self) -> None:
        eng = self._settings
        said_waiting = False
        while not self._stop.is_set():
            held = self._inbox.qsize() + self._busy()
            piece = self._piece(eng.claim_size)
            want = min(piece, self._threads() + 2 * piece - held)
            if self._pace is not None and self._pace.bound():
                want = min(want, max(HOLD_MIN, math.ceil(self._pace.rate * HOLD_SECONDS)) - held)
            batches = self._board.claimable(self._batch_ids)
            if want <= 0 or not batches:
                self._pause(0.2)
                continue
            if self._pool.usable_count() == 0:
                self.waiting_for_proxy = True
                if not said_waiting:
                    logs.event(logging.WARNING, logs.NO_PROXY,
                               "no usable proxy: all are cooling, dead, disabled or refused their credentials; "
                               "batches wait until one is back")
                    said_waiting = True
                self._pause(0.5)
                continue
            if said_waiting:
                logs.event(logging.INFO, logs.PROXY_RECOVERED, "a proxy is usable again; checks resume")
                said_waiting = False
            self.waiting_for_proxy = False
            probe = self._breaker.probe_due()
            if probe is not None:
                self._probe(probe)
            closed_in = self._breaker.wait()
            if closed_in > 0:  # the circuit is open: claim again when its probe is due
                self._pause(min(closed_in, 0.5))
                continue
            try:
                claimed = q.claim(self._store, self._worker_id, eng.lease_seconds, want, batches)
            except PeeweeException:
                # The database went away (restart, failover, network) or the claim lost a lock
                # conflict: nothing was claimed. Keep the worker alive and try again shortly.
                log.error("could not claim jobs; will retry", exc_info=True)
                self._store.recover()
                self._stop.wait(1.0)
                continue
            if not claimed:
                self._pause(0.5)
                continue
            self._writer.claims.put(claimed)
            for c in claimed:
                self._inbox.put(c)
