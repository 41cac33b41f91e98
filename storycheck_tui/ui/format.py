"""Small, pure formatting helpers for the console: durations, ages, numbers, safe text.

Every function that depends on the time takes ``now`` as an argument, so snapshot tests
can pin the clock. User text (usernames, error messages, proxy labels) becomes a
:class:`rich.text.Text` through :func:`plain`: never parsed as markup, control
characters and ANSI escapes shown, not obeyed.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from rich.text import Text

from storycheck_tui.states import BatchState, JobState, OutcomeKind, ProxyState, WorkerState

# C0/C1 controls, and the invisible format characters that reorder or hide text on a
# terminal: bidi overrides/isolates (U+202E makes "exe.txt" read "txt.exe"), zero-width ones
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def _show_control(m: re.Match[str]) -> str:
    ch = m.group()
    if ch == "\x1b":
        return "^["  # an ANSI escape shows as typed in a terminal, not obeyed
    return repr(ch)[1:-1]


def literal(value: object) -> str:
    """``value`` as one printable line: control characters (ESC, newline, …) made visible."""
    s = "" if value is None else str(value)
    return _CONTROL.sub(_show_control, s)


def literal_lines(value: str) -> list[str]:
    """Each line of a multi-line text (a traceback) made printable on its own."""
    return [literal(line) for line in value.splitlines()]


def plain(value: object, style: str = "", *, limit: int | None = None) -> Text:
    """User text as a Text that is never parsed as markup (``[/bold]`` shows as typed)."""
    s = literal(value)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return Text(s, style=style, no_wrap=True, overflow="ellipsis")


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h14m``, ``3d04h``; ``—`` for unknown."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "—"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def age(ts: float | None, now: float) -> str:
    """How long ago ``ts`` was: ``12s``, ``4m03s``, ``5h10m``; ``—`` if unknown."""
    if ts is None:
        return "—"
    return duration(max(0.0, now - ts))


def eta(remaining: int, rate: float) -> str:
    if remaining <= 0:
        return "done"
    if rate <= 0.0:
        return "—"
    return duration(remaining / rate)


def count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def rate(r: float | None) -> str:
    if r is None:
        return "—"
    if r <= 0.0:
        return "0/s"
    return f"{r:.1f}/s" if r < 100 else f"{r:,.0f}/s"


def latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def clock(ts: float, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of ``ts`` in ``tz`` (local time when None)."""
    return datetime.fromtimestamp(ts, tz).strftime("%H:%M:%S")


def when(ts: float | None, tz: tzinfo | None = None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of ``ts`` in ``tz``; ``—`` if unknown."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: tuple[float, ...] | list[float], width: int = 12) -> str:
    """The last ``width`` values as block characters scaled between their min and max."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo
    out = []
    for v in vals:
        level = 4 if span <= 0 else 1 + int((v - lo) / span * 7.999)
        out.append(_BARS[max(1, min(8, level))])
    return "".join(out)


def bar(fraction: float, width: int = 12) -> Text:
    """A progress bar of ``width`` cells (eighths for the partial cell)."""
    fraction = max(0.0, min(1.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    text = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    text = text.ljust(width, " ")
    return Text(text[:width], style="green" if fraction >= 1.0 else "cyan", no_wrap=True)


#: colours of the states (batches, jobs, proxies, log levels)
STATE_STYLE: dict[str, str] = {
    BatchState.QUEUED: "bright_black", BatchState.RUNNING: "bold green", BatchState.PAUSED: "bold yellow",
    BatchState.CANCELLED: "magenta", BatchState.FINISHED: "blue",
    JobState.PENDING: "bright_black", JobState.SUCCEEDED: "green", JobState.FAILED: "bold red",
    OutcomeKind.HAS_STORIES: "bold green", OutcomeKind.NO_STORIES: "green", OutcomeKind.PRIVATE: "cyan",
    OutcomeKind.NOT_FOUND: "yellow",
    ProxyState.UNCHECKED: "bright_black", ProxyState.HEALTHY: "green", ProxyState.COOLING: "yellow",
    ProxyState.DEAD: "bold red", ProxyState.DISABLED: "magenta", ProxyState.AUTH_REJECTED: "bold red",
    WorkerState.STOPPING: "yellow", WorkerState.STOPPED: "bright_black",
    "stalled": "bold yellow",
}
#: a running batch that no worker process is left to check (a console word, not a stored state)
STALLED = "stalled"
# (job and worker "running" and job "cancelled" share the batch states' strings, so their colours)

LEVEL_STYLE = {
    "DEBUG": "bright_black", "INFO": "green", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold white on red",
}


def state(value: str, label: str | None = None) -> Text:
    return Text(label or value, style=STATE_STYLE.get(value, ""), no_wrap=True)
