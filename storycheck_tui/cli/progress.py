"""Progress of a headless run: a ``rich`` progress bar on a terminal, a plain line every few
seconds otherwise (a log file, ``| tee``, cron mail)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from storycheck_tui.cli.show import safe
from storycheck_tui.store.batches import BatchView

if TYPE_CHECKING:
    from rich.progress import Progress as Bar


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def checked_percent(b: BatchView) -> str:
    """The share of a batch's profiles that were checked; cancelled ones were not, so a
    cancelled batch is not 100 %."""
    return f"{100.0 * b.completed / b.total:.0f}%" if b.total else "-"


class Progress:
    """Call :meth:`update` as often as you like (it draws at most every ``every`` seconds, twice
    a second on a terminal), :meth:`close` once at the end."""

    def __init__(self, out: TextIO | None = None, *, every: float = 5.0):
        self.out = out if out is not None else sys.stderr  # the stderr of now, not of import time
        self.tty = self.out.isatty()
        self.every = 0.5 if self.tty else every
        self.last = 0.0
        self.started = time.monotonic()
        self._bar: Bar | None = None
        self._task = None

    @staticmethod
    def text(b: BatchView, rate: float, blocked: str | None = None) -> str:
        """The line; ``blocked`` says why nothing can be sent now (the engine's blocked_reason)."""
        eta = b.remaining / rate if rate > 0 else None
        cancelled = f"  cancelled {b.cancelled}" if b.cancelled else ""
        why = f"  blocked: {safe(blocked)}" if blocked else ""
        return (f"{b.completed}/{b.total} checked ({checked_percent(b)})  ok {b.succeeded}  failed {b.failed}"
                f"{cancelled}  {rate:.1f} checks/s  ETA {fmt_duration(eta)}  [{safe(b.state)}]{why}")

    def update(self, b: BatchView, rate: float, *, blocked: str | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        text = self.text(b, rate, blocked)
        if not self.tty:
            self.out.write(f"progress: {text}\n")
            self.out.flush()
            return
        if self._bar is None:
            from rich.console import Console  # on a terminal only: a plain line needs none of rich
            from rich.progress import BarColumn, Progress as Bar, TextColumn

            # drawn only when asked (no refresh thread); stdout/stderr are left alone (log lines on
            # stderr with -v print above the bar, which is redrawn below them)
            self._bar = Bar(BarColumn(bar_width=24), TextColumn("{task.description}", markup=False),
                            console=Console(file=self.out, highlight=False), auto_refresh=False,
                            redirect_stdout=False, redirect_stderr=False)
            self._task = self._bar.add_task(text, total=max(b.total, 1))
            self._bar.start()
        self._bar.update(self._task, completed=b.completed, total=max(b.total, 1), description=text)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # leaves the last state on screen, the cursor on the next line
            self._bar = None
