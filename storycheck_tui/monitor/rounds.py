"""The round scheduler: one thread that starts the rounds of due watches.

Every worker runs one; the database decides which of them starts a round (see
``store/watches.py``). State: none of its own besides its stop event.
"""

from __future__ import annotations

import logging
import threading

from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.masking import one_line
from storycheck_tui.store import watches
from storycheck_tui.store.db import Store

log = logging.getLogger(logs.LOGGER_NAME)


class RoundScheduler:
    def __init__(self, store: Store, *, every: float = 1.0, on_round=None):
        self.store = store
        self.every = every
        self.on_round = on_round  # called with each RoundStarted (e.g. to wake the claimer)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "RoundScheduler":
        self._thread = threading.Thread(target=self._run, name="storycheck-rounds", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for r in watches.start_due_rounds(self.store):
                    if self.on_round:
                        self.on_round(r)
            except PeeweeException as exc:
                self.store.recover()
                log.warning("watch rounds: database error: %s", one_line(str(exc)))
            self._stop.wait(self.every)


__all__ = ["RoundScheduler"]
