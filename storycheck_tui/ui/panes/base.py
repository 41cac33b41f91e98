"""What every pane shares: a titled border, a focus target, an optional filter box."""

from __future__ import annotations

from dataclasses import dataclass

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey, RowKey


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


#: what DataTable draws for an empty cell (``_EMPTY_TEXT`` in textual.widgets._data_table)
EMPTY_CELL = Text(no_wrap=True, end="")


class Table(DataTable):
    """A DataTable whose rows are rewritten in place, a row at a time.

    ``DataTable.update_cell`` invalidates every cached line of the table and asks for a
    repaint on each call; :meth:`set_cells` writes any number of cells and :meth:`flush`
    invalidates and repaints once, after a whole update.
    """

    _pending = False

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        # DataTable's caches hold up to 10,000 rendered cells and 1,000 lines and rows per table,
        # most of them keyed by an update count that has moved on: only objects for the
        # garbage collector to scan, over and over. A window of 100 rows needs far fewer.
        self._cell_render_cache.maxsize = 2000
        self._row_render_cache.maxsize = 300
        self._line_cache.maxsize = 300

    def set_cells(self, row_key: str, values: dict[str, object]) -> None:
        """Write cells of an existing row (column key -> new value); shown after :meth:`flush`."""
        row = self._data.get(RowKey(row_key))  # pinned textual: DataTable keeps rows in _data
        if row is None:
            raise KeyError(row_key)
        for column_key, value in values.items():
            row[ColumnKey(column_key)] = value
        self._pending = True

    def flush(self) -> None:
        if self._pending:
            self._pending = False
            self._update_count += 1  # the key of every render cache of DataTable:
            for cache in (self._row_render_cache, self._cell_render_cache, self._row_renderable_cache,
                          self._line_cache):
                cache.clear()  # what they hold can no longer be found, let it go now
            self._prune_cell_lines()
            self.refresh()

    def _prune_cell_lines(self) -> None:
        """Forget the rendered text of cells that are no longer in the table."""
        cache = self._cell_lines_cache
        if cache is None or len(cache) <= 2 * (len(self._data) + 1) * len(self.columns):
            return
        live = {id(v) for row in self._data.values() for v in row.values()}
        live.update(id(c.label) for c in self.columns.values())
        for key in [k for k in cache.keys() if k[0] not in live]:
            cache.discard(key)

    # Rendering. DataTable renders a cell again (``Styled(Padding(cell))`` through the whole
    # Rich pipeline) whenever any cell of the table changed, the cursor moved or the table's
    # focus changed, although the cell's own text did not. Here the text of a cell is rendered
    # once per Text object and width, and only the table's styles (base, cursor, hover, the
    # row/column meta for the mouse) are layered on again: the same segments, far less work.

    _cell_lines_cache: LRUCache[tuple[int, int], tuple[Text, list[Segment]]] | None = None

    def _cell_line(self, cell: Text, width: int) -> list[Segment]:
        cache = self._cell_lines_cache
        if cache is None:
            cache = self._cell_lines_cache = LRUCache(1500)  # a results window has 800 cells
        key = (id(cell), width)
        hit = cache.get(key)
        if hit is not None and hit[0] is cell:
            return hit[1]
        options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
        line = self.app.console.render_lines(Padding(cell, (0, 0)), options)[0]
        cache[key] = (cell, line)
        return line

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        header = row_index == -1
        if (column_index < 0 or column_index < self.fixed_columns or self.cell_padding
                or (header and self.header_height != 1) or (not header and not 0 <= self.fixed_rows <= row_index)):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._header_row_key if header else self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
                     self._pseudo_class_state)
        lines = self._cell_render_cache.get(cache_key)
        if lines is not None:
            return lines
        if header:
            cell = self.ordered_columns[column_index].label
        else:
            row = self.rows.get(row_key)
            cell = self._data.get(row_key, {}).get(column_key)
            if row is None or row.height != 1:
                cell = None
            elif isinstance(cell, Text) and not cell:
                cell = EMPTY_CELL  # as DataTable: an empty Text is drawn as its own empty cell
        if not isinstance(cell, Text):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            header, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        lines = [list(Segment.apply_style(self._cell_line(cell, width), pre_style, post_style))]
        self._cell_render_cache[cache_key] = lines
        return lines


def setup_table(table: DataTable, cols: tuple[Col, ...]) -> None:
    table.cell_padding = 0
    for c in cols:
        label = (" " if c.gap_before else "") + c.label
        table.add_column(Text(label, justify="right" if c.right else "left"), key=c.key, width=c.width)


def fit(col: Col, text: Text) -> Text:
    """Cut ``text`` to the column (keeping its gap), with an ellipsis."""
    room = col.width - 1 - (1 if col.gap_before else 0)
    if text.cell_len > room:
        text = text.copy()
        text.truncate(room, overflow="ellipsis")
    if col.gap_before:
        text = Text(" ").append_text(text)
    if col.right:
        text.justify = "right"
    return text
