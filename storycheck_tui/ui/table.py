"""The console's table: rows by key, a row cursor, sorting by key or header click, and a
frame that costs nothing for rows that did not change.

Each row is a key and a tuple of cell *values*; the table draws a row by calling the
``render(values)`` it was given (one Text per column), and keeps what it drew per row until
the row's values change. :meth:`Table.sync` repaints only the screen lines of rows whose
values changed (a moved row is drawn from its cache), so a refresh under load redraws the
few rows that did, not every visible cell (Textual's ``DataTable.update_cell`` invalidates
all of its render caches at each call). Built on the Line API (``ScrollView`` +
``render_line``), public Textual only.

State: all of it is owned by the UI thread (the app's event loop).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from storycheck_tui.ui import keymap
from storycheck_tui.ui.columns import Col

Render = Callable[[tuple], list[Text]]


def header_text(col: Col, sort_key: str | None, descending: bool) -> Text:
    """A column's header: its label, with ▲ (ascending) or ▼ if the rows are sorted by it."""
    label = col.label
    if col.key == sort_key:
        mark = "▼" if descending else "▲"
        label = (mark + label) if col.right else (label + mark)
    return Text((" " if col.gap_before else "") + label, justify="right" if col.right else "left")


def cell_segments(console, text: Text, width: int) -> list[Segment]:
    """One cell as segments exactly ``width`` cells wide (a right-justified text padded on
    its left, any other on its right), drawn as a one-line, no-wrap cell is."""
    if "\n" in text.plain:
        text = text.copy()
        text.plain = text.plain.replace("\n", " ")
    if text.cell_len > width:
        text = text.copy()
        text.truncate(width, overflow=text.overflow or "fold")
    spare = width - text.cell_len
    if spare and text.justify == "right":
        text = text.copy()
        text.rstrip()
        text.pad_left(width - text.cell_len)
        spare = 0
    segments = list(text.render(console, end=""))
    if text.style:  # the text's own style lies under its spans (``Text.render`` leaves it out)
        segments = list(Segment.apply_style(segments, console.get_style(text.style)))
    if spare:
        segments.append(Segment(" " * spare))
    return segments


