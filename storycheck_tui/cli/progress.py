"""Progress of a headless run: a redrawn bar on a TTY, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from storycheck_tui.store.batches import BatchView


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, out: TextIO | None = None, *, every: float = 5.0):
        self.out = out if out is not None else sys.stderr  # the stderr of now, not of import time
        self.tty = self.out.isatty()
        self.every = 0.5 if self.tty else every
        self.last = 0.0
        self.started = time.monotonic()

    def update(self, b: BatchView, rate: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = b.completed + b.cancelled
        pct = 100.0 * done / b.total if b.total else 100.0
        eta = b.remaining / rate if rate > 0 else None
        text = (f"{done}/{b.total} ({pct:.0f}%)  ok {b.succeeded}  failed {b.failed}  "
                f"{rate:.1f} checks/s  ETA {fmt_duration(eta)}  [{b.state}]")
        if self.tty:
            width = 24
            fill = int(width * pct / 100)
            self.out.write("\r\x1b[2K[" + "#" * fill + "." * (width - fill) + "] " + text)
        else:
            self.out.write(f"progress: {text}\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
