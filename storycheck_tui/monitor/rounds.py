"""The round scheduler: one thread that starts the rounds of due watches, and prunes the story
history past its retention once an hour.

Every worker runs one; the database decides which of them starts a round (see
``store/watches.py``). State: its stop event and the time of its last prune, its own.
"""

from __future__ import annotations

import logging
import time

from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.masking import one_line
from storycheck_tui.monitor.loop import Loop
from storycheck_tui.store import history, watches
from storycheck_tui.store.db import Store

log = logging.getLogger(logs.LOGGER_NAME)

#: stories last seen longer ago than this are pruned from the history (events are kept)
HISTORY_RETENTION = 30 * 86400.0
PRUNE_EVERY = 3600.0


class RoundScheduler(Loop):
    thread_name = "storycheck-rounds"

    def __init__(self, store: Store, *, every: float = 1.0, on_round=None, retention: float = HISTORY_RETENTION):
        super().__init__()
        self.store = store
        self.every = every
        self.retention = retention
        self._pruned_at = 0.0
        self.on_round = on_round  # called with each RoundStarted (e.g. to wake the claimer)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for r in watches.start_due_rounds(self.store):
                    if self.on_round:
                        self.on_round(r)
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY or not self._pruned_at:
                    self._pruned_at = time.monotonic()
                    history.prune_stories(self.store, time.time() - self.retention)
            except PeeweeException as exc:
                self.store.recover()
                log.warning("watch rounds: database error: %s", one_line(str(exc)))
            self._stop.wait(self.every)


__all__ = ["RoundScheduler"]
