"""A monitor thread's life: started once, stopped by an event that is also its wait.

State: the stop event and the thread, set by whoever starts and stops the loop (one owner)."""

from __future__ import annotations

import threading
from typing import Self


class Loop:
    """A daemon thread named ``thread_name`` that runs :meth:`_run` until :meth:`stop`.

    ``_run`` waits on ``self._stop`` between its rounds, so a stop ends the wait at once.
    """

    thread_name = "storycheck-loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


__all__ = ["Loop"]
