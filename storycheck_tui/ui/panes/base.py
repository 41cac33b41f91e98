"""What every pane shares: a titled border, a focus target, an optional filter box."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Callable, Iterable

from rich.text import Text
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from storycheck_tui.ui import keymap


def same_text(a: Text | str | None, b: Text | str | None) -> bool:
    """Would ``a`` and ``b`` look the same on screen? (``Text ==`` ignores the base style.)"""
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain == b.plain and a.spans == b.spans and a.style == b.style and a.justify == b.justify
                and a.overflow == b.overflow and a.no_wrap == b.no_wrap)
    return type(a) is type(b) and a == b


class Line(Static):
    """A line of text whose size is set by the stylesheet: showing new text repaints it and
    nothing else (no layout pass), and showing the same text again does nothing."""

    def __init__(self, content: Text | str = "", **kw) -> None:
        super().__init__(content, markup=False, **kw)
        self._shown: Text | str = content

    def show(self, text: Text | str) -> None:
        if same_text(text, self._shown):
            return
        self._shown = text
        self.update(text, layout=False)


class FilterInput(Input):
    """The one-line filter box of a pane: enter applies, escape closes (and clears)."""

    BINDINGS = [("escape", "close_filter", "Close filter")]

    def action_close_filter(self) -> None:
        pane = next((a for a in self.ancestors if isinstance(a, Pane)), None)
        if pane is not None:
            pane.close_filter(clear=True)


class Pane(Vertical):
    """A bordered pane; ``number`` is its `1`-`5` key, ``target`` the widget that takes focus."""

    ALLOW_MAXIMIZE = True

    pane_name = "pane"
    number = 0
    pane_title = ""
    filter_placeholder = "filter"

    def target(self) -> Widget:
        raise NotImplementedError

    def set_subtitle(self, text: Text | str) -> None:
        """The border subtitle, repainted only when it changes."""
        if same_text(text, getattr(self, "_subtitle", None)):
            return
        self._subtitle = text
        self.border_subtitle = text

    def on_mount(self) -> None:
        self.add_class("pane")
        self.border_title = f"{self.number} {self.pane_title}" if self.number else self.pane_title

    def focus_target(self) -> None:
        # at once, not after a refresh: a key typed right after "2" goes to the new pane
        self.screen.set_focus(self.target())

    # -- filter ------------------------------------------------------------------------------------

    def filter_input(self) -> FilterInput | None:
        try:
            return self.query_one(FilterInput)
        except Exception:
            return None

    def open_filter(self) -> bool:
        box = self.filter_input()
        if box is None:
            return False
        box.display = True
        self.screen.set_focus(box)  # at once: the next key typed is part of the filter
        return True

    def close_filter(self, *, clear: bool = False) -> None:
        box = self.filter_input()
        if box is None:
            return
        if clear and box.value:
            box.value = ""
            self.apply_filter("")
        if not box.value:
            box.display = False
        self.focus_target()

    #: seconds of quiet typing before a filter is applied (enter applies at once)
    filter_debounce = 0.0

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            if not self.filter_debounce:
                self.apply_filter(event.value)
                return
            timer = getattr(self, "_filter_timer", None)
            if timer is not None:
                timer.stop()
            value = event.value
            self._filter_timer = self.set_timer(self.filter_debounce, lambda: self.apply_filter(value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            timer = getattr(self, "_filter_timer", None)
            if timer is not None:
                timer.stop()
            self.apply_filter(event.value)
            self.close_filter()

    def apply_filter(self, text: str) -> None:
        """Apply the filter text (called on every change)."""

    def on_sort_changed(self, event: "SortChanged") -> None:
        event.stop()
        self.resort()

    def resort(self) -> None:
        """Show the rows again in the table's new sort order."""

    def on_click(self, event) -> None:
        """A click anywhere in a pane focuses it (its table or log: the click also selects)."""
        if self.screen.focused is None or self not in self.screen.focused.ancestors_with_self:
            self.focus_target()


# -- tables -------------------------------------------------------------------------------------------

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


