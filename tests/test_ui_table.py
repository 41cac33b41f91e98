"""The console's table widget (``storycheck_tui.ui.table``) on its own, driven with Pilot:
a refresh repaints only the rows that changed, a moved row is not drawn again, the cursor
keeps its row, and the keys and clicks the panes rely on."""

from __future__ import annotations

import asyncio
import functools

from rich.text import Text
from textual.app import App

from pilot import screen_lines, screen_strips
from storycheck_tui.ui.columns import Col, columns, fit
from storycheck_tui.ui.table import SortChanged, Table

COLS = columns(Col("name", "Name", 12), Col("n", "N", 6, right=True))
SIZE = (30, 10)  # 9 rows below the header


def async_test(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return run


class CountingTable(Table):
    """Notes the lines it is asked to paint and the rows it draws from their values."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.painted: list[int] = []
        self.drawn: list[tuple] = []

    def render_line(self, y: int):
        self.painted.append(y)
        return super().render_line(y)


class TableApp(App):
    CSS = "CountingTable { height: 1fr; }"

    def __init__(self, rows: list[tuple[str, tuple]]) -> None:
        super().__init__()
        self.rows = rows
        self.events: list = []

    def compose(self):
        table = CountingTable(id="t")
        table.set_columns(COLS)
        yield table

    def on_mount(self) -> None:
        self.show(self.rows)
        self.table.focus()

    @property
    def table(self) -> CountingTable:
        return self.query_one(CountingTable)

    def render_row(self, values: tuple) -> list[Text]:
        self.table.drawn.append(values)
        return [fit(c, Text(str(v))) for c, v in zip(COLS, values)]

    def show(self, rows: list[tuple[str, tuple]]) -> None:
        self.rows = rows
        self.table.sync(rows, self.render_row)

    def on_table_row_highlighted(self, event: Table.RowHighlighted) -> None:
        self.events.append(("highlighted", event.row_key))

    def on_table_row_selected(self, event: Table.RowSelected) -> None:
        self.events.append(("selected", event.row_key))

    def on_sort_changed(self, event: SortChanged) -> None:
        self.events.append(("sorted", event.table.sort_key, event.table.sort_descending))


def rows(n: int, start: int = 0) -> list[tuple[str, tuple]]:
    return [(f"k{i}", (f"user{i}", i)) for i in range(start, start + n)]


async def painted_after(app, pilot, change) -> list[int]:
    table = app.table
    await pilot.pause()
    table.painted.clear()
    table.drawn.clear()
    change()
    await pilot.pause()
    return sorted(set(table.painted))


@async_test
async def test_a_refresh_repaints_only_the_rows_whose_values_changed():
    """Under load the panes sync every redraw: rows that did not change must cost nothing.
    (With DataTable's ``update_cell`` every visible line was painted again.)"""
    app = TableApp(rows(20))
    async with app.run_test(size=SIZE) as pilot:
        same = await painted_after(app, pilot, lambda: app.show(rows(20)))
        assert same == [] and app.table.drawn == []
        changed = rows(20)
        changed[3] = ("k3", ("user3", 333))
        lines = await painted_after(app, pilot, lambda: app.show(changed))
        assert lines == [4], "row 3 is the fourth line under the header"
        assert app.table.drawn == [("user3", 333)]
        assert "user3" in screen_lines(app)[4] and "333" in screen_lines(app)[4]
        off_screen = list(changed)
        off_screen[15] = ("k15", ("user15", 1515))  # below the window: not painted, not drawn
        assert await painted_after(app, pilot, lambda: app.show(off_screen)) == []
        assert app.table.drawn == []


@async_test
async def test_rows_pushed_down_by_a_new_one_are_not_drawn_again_and_the_cursor_keeps_its_row():
    app = TableApp(rows(20, start=1))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor(row=2)
        await pilot.pause()
        assert app.table.cursor_key == "k3"
        app.events.clear()
        await painted_after(app, pilot, lambda: app.show(rows(21, start=0)))
        assert app.table.drawn == [("user0", 0)], "only the new row is drawn from its values"
        assert app.table.cursor_row == 3 and app.table.cursor_key == "k3"
        assert app.events == [], "the same row is under the cursor"
        assert screen_lines(app)[1].startswith("user0")
        # the row under the cursor goes: the cursor stays on its line, on the row now there
        app.show([r for r in rows(21) if r[0] != "k3"])
        await pilot.pause()
        assert app.table.cursor_row == 3 and app.table.cursor_key == "k4"
        assert app.events == [("highlighted", "k4")]


@async_test
async def test_focus_restyles_the_rows_without_drawing_their_cells_again():
    app = TableApp(rows(5))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.table.drawn.clear()
        cursor_bg = lambda: screen_strips(app)[1]._segments[0].style.bgcolor  # noqa: E731
        focused = cursor_bg()
        app.table.blur()
        await pilot.pause()
        assert cursor_bg() != focused, "the cursor row looks blurred"
        app.table.focus()
        await pilot.pause()
        assert cursor_bg() == focused
        assert app.table.drawn == []


@async_test
async def test_keys_move_the_cursor_and_enter_selects():
    app = TableApp(rows(30))
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await pilot.press("down", "down")
        assert table.cursor_row == 2
        await pilot.press("up")
        assert table.cursor_row == 1
        await pilot.press("pagedown")
        assert table.cursor_row == 10 and table.scroll_offset.y > 0  # a page: the 9 rows in view
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 29 and "user29" in "".join(screen_lines(app))
        await pilot.press("home")
        await pilot.pause()
        assert table.cursor_row == 0 and table.scroll_offset.y == 0
        await pilot.press("pagedown", "pageup")
        assert table.cursor_row == 0
        app.events.clear()
        await pilot.press("enter")
        await pilot.pause()
        assert app.events == [("selected", "k0")]


@async_test
async def test_a_click_moves_the_cursor_a_second_click_selects_a_header_click_sorts():
    app = TableApp(rows(5))
    async with app.run_test(size=SIZE) as pilot:
        app.events.clear()
        await pilot.click("#t", offset=(2, 3))  # the third row
        await pilot.pause()
        assert app.table.cursor_row == 2 and app.events == [("highlighted", "k2")]
        await pilot.click("#t", offset=(2, 3))
        await pilot.pause()
        assert app.events[-1] == ("selected", "k2")
        await pilot.click("#t", offset=(14, 0))  # the N header
        await pilot.pause()
        assert app.events[-1] == ("sorted", "n", False) and "▲N" in screen_lines(app)[0]
        await pilot.click("#t", offset=(14, 0))
        await pilot.pause()
        assert app.events[-1] == ("sorted", "n", True) and "▼N" in screen_lines(app)[0]
        await pilot.press("s")  # past the last column: back to the pane's own order
        await pilot.pause()
        assert app.events[-1] == ("sorted", None, False) and "▲" not in screen_lines(app)[0]


@async_test
async def test_the_row_under_the_mouse_is_shown_until_a_key_moves_the_cursor():
    app = TableApp(rows(5))
    async with app.run_test(size=SIZE) as pilot:
        bg = lambda y: screen_strips(app)[y]._segments[0].style.bgcolor  # noqa: E731
        await pilot.pause()
        plain = bg(3)
        app.table.drawn.clear()
        await pilot.hover("#t", offset=(2, 3))
        await pilot.pause()
        assert bg(3) != plain and app.table.drawn == [], "hovered: restyled, not drawn again"
        await pilot.press("down")
        await pilot.pause()
        assert bg(3) == plain
