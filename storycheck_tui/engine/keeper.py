"""The keeper: this worker's upkeep with the database, twice a second (or at once when asked).

Owner: the keeper thread. It owns the :class:`~storycheck_tui.engine.batchboard.BatchBoard`
(re-reads batch states, so pauses and new batches made elsewhere arrive within a second),
the proxy sync (logs the pool's transitions, writes them, adopts other workers' news), the
heartbeat that extends this worker's leases, and the reaper of other workers' expired leases.
"""

from __future__ import annotations

import logging
import threading
import time

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine import proxysync
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.pace import SourcePace
from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.engine.writer import Writer
from storycheck_tui.states import ProxyState, WorkerState
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as registry
from storycheck_tui.store.db import Store

log = logging.getLogger("storycheck.engine")

#: seconds between rounds when nobody asks for one
ROUND = 0.5


class Keeper:
    def __init__(self, store: Store, settings: Settings, worker_id: str, pool: ProxyPool,
                 sync: proxysync.ProxySync, board: BatchBoard, writer: Writer, *, threads: int,
                 stop: threading.Event, abort: threading.Event, wake_claimer: threading.Event,
                 pace: SourcePace | None = None, pace_key: str | None = None) -> None:
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
                self.sync_proxies()
                if self._threads and now - last_beat >= eng.heartbeat_every:
                    registry.heartbeat(self._store, self._worker_id, checks=self._writer.finished,
                                       rate=self._writer.rate(), lease_seconds=eng.lease_seconds,
                                       state=WorkerState.STOPPING if self._stop.is_set() else WorkerState.RUNNING,
                                       pace=self._pace.rate if self._pace else None, pace_key=self._pace_key)
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
            level = (logging.ERROR if state == ProxyState.DEAD else logging.WARNING if state == ProxyState.COOLING
                     else logging.INFO)
            logs.event(level, event, f"proxy {label} is {state}" + (f": {reason}" if reason else ""), proxy=label)
        self._wake_claimer.set()
