"""Worker processes (this console's engine and `storycheck worker` elsewhere): host, pid,
threads, checks/s, last heartbeat, read from the database."""

from __future__ import annotations

from rich.text import Text

from storycheck_tui.states import WorkerState
from storycheck_tui.store.reads import WorkerRow
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.columns import Col, columns, fit
from storycheck_tui.ui.panes.base import Pane
from storycheck_tui.ui.table import Table

COLS = columns(Col("host", "Host", 10), Col("pid", "PID", 6, right=True), Col("threads", "Thr", 4, right=True),
               Col("rate", "/s", 6, right=True), Col("beat", "Beat", 6, right=True),
               Col("checks", "Checks", 9, right=True))

#: a running worker whose heartbeat is older than this is shown as late
LATE_AFTER = 10.0
#: how the pane shows such a worker (not a stored state)
LATE = "late"


def sort_value(w: WorkerRow, key: str) -> object:
    """What a worker sorts by in a column."""
    return {"host": w.host.lower(), "pid": w.pid, "threads": w.threads, "rate": w.rate, "beat": -w.heartbeat_at,
            "checks": w.checks}.get(key)


class WorkersTable(Table):
    pass


def worker_cells(w: WorkerRow, now: float, me: str | None) -> tuple:
    beat = max(0.0, now - w.heartbeat_at)
    state = LATE if w.state == WorkerState.RUNNING and beat > LATE_AFTER else w.state
    return ((w.host, w.id == me, state), w.pid, w.threads, (round(w.rate, 1), state), (fmt.duration(beat), state),
            w.checks)


def render_worker(cells: tuple) -> list[Text]:
    (host, mine, state), pid, threads, (rate, _), (beat, _), checks = cells
    style = {LATE: "bold red", WorkerState.LOST: "bold red", WorkerState.STOPPING: "yellow",
             WorkerState.STOPPED: "bright_black"}.get(state, "")
    t_host = fmt.plain(host, style)
    if mine:
        t_host.append("*", style="cyan")
    out = [t_host, Text(str(pid), style="bright_black"), Text(str(threads)),
           Text(fmt.rate(rate).removesuffix("/s") if state == WorkerState.RUNNING else state[:5], style=style),
           Text(beat, style="bold red" if state == LATE else "bright_black"), Text(fmt.count(checks))]
    return [fit(c, t) for c, t in zip(COLS, out)]


class WorkersPane(Pane):
    pane_name = "workers"
    number = 5
    pane_title = "Workers"
    filter_placeholder = "host, pid or state"
    filter_id = "workers-filter"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.me: str | None = None
        self.needle = ""
        self.now = 0.0
        self._all: list[WorkerRow] = []

    def compose(self):
        table = WorkersTable(id="workers-table", cursor_type="row", show_cursor=False)
        table.set_columns(COLS)
        yield table

    def target(self) -> WorkersTable:
        return self.query_one(WorkersTable)

    def resort(self) -> None:
        self.update_workers(self._all, self.now)

    def apply_filter(self, text: str) -> None:
        self.needle = text.strip().lower()
        self.update_workers(self._all, self.now)

    def update_workers(self, rows: list[WorkerRow], now: float) -> None:
        self._all, self.now = rows, now
        shown = rows
        if self.needle:
            shown = [w for w in rows if self.needle in w.host.lower() or self.needle in w.id.lower()
                     or self.needle == str(w.pid) or self.needle == worker_cells(w, now, None)[0][2]]
        table = self.target()
        table.sync(((w.id, worker_cells(w, now, self.me)) for w in table.ordered(shown, sort_value)), render_worker)
        running = sum(1 for w in rows if w.state == WorkerState.RUNNING)
        late = sum(1 for w in rows if worker_cells(w, now, None)[0][2] == LATE)
        sub = f"{running} running" if rows else "none"
        if late:
            sub += f", {late} late"
        if self.needle:
            sub += f" · {len(shown)} matching {fmt.literal(self.needle)!r}"
        self.set_subtitle(Text(sub))
