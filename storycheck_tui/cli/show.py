"""What the commands print: tables, JSON lines, and database text made safe for a terminal.

Text read from the database (batch names, proxy labels, error messages, usernames) may hold
anything a hostile source, proxy or file put there: escape sequences (OSC 8 links, OSC 52
clipboard writes), C1 controls, U+202E. Every path from a command to the terminal goes
through :func:`safe` (tables and plain lines) or :func:`json_line` (``--json``).

Tables are ``rich`` tables: on a terminal with a header rule and colour; otherwise plain
aligned lines, one row per line, no colour, nothing wrapped (for ``grep`` and scripts).
"""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Any, Iterable, TextIO

from storycheck_tui.exports import json_line  # noqa: F401  (the one JSON-lines writer)
from storycheck_tui.logs import clean


def safe(value: Any) -> str:
    """Secrets masked, control and bidi characters escaped (``\\x1b``, ``\\x9b``, ``\\u202e``)."""
    return "" if value is None else clean(str(value))


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # numbers are right-aligned
    max_width: int | None = None  # longer text is cut with an ellipsis


def print_table(columns: list[Column], rows: Iterable[Iterable[Any]], out: TextIO | None = None) -> None:
    """Print ``rows`` under ``columns``; every cell goes through :func:`safe` and is drawn as text
    (never as rich markup)."""
    from rich import box  # here, not at import: `storycheck run` prints no table and starts 25 ms sooner
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out if out is not None else sys.stdout
    tty = out.isatty()
    cells = [[safe(v) for v in row] for row in rows]
    natural = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    widths: list[int | None] = [None if c.max_width else natural[i] for i, c in enumerate(columns)]
    room = None
    if tty:  # a narrow terminal: the free-text columns (a max_width) share what the others leave
        console = Console(file=out, highlight=False)
        flexible = [i for i, c in enumerate(columns) if c.max_width]
        if flexible:
            left = console.width - sum(w for w in widths if w) - 2 * (len(columns) - 1)
            room = max(8, left // len(flexible))
    table = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False, collapse_padding=tty,
                  header_style="bold" if tty else "")
    for i, c in enumerate(columns):
        cap = None if c.max_width is None else min(c.max_width, natural[i], room or c.max_width)
        table.add_column(c.header, justify="right" if c.right else "left", no_wrap=True, overflow="ellipsis",
                         width=widths[i] if widths[i] is not None else cap)
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    if tty:
        console.print(table)
        return
    buf = io.StringIO()
    Console(file=buf, width=100_000, no_color=True, color_system=None, highlight=False).print(table)
    out.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))