class Table(DataTable):
    """A DataTable that shows a list of rows by key and rewrites only what changed.

    Each row is given as its key and a tuple of cell *values* (what the row shows, before
    rendering): :meth:`sync` adds new rows, rewrites the cells whose value changed (public
    ``update_cell``, a cell at a time) and removes the rows that are gone, so a table whose
    rows did not change costs one tuple comparison per row and nothing is drawn again.
    """

    BINDINGS = [keymap.SORT, keymap.SORT_REVERSE]

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.cols: tuple[Col, ...] = ()
        self._written: dict[str, tuple] = {}  # row key -> the cell values last written
        self.sort_key: str | None = None  # the column the rows are sorted by (None: the pane's own order)
        self.sort_descending = False

    def set_columns(self, cols: tuple[Col, ...]) -> None:
        """(Re)build the columns; every row is dropped. No cell padding: see :class:`Col`.
        The sorted column's label carries ▲ (ascending) or ▼."""
        if self.columns:
            self.clear(columns=True)
        self._written.clear()
        self.cols = cols
        self.cell_padding = 0
        for c in cols:
            label = c.label
            if c.key == self.sort_key:
                mark = "▼" if self.sort_descending else "▲"
                label = (mark + label) if c.right else (label + mark)
            label = (" " if c.gap_before else "") + label
            self.add_column(Text(label, justify="right" if c.right else "left"), key=c.key, width=c.width)

    # -- sorting: s (next column), S (reverse), or a click on a header --------------------------------

    def sort_by(self, key: str | None, descending: bool = False) -> None:
        if (key, descending) == (self.sort_key, self.sort_descending):
            return
        self.sort_key, self.sort_descending = key, descending
        self.set_columns(self.cols)
        self.post_message(SortChanged(self))

    def action_sort_next(self) -> None:
        keys = [c.key for c in self.cols]
        if self.sort_key is None:
            self.sort_by(keys[0])
        elif self.sort_key == keys[-1]:
            self.sort_by(None)
        else:
            self.sort_by(keys[keys.index(self.sort_key) + 1])

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_key or self.cols[0].key, not self.sort_descending)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key == self.sort_key:
            self.sort_by(key, not self.sort_descending)
        else:
            self.sort_by(key)

    def ordered(self, items: list, value: Callable[[object, str], object]) -> list:
        """``items`` in the table's sort order (``value(item, column key)``); empty values last."""
        if self.sort_key is None:
            return items
        key = self.sort_key
        present = [i for i in items if value(i, key) is not None]
        absent = [i for i in items if value(i, key) is None]
        return sorted(present, key=lambda i: value(i, key), reverse=self.sort_descending) + absent

    def sync(self, rows: Iterable[tuple[str, tuple]], render: Callable[[tuple], list[Text]]) -> None:
        """Show exactly ``rows`` (key, cell values), in their order; ``render(values)`` makes a
        row's cells (one Text per column) when it changed. Rows that only moved (a sorted
        column changed) are laid out again, the cursor staying on its row."""
        rows = list(rows)
        order = [key for key, _ in rows]
        current = self.row_keys()
        in_order, in_current = set(order), set(current)
        kept = [k for k in order if k in in_current]
        # rows that stay must keep their order, and new ones can only be added at the end
        if [k for k in current if k in in_order] != kept or order[:len(kept)] != kept:
            cursor = current[self.cursor_row] if 0 <= self.cursor_row < len(current) else None
            self.clear()
            self._written.clear()
            self._fill(rows, render)
            if cursor in order:
                self.move_cursor(row=order.index(cursor), animate=False)
            return
        self._fill(rows, render)

    def _fill(self, rows: list[tuple[str, tuple]], render: Callable[[tuple], list[Text]]) -> None:
        seen: set[str] = set()
        for key, values in rows:
            seen.add(key)
            old = self._written.get(key)
            if old == values:
                continue
            cells = render(values)
            if old is None:
                self.add_row(*cells, key=key)
            else:
                for i, col in enumerate(self.cols):
                    if old[i] != values[i]:
                        self.update_cell(key, col.key, cells[i])
            self._written[key] = values
        for key in [k for k in self._written if k not in seen]:
            self.remove_row(key)
            del self._written[key]

    def row_keys(self) -> list[str]:
        """The keys of the rows, top to bottom."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]


class SortChanged(Message):
    """A table's sort order changed: its pane shows its rows again in the new order."""

    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table


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
