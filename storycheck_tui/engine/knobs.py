"""Runtime knobs as one worker applies them: the keeper reads them from the database
(:mod:`storycheck_tui.store.knobs`) twice a second and hands them here; a change becomes the
source pace's cap and the number of check threads, with one KNOB_CHANGED record per change.

Owner: the keeper thread (``applied``, ``threads``); the snapshot and the heartbeat read
``threads`` (an int, replaced whole).
"""

from __future__ import annotations

import logging
from typing import Callable

from storycheck_tui import logs
from storycheck_tui.engine.pace import SourcePace
from storycheck_tui.store.knobs import Knobs

#: the log event of a knob that reached this worker
KNOB_CHANGED = "KNOB_CHANGED"


class KnobApplier:
    def __init__(self, *, pace: SourcePace | None, own_cap: float | None, own_threads: int,
                 set_threads: Callable[[int], None]) -> None:
        self._pace = pace
        self._own_cap = own_cap  # [source] max_rate
        self._own_threads = own_threads  # [engine] workers / --workers
        self._set_threads = set_threads
        self.applied = Knobs()  # nothing set: this worker's own settings
        self.threads = own_threads  # check threads that may check now

    def apply(self, knobs: Knobs) -> None:
        """Apply what changed since the last call (nothing: no cost)."""
        if knobs == self.applied:
            return
        before, self.applied = self.applied, knobs
        if knobs.pace_cap != before.pace_cap and self._pace is not None:
            cap = knobs.pace_cap if knobs.pace_cap is not None else self._own_cap
            if knobs.pace_cap is not None:
                why = f"pace cap {cap:g}/s set by an operator"
            else:
                why = "pace cap cleared by an operator" + (f" (max_rate {cap:g}/s)" if cap else "")
            self._pace.set_cap(cap, why)
            logs.event(logging.INFO, KNOB_CHANGED, f"source pace: {self._pace.view().reason}")
        if knobs.threads != before.threads:
            threads = knobs.threads if knobs.threads is not None else self._own_threads
            if threads != self.threads:
                was, self.threads = self.threads, threads
                self._set_threads(threads)
                who = "set by an operator" if knobs.threads is not None else "back to this worker's own setting"
                logs.event(logging.INFO, KNOB_CHANGED, f"check threads {was} -> {threads} ({who})")


__all__ = ["KnobApplier", "KNOB_CHANGED"]
