"""The watch view (w): each watchlist with its interval, next round, last round's summary and
new stories; below it, the new stories of the selected watch (since its last round started).

Reads :func:`~storycheck_tui.store.reads.watch_overview` in a thread worker when it opens and
about once a second while it is open (never two reads at once); with the console's timer off
(snapshots) it reads once, inline. It only reads: a read-only console shows it as it is.

State: every attribute belongs to the UI thread; the read worker hands its answer back as
its result.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker, WorkerState as TaskState

from storycheck_tui.states import OPEN, BatchState
from storycheck_tui.store import reads
from storycheck_tui.store.reads import NewStory, WatchOverview
from storycheck_tui.store.watches import format_duration
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.columns import Col, columns, fit
from storycheck_tui.ui.table import Table
from storycheck_tui.ui.typed import ConsoleNode
from storycheck_tui.words import plural

#: seconds between reads while the view is open
READ_EVERY = 1.0
#: new stories of the selected watch listed (the newest; the count says how many in all)
RECENT = 20

#: what an operator looks for first comes first: an 80-column terminal shows up to "Checked"
WATCH_COLS = columns(
    Col("name", "Watch", 18), Col("every", "Every", 6, right=True), Col("next", "Next round", 11, right=True),
    Col("round", "Round", 6, right=True), Col("state", "State", 10, gap_before=True),
    Col("new", "New", 6, right=True), Col("checked", "Checked", 14, right=True),
    Col("failed", "Failed", 8, right=True), Col("profiles", "Profiles", 9, right=True),
    Col("webhook", "Webhook", 26))

STORY_COLS = columns(Col("user", "Profile", 22), Col("story", "Story id", 22), Col("taken", "Taken", 21),
                     Col("seen", "First seen", 21))


def next_round(w: WatchOverview, now: float, workers: bool = True) -> tuple[str, str]:
    """(text, style) of when the watch's next round starts; a due round with no live worker to
    start it says so (``workers``: some worker is running)."""
    if w.paused:
        return "paused", "bold yellow"
    if w.next_round_at > now:
        return "in " + fmt.duration(math.ceil(w.next_round_at - now)), ""
    if w.last_round is not None and w.last_round.state in OPEN:
        return f"after #{w.rounds}", "yellow"  # a round never starts while the previous one runs
    return ("due now", "bold cyan") if workers else ("no worker", "bold red")


def watch_cells(w: WatchOverview, now: float, workers: bool = True) -> tuple:
    r = w.last_round
    nxt = next_round(w, now, workers)
    return (w.name, w.every, nxt, w.rounds if r is not None else None, r.state if r is not None else None,
            w.new_stories, (r.completed, r.total) if r is not None else None, r.failed if r is not None else None,
            w.profiles, w.webhook)


def render_watch(cells: tuple) -> list[Text]:
    name, every, (nxt, nxt_style), number, state, new, checked, failed, profiles, webhook = cells
    out = [
        fmt.plain(name, "bold"), Text(format_duration(every)), Text(nxt, style=nxt_style),
        Text("—" if number is None else f"#{number}", style="bright_black"),
        Text("—", style="bright_black") if state is None else fmt.state(state),
        Text(f"{new:,}", style="bold green" if new else "bright_black"),
        Text("—" if checked is None else f"{checked[0]:,}/{checked[1]:,}"),
        Text(fmt.count(failed), style="bold red" if failed else "bright_black"),
        Text(f"{profiles:,}"),
        fmt.plain(webhook or "—", "" if webhook else "bright_black"),
    ]
    return [fit(c, t) for c, t in zip(WATCH_COLS, out)]


def sort_value(w: WatchOverview, key: str) -> object:
    """What a watch sorts by in a column."""
    r = w.last_round
    return {"name": w.name.lower(), "every": w.every, "next": float("inf") if w.paused else w.next_round_at,
            "round": w.rounds if r is not None else None, "state": r.state if r is not None else None,
            "checked": r.completed if r is not None else None, "failed": r.failed if r is not None else None,
            "new": w.new_stories, "profiles": w.profiles, "webhook": w.webhook}.get(key)


def story_cells(s: NewStory) -> tuple:
    return (s.username, s.story_id, s.taken_at, s.at)


def story_sort_value(s: NewStory, key: str) -> object:
    return {"user": s.username.lower(), "story": s.story_id, "taken": s.taken_at, "seen": s.at}.get(key)


class WatchesTable(Table):
    pass


class NewStoriesTable(Table):
    pass


class WatchesScreen(ConsoleNode, ModalScreen[None]):
    BINDINGS = [keymap.CLOSE, ("w,q", "close", "Close")]

    DEFAULT_CSS = """
    #watches-box { width: 100%; max-width: 124; height: 90%; border: round $accent; background: $panel;
                   padding: 0 1; }
    #watches-table { height: auto; max-height: 50%; }
    #watch-stories { height: 1fr; min-height: 4; }
    .watch-line { height: 1; }
    #watch-stories-title { margin-top: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[WatchOverview] = []
        self.error: str | None = None
        self.now = 0.0
        self.worker_live = True  # some worker is running (to start due rounds)

    def compose(self):
        with Vertical(id="watches-box"):
            yield Static(Text("Watches", style="bold"), id="watches-title", classes="watch-line", markup=False)
            table = WatchesTable(id="watches-table", cursor_type="row")
            table.set_columns(WATCH_COLS)
            yield table
            yield Static("", id="watch-stories-title", classes="watch-line", markup=False)
            stories = NewStoriesTable(id="watch-stories", cursor_type="row", show_cursor=False)
            stories.set_columns(STORY_COLS)
            yield stories
            yield Static(Text("esc close · ↑↓ select a watch · s/S sort · storycheck watch … changes them",
                              style="bright_black"), classes="watch-line", markup=False)

    def on_mount(self) -> None:
        self.query_one(WatchesTable).focus()
        if self.app.refresh_every:
            self.read()
            self.set_interval(READ_EVERY, self.read)
        else:
            self.show(*self._reads())

    # -- reading -------------------------------------------------------------------------------------

    def read(self) -> None:
        """Read the watches again, unless a read is still out (reads never pile up)."""
        if any(w.group == "watch-read" and w.state in (TaskState.PENDING, TaskState.RUNNING) for w in self.workers):
            return
        self.run_worker(self._read, thread=True, group="watch-read", exit_on_error=False)

    def _read(self) -> tuple[list[WatchOverview], float, bool]:
        with self.app.connection():
            return self._reads()

    def _reads(self) -> tuple[list[WatchOverview], float, bool]:
        """The watches, the time, and whether some worker runs to start their due rounds."""
        store, now = self.app.store, self.app.clock()
        return (reads.watch_overview(store, recent=RECENT), now,
                bool(reads.live_workers(reads.workers(store, now=now), now)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "watch-read":
            return
        if event.state == TaskState.SUCCESS:
            self.error = None
            self.show(*event.worker.result)
        elif event.state == TaskState.ERROR:
            self.error = f"cannot read the watches: {fmt.literal(event.worker.error)}"
            self._title()

    # -- showing -------------------------------------------------------------------------------------

    def show(self, watches: list[WatchOverview], now: float, workers: bool) -> None:
        self.watches, self.now, self.worker_live = watches, now, workers
        table = self.query_one(WatchesTable)
        table.sync(((w.name, watch_cells(w, now, workers)) for w in table.ordered(watches, sort_value)),
                   render_watch)
        self._title()
        self._stories()

    def on_sort_changed(self, event) -> None:
        event.stop()
        self.show(self.watches, self.now, self.worker_live)

    def on_table_row_highlighted(self, event: Table.RowHighlighted) -> None:
        if event.table is self.query_one(WatchesTable):
            self._stories()

    def selected(self) -> WatchOverview | None:
        table = self.query_one(WatchesTable)
        keys = table.row_keys()
        if not keys or not 0 <= table.cursor_row < len(keys):
            return None
        return next((w for w in self.watches if w.name == keys[table.cursor_row]), None)

    def _title(self) -> None:
        title = Text("Watches", style="bold")
        ws = self.watches
        if ws:
            due = sum(1 for w in ws if not w.paused and w.next_round_at <= self.now)
            running = sum(1 for w in ws if w.last_round is not None and w.last_round.state == BatchState.RUNNING)
            paused = sum(1 for w in ws if w.paused)
            new = sum(w.new_stories for w in ws)
            parts = [plural(len(ws), "watch", "watches"), f"{running} round{'s' if running != 1 else ''} running"]
            if due:
                parts.append(f"{due} due" if self.worker_live else f"{due} due, no worker running to start them")
            if paused:
                parts.append(f"{paused} paused")
            parts.append(f"{plural(new, 'new story', 'new stories')} in their last rounds")
            title.append("   " + " · ".join(parts), style="bright_black")
        if self.error:
            title.append("   " + self.error, style="red")
        self.query_one("#watches-title", Static).update(title)

    def _stories(self) -> None:
        w = self.selected()
        title = Text()
        rows: list[tuple[str, tuple]] = []
        if w is None:
            title.append("no watches yet: storycheck watch add FILE --name NAME --every 15m", style="bright_black")
        else:
            title.append("New stories in ", style="bold")
            title.append_text(fmt.plain(w.name, "bold"))
            if w.last_round is None:
                title.append("  (no round yet)", style="bright_black")
            else:
                title.append(f"  since round #{w.rounds} started: {w.new_stories:,}", style="bright_black")
                if w.new_stories > len(w.recent):
                    title.append(f", the newest {len(w.recent)} shown", style="bright_black")
        table = self.query_one(NewStoriesTable)
        if w is not None:
            rows = [(str(s.event_id), story_cells(s)) for s in table.ordered(list(w.recent), story_sort_value)]
        self.query_one("#watch-stories-title", Static).update(title)
        tz = self.app.tz
        table.sync(rows, lambda c: self._render_story(c, tz))

    @staticmethod
    def _render_story(cells: tuple, tz) -> list[Text]:
        user, story, taken, seen = cells
        out = [fmt.plain(user, "bold"), fmt.plain(story), Text(fmt.when(taken, tz)),
               Text(fmt.when(seen, tz), style="bright_black")]
        return [fit(c, t) for c, t in zip(STORY_COLS, out)]

    def action_close(self) -> None:
        self.dismiss(None)
