"""Table columns: their key, label and width, and fitting a cell's text into one.

Tables use no cell padding: one blank cell is kept on the side that faces the neighbour
(after left-aligned text, before right-aligned numbers), so the columns fit 120 cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text


@dataclass(frozen=True)
class Col:
    """A table column. Tables use no cell padding: one blank cell is kept on the side that
    faces the neighbour (after left-aligned text, before right-aligned numbers), so the
    columns fit 120 terminal cells."""

    key: str
    label: str
    width: int
    right: bool = False
    gap_before: bool = False  # a left-aligned column after a right-aligned one


def columns(*cols: Col) -> tuple[Col, ...]:
    out = []
    prev_right = False
    for c in cols:
        if not c.right and prev_right and not c.gap_before:
            c = Col(c.key, c.label, c.width, c.right, True)
        out.append(c)
        prev_right = c.right
    return tuple(out)


def room(col: Col) -> int:
    """The cells a column has for its text (its gap left out)."""
    return col.width - 1 - (1 if col.gap_before else 0)


def fit(col: Col, text: Text) -> Text:
    """Cut ``text`` to the column (keeping its gap), with an ellipsis."""
    width = room(col)
    if text.cell_len > width:
        text = text.copy()
        text.truncate(width, overflow="ellipsis")
    if col.gap_before:
        text = Text(" ").append_text(text)
    if col.right:
        text.justify = "right"
    return text
