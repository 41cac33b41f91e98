"""Results of the selected batch: a window of its jobs (newest first, filter, page), never
one widget row per profile. The rows are read from the database off the UI thread, so the
results of `storycheck worker` processes show up too."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text

from storycheck_tui.states import JobState, OutcomeKind
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.reads import STATE_FILTERS, JobRow, JobWindow
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.columns import Col, columns, fit, room
from storycheck_tui.ui.messages import DetailWanted, ResultsWanted
from storycheck_tui.ui.panes.base import Line, Pane
from storycheck_tui.ui.panes.proxies import keep_port, short_label
from storycheck_tui.ui.table import Table

COLS = columns(Col("username", "Username", 22), Col("state", "Result", 11), Col("stories", "Stories", 8, right=True),
               Col("latest", "Latest", 8, right=True), Col("proxy", "Proxy", 18), Col("attempts", "Try", 4, right=True),
               Col("latency", "Latency", 9, right=True), Col("error", "Error", 80))
#: the same columns, narrower, for terminals under 100 cells (the error keeps some room)
COLS_NARROW = columns(Col("username", "Username", 18), Col("state", "Result", 11), Col("stories", "St", 3, right=True),
                      Col("latest", "Latest", 7, right=True), Col("proxy", "Proxy", 13),
                      Col("attempts", "Try", 4, right=True), Col("latency", "ms", 6, right=True),
                      Col("error", "Error", 80))

OUTCOME_LABEL = {OutcomeKind.HAS_STORIES: "stories", OutcomeKind.NO_STORIES: "no stories",
                 OutcomeKind.PRIVATE: "private", OutcomeKind.NOT_FOUND: "not found"}

PAGE = 100  # rows per window: a page of results, never the whole batch

#: results column -> the database sort (store.reads.SORTS)
SORT_OF_COLUMN = {"username": "username", "state": "state", "stories": "stories", "latest": "latest",
                  "proxy": "proxy", "attempts": "attempts", "latency": "latency", "error": "error"}


@dataclass(frozen=True)
class WindowQuery:
    """What the results table asks the database for."""

    batch_id: int
    state: str
    text: str
    offset: int
    limit: int
    sort: str | None = None  # a name in reads.SORTS; None: newest activity first
    descending: bool = False
    until: float | None = None  # taking a page to hold: nothing with activity after this
    ids: tuple[int, ...] | None = None  # a held page: these jobs, in this order, as they are now


def parse_filter(text: str) -> tuple[str, str, str | None]:
    """``is:failed user`` -> (state, text, problem)."""
    state, words, problem = "all", [], None
    for word in text.split():
        low = word.lower()
        if low.startswith(("is:", "state:")):
            name = low.split(":", 1)[1]
            if name in STATE_FILTERS:
                state = name
            else:
                problem = f"unknown {low.split(':', 1)[0]}:{name} (one of: {', '.join(STATE_FILTERS)})"
        else:
            words.append(word)
    return state, " ".join(words), problem


def result_label(j: JobRow) -> tuple[str, str]:
    """(label, style key) of a job's state/outcome."""
    if j.state == JobState.SUCCEEDED and j.outcome:
        return OUTCOME_LABEL.get(j.outcome, j.outcome), j.outcome
    return j.state, j.state


def row_cells(j: JobRow, now: float) -> tuple:
    label, _ = result_label(j)
    error = f"{j.error_kind}: {j.error_message}" if j.error_kind else (j.error_message or "")
    if j.state == JobState.PENDING and j.attempts and j.error_kind is None:
        error = ""
    return (j.username, label, j.story_count, fmt.age(j.latest_story_at, now) if j.latest_story_at else "",
            short_label(j.proxy or ""), j.attempts, j.latency_ms and round(j.latency_ms), error)


def row_values(j: JobRow, now: float) -> tuple:
    """All a result row shows: its cells, the style of its state, its latency as shown wide
    (the row is drawn from these alone)."""
    return row_cells(j, now), result_label(j)[1], "" if j.latency_ms is None else fmt.latency(j.latency_ms)


def render_row(values: tuple, cols: tuple[Col, ...] = COLS) -> list[Text]:
    cells, style_key, latency = values
    stories = cells[2]
    out = [fmt.plain(cells[0]), fmt.state(style_key, cells[1]),
           Text("" if stories is None else str(stories), style="bold green" if stories else "bright_black"),
           Text(cells[3]), fmt.plain(keep_port(cells[4], room(cols[4])), "bright_black"),
           Text(str(cells[5]) if cells[5] else "", style="yellow" if cells[5] > 1 else ""),
           Text(latency if cols is COLS else ("" if cells[6] is None else str(cells[6]))),
           fmt.plain(cells[7], "red")]
    return [fit(c, t) for c, t in zip(cols, out)]


