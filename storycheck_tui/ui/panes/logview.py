"""The unified log: every record of engine, checker and proxy pool, drained from the log
ring in batches. Bounded memory, level colours, follow mode, filter by level and text.

:class:`LogView` keeps the entries themselves (a bounded deque) and renders only the lines
on screen (``render_line``), so adding thousands of records is a list append, not a
widget write per line, and filtering is one pass over at most ``capacity`` entries.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from datetime import tzinfo
from typing import Iterable

from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from storycheck_tui.logs import LogEntry
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.panes.base import Pane

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LEVEL_NO = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
            "CRITICAL": logging.CRITICAL}
LEVEL_SHORT = {"DEBUG": "DEBUG", "INFO": "INFO ", "WARNING": "WARN ", "ERROR": "ERROR", "CRITICAL": "CRIT "}
CAPACITY = 10_000


def matches(e: LogEntry, min_level: int, needle: str) -> bool:
    if LEVEL_NO.get(e.level, 0) < min_level:
        return False
    if not needle:
        return True
    hay = " ".join(x for x in (e.message, e.event, e.username, e.proxy, e.error_type, e.level) if x).lower()
    return needle in hay


def render_entry(e: LogEntry, tz: tzinfo | None, *, events: bool = True) -> Text:
    t = Text(no_wrap=True, end="")
    t.append(fmt.clock(e.created, tz), style="bright_black")
    t.append(" ")
    t.append(LEVEL_SHORT.get(e.level, e.level[:5]), style=fmt.LEVEL_STYLE.get(e.level, ""))
    t.append(" ")
    if e.event and events:
        t.append(f"{e.event:<20}", style="cyan" if LEVEL_NO.get(e.level, 0) < logging.WARNING else "yellow")
        t.append(" ")
    t.append(fmt.literal(e.message), style="red" if e.level in ("ERROR", "CRITICAL") else "")
    if e.traceback:
        t.append("  (traceback: enter on the result, or the log file)", style="bright_black")
    return t


def gap_entry(dropped: int, after: LogEntry | None) -> LogEntry:
    created = after.created if after else 0.0
    return LogEntry(seq=-1, created=created, level="WARNING", logger="storycheck.console", event="LOG_GAP",
                    message=f"{dropped:,} log records arrived faster than the console drew them and are not shown "
                            f"here (the log file has every one)")


class LogView(ScrollView, can_focus=True):
    """A virtual list of log entries; only the visible lines are rendered."""

    BINDINGS = keymap.LOG

    DEFAULT_CSS = """
    LogView { overflow-y: scroll; overflow-x: auto; }
    """

    def __init__(self, *, capacity: int = CAPACITY, tz: tzinfo | None = None, **kw) -> None:
        super().__init__(**kw)
        self.capacity = capacity
        self.tz = tz
        self.entries: deque[LogEntry] = deque(maxlen=capacity)
        self.shown: deque[LogEntry] = deque()
        self.min_level = logging.INFO
        self.needle = ""
        self.follow = True
        self._width = 0
        # rendered lines by entry (not by line number: new entries shift every line, the
        # entries on screen stay the same objects); the entry is kept to tell a reused id, the
        # style to tell a restyle that changed it (a zoom or a focus change restyles the log
        # without changing its look: its lines are not drawn again for that)
        self._cache: LRUCache[tuple[int, int, bool], tuple[LogEntry, Style, Strip]] = LRUCache(256)
        self._programmatic = False
        self.total_seen = 0

    # -- adding and filtering ---------------------------------------------------------------------

    def add(self, new: Iterable[LogEntry]) -> int:
        """Append entries (one batch per redraw); returns how many are visible under the filter.

        Entries older than the newest one shown (records of other processes, read from the
        database a second or so after they happened) take their place in time."""
        new = list(new)
        if new and self.entries and min(e.created for e in new) < self.entries[-1].created:
            return self._merge(new)
        entries, visible = self.entries, self.shown
        min_level, needle = self.min_level, self.needle
        shown = 0
        width = self._width
        for e in new:
            if len(entries) == entries.maxlen:
                old = entries[0]
                if visible and visible[0] is old:
                    visible.popleft()
            entries.append(e)
            self.total_seen += 1
            if matches(e, min_level, needle):
                visible.append(e)
                shown += 1
                w = 36 + len(e.message)
                if w > width:
                    width = w
        self._width = min(width, 2000)
        if shown or len(visible) != self.virtual_size.height:
            self._resize()
            if self.follow:
                self._to_end()
            else:
                self.refresh()
        return shown

    def _merge(self, new: list[LogEntry]) -> int:
        by_time = sorted(new, key=lambda e: e.created)
        merged = list(heapq.merge(self.entries, by_time, key=lambda e: e.created))
        self.entries = deque(merged[-self.capacity:], maxlen=self.capacity)
        self.total_seen += len(new)
        self._width = min(max([self._width] + [36 + len(e.message) for e in new]), 2000)
        shown = sum(1 for e in new if matches(e, self.min_level, self.needle))
        self.set_filter()
        return shown

    def set_filter(self, *, min_level: int | None = None, needle: str | None = None) -> None:
        if min_level is not None:
            self.min_level = min_level
        if needle is not None:
            self.needle = needle.strip().lower()
        self.shown = deque(e for e in self.entries if matches(e, self.min_level, self.needle))
        self._cache.clear()
        self._resize()
        if self.follow:
            self._to_end()
        self.refresh()

    def _resize(self) -> None:
        size = Size(self._width, len(self.shown))
        if size == self.virtual_size:
            return
        styles = self.styles
        if not self.size or styles.overflow_y != "scroll" or (
                styles.overflow_x == "auto" and styles.scrollbar_size_horizontal):
            self.virtual_size = size  # a layout: the scrollbars may come or go
            return
        # ``virtual_size`` lays out the whole screen when it changes (a frame of ~12 ms
        # instead of ~4 under load, at every redraw while the log grows). The log's own size
        # is the stylesheet's and its scrollbars stay as they are (the vertical one always
        # shown, the horizontal one 0 cells high): only its scroll range and the vertical
        # scrollbar's thumb change.
        self.set_reactive(LogView.virtual_size, size)
        self.vertical_scrollbar.window_virtual_size = size.height
        self.scroll_y = self.validate_scroll_y(self.scroll_y)
        self.scroll_x = self.validate_scroll_x(self.scroll_x)
        self.refresh()

    def _to_end(self) -> None:
        self._programmatic = True
        try:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        finally:
            self._programmatic = False
        self.refresh()

    def set_follow(self, on: bool) -> None:
        self.follow = on
        if on:
            self._to_end()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._programmatic:
            return
        # scrolling up stops following; coming back to the end follows again
        at_end = new >= self.max_scroll_y - 0.5
        if at_end != self.follow:
            self.follow = at_end
            self._notify_pane()

    def _notify_pane(self) -> None:
        pane = next((a for a in self.ancestors if isinstance(a, LogPane)), None)
        if pane is not None:
            pane.update_title()

    # -- actions ------------------------------------------------------------------------------------

    def action_cycle_level(self) -> None:
        names = list(LEVELS)
        current = next((n for n in names if LEVEL_NO[n] == self.min_level), "INFO")
        nxt = names[(names.index(current) + 1) % len(names)]
        self.set_filter(min_level=LEVEL_NO[nxt])
        self._notify_pane()

    def action_toggle_follow(self) -> None:
        self.set_follow(not self.follow)
        self._notify_pane()

    # -- rendering -------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self.shown):
            return Strip.blank(width, style)
        events = width >= 100  # a narrow log keeps its room for the message
        entry = self.shown[index]
        key = (id(entry), scroll_x, events)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is entry and hit[1] == style and hit[2].cell_length == width:
            strip = hit[2]
        else:
            text = render_entry(entry, self.tz, events=events)
            text.stylize(style, 0)
            segments = list(text.render(self.app.console))
            strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, style)
            self._cache[key] = (entry, style, strip)
        return strip.apply_offsets(scroll_x, index)


class LogPane(Pane):
    pane_name = "log"
    number = 4
    pane_title = "Log"
    filter_placeholder = "text in message, event, username or proxy"
    filter_id = "log-filter"

    def __init__(self, *, tz: tzinfo | None = None, capacity: int = CAPACITY, **kw) -> None:
        super().__init__(**kw)
        self._tz = tz
        self._capacity = capacity

    def compose(self):
        yield LogView(id="log-view", tz=self._tz, capacity=self._capacity)

    def target(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        super().on_mount()
        self.update_title()

    def add(self, entries: list[LogEntry]) -> None:
        self.target().add(entries)
        self.update_title()

    def apply_filter(self, text: str) -> None:
        self.target().set_filter(needle=text)
        self.update_title()

    def update_title(self) -> None:
        view = self.target()
        level = next((n for n in LEVELS if LEVEL_NO[n] == view.min_level), "INFO")
        parts = [f"≥{level}"]
        if view.needle:
            parts.append(f"matching {fmt.literal(view.needle)!r}")
        parts.append(f"{len(view.shown):,} of {len(view.entries):,} lines")
        parts.append("● follow" if view.follow else "‖ scrolled (F follows)")
        self.set_subtitle(Text(" · ".join(parts)))  # a Text: the needle is never markup