class Table(ScrollView, can_focus=True):
    """Rows by key with a row cursor; the header shows the sort order.

    Keys: ↑/↓, page up/down, home/end (ctrl+home/ctrl+end) move the cursor; enter selects
    (:class:`Table.RowSelected`); ``s``/``S`` sort. A click on a row moves the cursor there (a
    second click selects it), a click on a header sorts by that column.
    """

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home,home", "cursor_top", "Top", show=False),
        Binding("ctrl+end,end", "cursor_bottom", "Bottom", show=False),
        keymap.SORT, keymap.SORT_REVERSE,
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"table--header", "table--cursor", "table--hover",
                                             "table--header-hover"}

    # the look of Textual's DataTable, which these tables replace
    DEFAULT_CSS = """
    Table {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        overflow-x: hidden;

        &:focus {
            background-tint: $foreground 5%;
            & > .table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .table--header {
                background-tint: $foreground 5%;
            }
        }
        & > .table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .table--header-hover {
            background: $accent 30%;
        }
        & > .table--hover {
            background: $block-hover-background;
        }
    }
    """

    class RowMessage(Message):
        """A message about one row: the table, the cursor's row index and the row's key."""

        def __init__(self, table: "Table", cursor_row: int, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.row_key = row_key

        @property
        def control(self) -> "Table":
            return self.table

    class RowHighlighted(RowMessage):
        """The cursor is on another row (or the row under it is another one)."""

    class RowSelected(RowMessage):
        """Enter on the cursor row, or a click on it."""

    def __init__(self, *, cursor_type: str = "row", show_cursor: bool = True, name: str | None = None,
                 id: str | None = None, classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if cursor_type not in ("row", "none"):
            raise ValueError(f"a Table has a row cursor or none, not {cursor_type!r}")
        self.show_cursor = show_cursor and cursor_type == "row"
        self.cols: tuple[Col, ...] = ()
        self.sort_key: str | None = None  # the column the rows are sorted by (None: the pane's own order)
        self.sort_descending = False
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._values: dict[str, tuple] = {}
        self._render: Render = lambda values: [Text(str(v)) for v in values]
        self._cursor = 0
        self._hover: int | None = None  # the row under the mouse (-1: the header); None: not shown
        # per row key: (values, its cells as segments); (what it was drawn with, the line)
        self._cells: dict[str, tuple[tuple, list[Segment]]] = {}
        self._lines: dict[str, tuple[tuple, Strip]] = {}
        self._header: tuple[tuple, Strip] | None = None
        self._look: tuple = ()
        self._metas: list[Style] = []  # per column: marks its cells (a line's cells are not merged)
        #: rows drawn from their values (a cache miss), since the table was made: tests read it
        self.rows_drawn = 0

    # -- columns and sorting -------------------------------------------------------------------------

    def set_columns(self, cols: tuple[Col, ...]) -> None:
        """(Re)build the columns; every row is dropped."""
        self.cols = cols
        self._metas = [Style.from_meta({"column": i}) for i in range(len(cols))] + [Style.from_meta({"column": -1})]
        self.clear()

    @property
    def table_width(self) -> int:
        return sum(c.width for c in self.cols)

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

    def header_clicked(self, key: str) -> None:
        """A click on a header: sort by it, or reverse the order if it is the sort column."""
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

    # -- rows ------------------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._keys)

    def row_keys(self) -> list[str]:
        """The keys of the rows, top to bottom."""
        return list(self._keys)

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self._cursor] if self._keys else None

    def clear(self) -> None:
        """Drop every row; the cursor goes back to the top."""
        self._keys, self._index, self._values = [], {}, {}
        self._cells.clear()
        self._lines.clear()
        self._header = None
        self._cursor = 0
        self._hover = None
        self.virtual_size = Size(self.table_width, 1)
        if self.is_mounted:
            self.scroll_to(0, 0, animate=False, force=True)
        self.refresh()

    def sync(self, rows: Iterable[tuple[str, tuple]], render: Render) -> None:
        """Show exactly ``rows`` (key, cell values), in their order. ``render(values)`` makes
        a row's cells (one Text per column) and must depend on the values alone: a row is
        drawn again only when its values change. The cursor stays on its row wherever it
        moved (if the row is gone, on the same line); only the lines that changed are
        repainted."""
        self._render = render
        rows = list(rows)
        keys = [k for k, _ in rows]
        before = self.cursor_key
        old_values = self._values
        self._values = dict(rows)
        changed = [k for k, v in rows if old_values.get(k) != v or k not in old_values]
        for gone in [k for k in self._cells if k not in self._values]:
            del self._cells[gone]
            self._lines.pop(gone, None)
        if keys == self._keys:
            top = self.scroll_offset.y
            height = self.size.height
            width = self.size.width
            for k in changed:
                y = self._index[k] - top + 1
                if 1 <= y < height:
                    self.refresh(Region(0, y, width, 1))
            return
        moved_from = self._cursor
        self._keys = keys
        self._index = {k: i for i, k in enumerate(keys)}
        if len(keys) + 1 != self.virtual_size.height:
            self.virtual_size = Size(self.table_width, len(keys) + 1)
        if before in self._index:
            self._cursor = self._index[before]
        else:
            self._cursor = min(self._cursor, max(0, len(keys) - 1))
        if self._cursor != moved_from:
            self.scroll_to_row(self._cursor)
        self.refresh()
        self._highlighted(before)

    def _highlighted(self, before: str | None) -> None:
        """Tell the pane if the row under the cursor is another one than ``before``."""
        key = self.cursor_key
        if key is not None and key != before and self.show_cursor:
            self.post_message(self.RowHighlighted(self, self._cursor, key))

    # -- cursor ----------------------------------------------------------------------------------------

    def move_cursor(self, *, row: int | None = None, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on row ``row`` (clamped), scrolling it into view."""
        if row is None or not self._keys:
            return
        before, old = self.cursor_key, self._cursor
        self._cursor = max(0, min(row, len(self._keys) - 1))
        if scroll:
            self.scroll_to_row(self._cursor, animate=animate)
        if self._cursor != old:
            self._refresh_rows(old, self._cursor)
        self._highlighted(before)

    def scroll_to_row(self, row: int, *, animate: bool = False) -> None:
        """Scroll so that row ``row`` is in view (below the header)."""
        self.scroll_to_region(Region(0, row + 1, 1, 1), spacing=Spacing(1, 0, 0, 0), animate=animate, force=True,
                              immediate=True)

    def _refresh_rows(self, *rows: int) -> None:
        top = self.scroll_offset.y
        width = self.size.width
        for r in rows:
            y = r + 1 - top if r >= 0 else 0
            if y >= 0:
                self.refresh(Region(0, y, width, 1))

    def _keyboard(self) -> None:
        if self._hover is not None:
            old, self._hover = self._hover, None
            self._refresh_rows(old)

    def action_cursor_up(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.move_cursor(row=self._cursor - 1)
        else:
            self.scroll_up(animate=False)

    def action_cursor_down(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.move_cursor(row=self._cursor + 1)
        else:
            self.scroll_down(animate=False)

    def _page(self) -> int:
        return max(1, self.size.height - 1)

    def action_page_down(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.scroll_relative(y=self._page(), animate=False, force=True, immediate=True)
            self.move_cursor(row=self._cursor + self._page())
        else:
            self.scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.scroll_relative(y=-self._page(), animate=False, force=True, immediate=True)
            self.move_cursor(row=self._cursor - self._page())
        else:
            self.scroll_page_up(animate=False)

    def action_cursor_top(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.move_cursor(row=0)
        else:
            self.scroll_home(animate=False)

    def action_cursor_bottom(self) -> None:
        self._keyboard()
        if self.show_cursor:
            self.move_cursor(row=len(self._keys) - 1)
        else:
            self.scroll_end(animate=False)

    def action_select_cursor(self) -> None:
        self._keyboard()
        if self.show_cursor and self._keys:
            self.post_message(self.RowSelected(self, self._cursor, self._keys[self._cursor]))

    # -- mouse -----------------------------------------------------------------------------------------

    def _row_at(self, event: events.MouseEvent) -> int | None:
        """The row under the mouse (-1: the header); None: past the rows or off the content."""
        at = event.get_content_offset(self)
        if at is None:
            return None
        if at.y == 0:
            return -1
        row = at.y - 1 + self.scroll_offset.y
        return row if row < len(self._keys) else None

    def column_at(self, x: int) -> Col | None:
        for col in self.cols:
            if x < col.width:
                return col
            x -= col.width
        return None

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row == -1:
            at = event.get_content_offset(self)
            col = self.column_at(at.x) if at is not None else None
            if col is not None:
                self.header_clicked(col.key)
            return
        if row is None or not self.show_cursor:
            return
        if row == self._cursor:
            self.post_message(self.RowSelected(self, row, self._keys[row]))
        else:
            self.move_cursor(row=row, animate=True)
        event.stop()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        row = self._row_at(event) if self.show_cursor else None
        if row != self._hover:
            old, self._hover = self._hover, row
            self._refresh_rows(*(r for r in (old, row) if r is not None))

    def on_leave(self, event: events.Leave) -> None:
        self._keyboard()

    # -- drawing ---------------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # the styles are looked up once per frame, not per line
        base = self.rich_style
        cursor = self.get_component_rich_style("table--cursor")
        hover = self.get_component_rich_style("table--hover")
        header = self.get_component_styles("table--header").rich_style
        header_hover = self.get_component_rich_style("table--header-hover")
        self._look = (self.size.width, base, cursor, hover, header, header_hover)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        if not self._look:
            return Strip.blank(self.size.width)
        width, base = self._look[0], self._look[1]
        if y == 0:
            return self._header_line()
        row = y - 1 + self.scroll_offset.y
        if row >= len(self._keys):
            return Strip.blank(width, base)
        return self._row_line(self._keys[row], row)

    def _header_line(self) -> Strip:
        width, base, _cursor, hover, header, header_hover = self._look
        hovered = self._hover == -1
        tag = (self.cols, self.sort_key, self.sort_descending, hovered, self._look)
        if self._header is not None and self._header[0] == tag:
            return self._header[1]
        style = header
        post = Style.null()
        if hovered:
            comp = hover + header_hover
            style = header + comp
            post = Style.from_color(color=comp.color)
        console = self.app.console
        metas = self._metas
        segments: list[Segment] = []
        for i, col in enumerate(self.cols):
            cell = cell_segments(console, header_text(col, self.sort_key, self.sort_descending), col.width)
            segments.extend(Segment.apply_style(cell, style + metas[i], post))
        strip = self._finish(segments, style, width, base)
        self._header = (tag, strip)
        return strip

    def _row_line(self, key: str, row: int) -> Strip:
        """Row ``row`` (key ``key``) as a line: from its cache unless its values or its look
        (cursor, hover, focus, theme, width) changed; its cells are drawn again only when its
        values changed."""
        width, base, cursor, hover, _header, _hh = self._look
        values = self._values[key]
        on_cursor = self.show_cursor and row == self._cursor
        hovered = self._hover == row
        tag = (values, on_cursor, hovered, self._look)
        hit = self._lines.get(key)
        if hit is not None and hit[0] == tag:
            return hit[1]
        cells = self._cells.get(key)
        if cells is None or cells[0] != values:
            cells = (values, self._draw(values))
            self._cells[key] = cells
        comp = Style.null()
        if hovered:
            comp += hover
        if on_cursor:
            comp += cursor
        style = base + comp
        post = Style.from_color(color=comp.color) if comp.color is not None else Style.null()
        metas = self._metas
        segments: list[Segment] = []
        for i, cell in enumerate(cells[1]):
            segments.extend(Segment.apply_style(cell, style + metas[i], post))
        strip = self._finish(segments, style, width, base)
        self._lines[key] = (tag, strip)
        return strip

    def _draw(self, values: tuple) -> list[list[Segment]]:
        self.rows_drawn += 1
        console = self.app.console
        return [cell_segments(console, text, col.width) for col, text in zip(self.cols, self._render(values))]

    def _finish(self, segments: list[Segment], style: Style, width: int, base: Style) -> Strip:
        # the rest of the line in the row's style (even when empty: the same segments as DataTable's)
        segments.append(Segment(" " * max(0, width - self.table_width), style + self._metas[-1]))
        return Strip(segments).crop(0, width).adjust_cell_length(width, base).simplify()


class SortChanged(Message):
    """A table's sort order changed: its pane shows its rows again in the new order."""

    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table