class ResultsTable(Table):
    BINDINGS = keymap.RESULTS

    def _pane(self) -> "ResultsPane":
        return next(a for a in self.ancestors if isinstance(a, ResultsPane))

    def action_next_page(self) -> None:
        self._pane().page(+1)

    def action_prev_page(self) -> None:
        self._pane().page(-1)

    def action_toggle_follow(self) -> None:
        self._pane().set_follow(not self._pane().follow)


class ResultsPane(Pane):
    pane_name = "results"
    number = 2
    pane_title = "Results"
    filter_placeholder = "username or error text; is:failed is:ok is:stories is:pending is:running …"
    filter_id = "results-filter"
    filter_debounce = 0.3  # a text filter reads the database: wait for a pause in typing

    def __init__(self, *, page_size: int = PAGE, **kw) -> None:
        super().__init__(**kw)
        self.page_size = page_size
        self.current_batch: BatchView | None = None
        self.state_filter = "all"
        self.text_filter = ""
        self.problem: str | None = None
        self.row_offset = 0
        self.follow = True
        # a paged view holds still: each page's jobs are kept (by id) from when it was taken
        self.held: dict[int, tuple[int, ...]] = {}  # row offset -> job ids
        self.held_total = 0
        self.until: float | None = None
        self.sort: str | None = None
        self.descending = False
        self.window: JobWindow | None = None
        self._keys: list[str] = []
        self._jobs: dict[str, JobRow] = {}
        self.cols = COLS
        self.now = 0.0

    def compose(self):
        yield Line(id="results-header")
        table = ResultsTable(id="results-table", cursor_type="row")
        table.set_columns(self.cols)
        yield table

    def target(self) -> ResultsTable:
        return self.query_one(ResultsTable)

    # -- parameters ----------------------------------------------------------------------------

    def window_query(self) -> WindowQuery | None:
        if self.current_batch is None:
            return None
        q = WindowQuery(self.current_batch.id, self.state_filter, self.text_filter, self.row_offset, self.page_size,
                        self.sort, self.descending)
        if self.follow:
            return q
        held = self.held.get(self.row_offset)
        return replace(q, ids=held) if held is not None else replace(q, until=self.until)

    def _live(self) -> None:
        """Back to following: page 1, read live."""
        self.follow = True
        self.row_offset = 0
        self.held.clear()
        self.until = None

    def set_batch(self, batch: BatchView | None) -> None:
        changed = (batch.id if batch else None) != (self.current_batch.id if self.current_batch else None)
        self.current_batch = batch
        if changed:
            self._live()
            self.window = None
            self._clear()
            self.post_message(ResultsWanted())
        self._header()

    def apply_filter(self, text: str) -> None:
        state, words, problem = parse_filter(text)
        if problem and problem != self.problem:
            self.app.notify(problem, severity="warning", timeout=8)  # the header has no room for every name
        self.problem = problem
        if (state, words) != (self.state_filter, self.text_filter):
            self.state_filter, self.text_filter = state, words
            self._live()
            self.post_message(ResultsWanted())
        self._header()

    def page(self, step: int) -> None:
        """Another page. Leaving page 1 holds the view still until F: the page shown is kept
        as it is, and later pages leave out what happened since."""
        if self.window is None:
            return
        total = self.held_total if not self.follow else self.window.total
        new = max(0, self.row_offset + step * self.page_size)
        if step > 0 and new >= total:
            return
        if new == self.row_offset:
            return
        if self.follow:
            self.follow = False
            self.held = {self.row_offset: tuple(j.id for j in self.window.rows)}
            self.held_total = self.window.total
            self.until = self.now
        self.row_offset = new
        self.post_message(ResultsWanted())
        self._header()

    def set_follow(self, on: bool) -> None:
        if on:
            self._live()
            self.target().move_cursor(row=0, animate=False)
            self.post_message(ResultsWanted())
        elif self.follow and self.window is not None:  # hold page 1 as it is
            self.follow = False
            self.held = {0: tuple(j.id for j in self.window.rows)}
            self.held_total = self.window.total
            self.until = self.now
        self._header()

    def resort(self) -> None:
        """The table's sort changed: the database sorts (a 100,000-profile batch is never sorted
        here); back to page 1, live."""
        table = self.target()
        self.sort, self.descending = SORT_OF_COLUMN.get(table.sort_key or ""), table.sort_descending
        self._keys, self._jobs = [], {}
        self._live()
        self.post_message(ResultsWanted())
        self._header()

    def set_compact(self, compact: bool) -> None:
        """Narrow columns under 100 cells: the table is rebuilt with the other column set."""
        cols = COLS_NARROW if compact else COLS
        if cols is self.cols:
            return
        self.cols = cols
        self.target().set_columns(cols)
        self._keys, self._jobs = [], {}
        if self.window is not None:
            self._show(self.window, self.now)

    # -- data ------------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.target().clear()
        self._keys = []
        self._jobs.clear()

    def apply_window(self, window: JobWindow, query: WindowQuery, now: float) -> None:
        """The answer to ``query``: shown if it is still the question (else dropped)."""
        if query != self.window_query():
            return
        if not self.follow and query.ids is None:  # a page taken now: hold it
            self.held[query.offset] = tuple(j.id for j in window.rows)
            self.held_total = window.total
        if query.ids is not None:
            window = replace(window, total=self.held_total)
        self._show(window, now)

    def _show(self, window: JobWindow, now: float) -> None:
        """Show ``window``: the table repaints only the rows whose content changed (a row that
        moved, as new results push the others down, is drawn from its cache)."""
        if self.current_batch is None or window.batch_id != self.current_batch.id:
            return
        if (window.state, window.text, window.offset) != (self.state_filter, self.text_filter, self.row_offset):
            return  # an answer to an older question
        self.window = window
        self.now = now
        table = self.target()
        keys = [str(j.id) for j in window.rows]
        moved = keys != self._keys
        cursor_key = table.cursor_key
        cols = self.cols
        table.sync(((str(j.id), row_values(j, now)) for j in window.rows), lambda values: render_row(values, cols))
        self._keys = keys
        if moved and keys and cursor_key not in table.row_keys():  # else the selected profile stays selected
            table.move_cursor(row=0, animate=False)
            table.scroll_home(animate=False, immediate=True)
        self._jobs = {str(j.id): j for j in window.rows}
        self._header()

    def selected_job(self) -> JobRow | None:
        table = self.target()
        if not self._keys or not 0 <= table.cursor_row < len(self._keys):
            return None
        return self._jobs.get(self._keys[table.cursor_row])

    def on_table_row_selected(self, event: Table.RowSelected) -> None:
        event.stop()
        job = self.selected_job()
        if job is not None:
            self.post_message(DetailWanted(job.id))

    def _header(self) -> None:
        header = self.query_one("#results-header", Line)
        if self.current_batch is None:
            header.show(Text("No batch selected. Press n to create one from a file of usernames.",
                               style="bright_black"))
            self.set_subtitle("")
            return
        b = self.current_batch
        t = Text(no_wrap=True, overflow="ellipsis")
        if self.problem:  # first: a cut line must not hide it
            t.append(self.problem.split(" (")[0] + "  ", style="bold red")
        t.append("batch ", style="bright_black")
        t.append_text(fmt.plain(b.name, "bold"))
        t.append(f" #{b.id}", style="bright_black")
        if self.state_filter != "all":
            t.append(f"  is:{self.state_filter}", style="bold cyan")
        if self.text_filter:
            t.append("  matching ", style="bright_black")
            t.append_text(fmt.plain(repr(self.text_filter), "bold cyan"))
        w = self.window
        if w is not None:
            if w.total:
                t.append(f"  rows {w.offset + 1:,}–{w.offset + len(w.rows):,} of {w.total:,}", style="")
            else:
                t.append("  no rows match" if (self.state_filter != "all" or self.text_filter) else "  no profiles", style="yellow")
        if self.follow:
            t.append("  ● live" if self.sort else "  ● following newest", style="green")
        else:
            t.append("  ‖ paged (F follows newest)", style="yellow")
        header.show(t)
        order = "newest first"
        if self.sort:
            label = next((c.label for c in self.cols if c.key == self.target().sort_key), self.sort)
            order = f"by {label.lower()} {'▼' if self.descending else '▲'}"
        self.set_subtitle(f"{order} · / filter · [ ] page · s sort · enter detail")
