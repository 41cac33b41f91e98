"""The keeper: this worker's upkeep with the database, twice a second (or at once when asked).

Owner: the keeper thread. It owns the :class:`~storycheck_tui.engine.batchboard.BatchBoard`
(re-reads batch states, so pauses and new batches made elsewhere arrive within a second), the
runtime knobs (re-read each round too, applied by :class:`~storycheck_tui.engine.knobs.KnobApplier`),
the proxy sync (logs the pool's transitions, writes them, adopts other workers' news), the
heartbeat that extends this worker's leases, and the reaper of other workers' expired leases.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine import proxysync
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.breaker import CircuitBreaker
from storycheck_tui.engine.knobs import KnobApplier
from storycheck_tui.engine.pace import PACE_CHANGED, SourcePace
from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.engine.writer import Writer
from storycheck_tui.masking import one_line
from storycheck_tui.states import ProxyState, WorkerState
from storycheck_tui.store import knobs as knob_store
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as registry
from storycheck_tui.store.db import Store

log = logging.getLogger("storycheck.engine")

#: seconds between rounds when nobody asks for one
ROUND = 0.5
#: a reason (the pace's, the circuit's) is stored cut to this many characters
REASON_CHARS = 300
#: another worker's pace counts for sharing while its heartbeat is this many heartbeats old
SHARE_FRESH = 2.5


class Keeper:
    def __init__(self, store: Store, settings: Settings, worker_id: str, pool: ProxyPool,
                 sync: proxysync.ProxySync, board: BatchBoard, writer: Writer, *, threads: int,
                 stop: threading.Event, abort: threading.Event, wake_claimer: threading.Event,
                 pace: SourcePace | None = None, pace_key: str | None = None,
                 breaker: CircuitBreaker | None = None, knobs: KnobApplier | None = None,
                 blocked: Callable[[], str | None] | None = None) -> None:
        self._blocked = blocked
        self._breaker = breaker
        self._knobs = knobs
        self._pace = pace
        self._pace_key = pace_key
        self._store = store
        self._settings = settings
        self._worker_id = worker_id
        self._pool = pool
        self._sync = sync
        self._board = board
        self._writer = writer
        self._threads = threads
        self._stop = stop
        self._abort = abort
        self._wake_claimer = wake_claimer

    def run(self) -> None:
        eng = self._settings.engine
        last_beat = last_reap = 0.0
        while not self._abort.is_set():
            self._board.wake.clear()
            now = time.monotonic()
            try:
                self._board.refresh()
                if self._knobs is not None:
                    self._knobs.apply(knob_store.read(self._store))
                self.sync_proxies()
                if self._threads and now - last_beat >= eng.heartbeat_every:
                    self.heartbeat()
                    self._share_pace()
                    last_beat = now
                if self._threads and now - last_reap >= min(5.0, eng.lease_seconds / 4):
                    registry.expire_dead_local_workers(self._store, self._worker_id)
                    registry.mark_lost_workers(self._store, eng.lease_seconds)
                    q.reap_expired(self._store, self._settings.retry.max_claims)  # logs what it reaped
                    last_reap = now
                    self._wake_claimer.set()
            except Exception:
                log.error("database upkeep failed; will retry", exc_info=True)
                self._store.recover()
            self._board.wake.wait(ROUND)

    def heartbeat(self) -> None:
        """Say this worker is alive, with what `batches` and the console show of it: its check
        threads, the source's pace and why it last changed, the circuit breaker's state, and why it
        can send nothing if so."""
        pace = self._pace.view() if self._pace else None
        circuit = self._breaker.view() if self._breaker else None
        blocked = self._blocked() if self._blocked and self._threads else None
        registry.heartbeat(self._store, self._worker_id, checks=self._writer.finished, rate=self._writer.rate(),
                           lease_seconds=self._settings.engine.lease_seconds,
                           state=WorkerState.STOPPING if self._stop.is_set() else WorkerState.RUNNING,
                           pace=pace.rate if pace else None, pace_key=self._shared_key(),
                           pace_reason=one_line(pace.reason, REASON_CHARS) if pace else None,
                           threads=self._knobs.threads if self._knobs else self._threads,
                           circuit=circuit.state if circuit else None, circuit_reason=one_line(circuit.reason, REASON_CHARS) if circuit and circuit.reason else None,
                           blocked=one_line(blocked, REASON_CHARS) if blocked else None)

    def _shared_key(self) -> str | None:
        """The pace's key while its pace is one to share (learned, and what holds this worker back):
        only rows that carry it count for a late starter and for the others' shares."""
        return self._pace_key if self._pace is not None and self._pace.published() is not None else None

    def _share_pace(self) -> None:
        """Move this worker's pace toward its share of the key (engine/pace.py, SourcePace.share)."""
        if self._pace is None or self._pace_key is None or self._pace.published() is None:
            return
        others, count = registry.learned_pace(self._store, self._pace_key, me=self._worker_id,
                                              fresh_within=SHARE_FRESH * self._settings.engine.heartbeat_every)
        if self._pace.share(others, count):
            logs.event(logging.INFO, PACE_CHANGED, f"source pace: {self._pace.view().reason}")

    def sync_proxies(self) -> None:
        """Log the pool's transitions first: that marks them for the sync, so a state reaches
        the database in the same pass, never before its log record."""
        self.log_proxy_changes()
        self._sync.sync()

    def log_proxy_changes(self) -> None:
        pool = self._pool
        for key, state, reason in pool.drain_changes():
            if self._threads:
                # A watch-only runner (the console of `storycheck worker`s) learned nothing first-hand:
                # writing its pool back would blank the workers' latency and last error in the database.
                self._sync.mark_changed(key)
            route = pool.route(key)
            label = route.label if route else key
            event = proxysync.EVENT_FOR_STATE.get(state)
            if event is None or reason in proxysync.OPERATOR_REASONS:
                continue
            level = (logging.ERROR if state in (ProxyState.DEAD, ProxyState.AUTH_REJECTED)
                     else logging.WARNING if state == ProxyState.COOLING else logging.INFO)
            hint = ""
            if state == ProxyState.AUTH_REJECTED:
                hint = ("; not tried again until its credentials change (storycheck proxies add with the new "
                        "password) or an operator enables it")
            logs.event(level, event, f"proxy {label} is {state}" + (f": {reason}" if reason else "") + hint,
                       proxy=label)
        self._wake_claimer.set()
