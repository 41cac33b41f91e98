"""The batch queue: name, state, progress, ok / failed, rate, ETA; the selected batch."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from storycheck_tui.states import CLAIMABLE, OPEN, BatchState
from storycheck_tui.store.batches import BatchView
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.columns import Col, columns, fit
from storycheck_tui.ui.messages import BatchSelected
from storycheck_tui.ui.panes.base import Line, Pane
from storycheck_tui.ui.table import Table

COLS = columns(Col("name", "Batch", 14), Col("state", "State", 10), Col("progress", "Progress", 11),
               Col("ok", "OK", 8, right=True), Col("failed", "Fail", 6, right=True),
               Col("rate", "/s", 6, right=True), Col("eta", "ETA", 7, right=True))


def checked_fraction(v: BatchView) -> float:
    """How much of a batch was checked: cancelled profiles were not (a cancelled batch is not
    100 % done)."""
    return v.completed / v.total if v.total else 1.0


@dataclass(frozen=True)
class BatchLine:
    """A batch and its recent rate, as one table row shows it."""

    view: BatchView
    rate: float
    no_workers: bool = False  # no worker process is running to check it

    def cells(self) -> tuple:
        v = self.view
        checked = checked_fraction(v)
        pct = int(checked * 100)
        label = v.state
        stalled = v.state == BatchState.RUNNING and self.no_workers
        if stalled:
            label = "no worker"  # (the column has room for 9)
        elif v.state == BatchState.RUNNING and v.remaining == 0:
            label = "finishing"
        active = v.state in CLAIMABLE and not stalled
        return ((v.id, v.name), (fmt.STALLED if stalled else v.state, label), (round(checked * 40), pct), v.succeeded, v.failed,
                round(self.rate, 1) if v.state == BatchState.RUNNING and not stalled else None,
                fmt.eta(v.remaining, self.rate) if active else "")


def render_cells(cells: tuple) -> list[Text]:
    (bid, name), (state, label), (fortieths, pct), ok, failed, rate, eta = cells
    t_name = Text(f"{bid} ", style="bright_black")
    t_name.append_text(fmt.plain(name))
    progress = fmt.bar(fortieths / 40, 5)
    progress.append(f"{pct:>4}%", style="green" if pct >= 100 else "bold")
    out = [t_name, fmt.state(state, label), progress,
           Text(fmt.count(ok), style="green" if ok else "bright_black"),
           Text(fmt.count(failed), style="bold red" if failed else "bright_black"),
           Text("" if rate is None else (f"{rate:.1f}" if rate < 100 else f"{rate:.0f}")),
           Text(eta)]
    return [fit(c, t) for c, t in zip(COLS, out)]


def sort_value(line: BatchLine, key: str) -> object:
    """What a batch sorts by in a column (None: no value, sorted last)."""
    v = line.view
    running = v.state == BatchState.RUNNING and not line.no_workers
    return {"name": v.name.lower(), "state": v.state, "progress": checked_fraction(v), "ok": v.succeeded,
            "failed": v.failed, "rate": line.rate if running else None,
            "eta": v.remaining / line.rate if running and line.rate > 0 else None}.get(key)


class BatchesTable(Table):
    """The batch table; its cursor row is the selected batch."""


class BatchesPane(Pane):
    pane_name = "batches"
    number = 1
    pane_title = "Batches"
    filter_placeholder = "name or id"
    filter_id = "batches-filter"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._views: dict[int, BatchView] = {}
        self._all: list[BatchLine] = []
        self._selected: int | None = None
        self.needle = ""
        self.now = 0.0

    def compose(self):
        table = BatchesTable(id="batches-table", cursor_type="row")
        table.set_columns(COLS)
        yield table
        yield Line("", id="batches-detail", classes="detail-line")

    def target(self) -> BatchesTable:
        return self.query_one(BatchesTable)

    @property
    def selected(self) -> BatchView | None:
        return self._views.get(self._selected) if self._selected is not None else None

    @property
    def batches(self) -> list[BatchView]:
        """Every batch as last shown, the filtered-out ones too."""
        return list(self._views.values())

    def apply_filter(self, text: str) -> None:
        self.needle = text.strip().lower()
        self.update_batches(self._all, self.now)

    def resort(self) -> None:
        self.update_batches(self._all, self.now)

    def update_batches(self, lines: list[BatchLine], now: float) -> None:
        """Update the table in place: only new, changed and removed rows are touched."""
        self._all = lines
        self.now = now
        if self.needle:
            lines = [ln for ln in lines if self.needle in ln.view.name.lower() or self.needle == str(ln.view.id)]
        self._views = {ln.view.id: ln.view for ln in lines}
        table = self.target()
        table.sync(((str(ln.view.id), ln.cells()) for ln in table.ordered(lines, sort_value)), render_cells)
        if self._selected is None or self._selected not in self._views:
            self._select_default(lines)
        n = len(self._all)
        shown = f"{len(lines)} of {n}" if self.needle else f"{n}"
        self.set_subtitle(Text(f"{shown} batch{'' if n == 1 else 'es'}" +
                                (f" matching {fmt.literal(self.needle)!r}" if self.needle else "")))
        self._detail()

    def _select_default(self, lines: list[BatchLine]) -> None:
        if not lines:
            self._set_selected(None)
            return
        views = [ln.view for ln in lines]
        for state in (BatchState.RUNNING, BatchState.PAUSED, BatchState.QUEUED):
            active = [v for v in views if v.state == state]
            if active:
                self.select(active[-1].id)
                return
        self.select(views[-1].id)

    def select(self, batch_id: int) -> None:
        table = self.target()
        try:
            table.move_cursor(row=table.get_row_index(str(batch_id)), animate=False)
        except Exception:
            return
        self._set_selected(batch_id)

    def _set_selected(self, batch_id: int | None) -> None:
        if batch_id != self._selected:
            self._selected = batch_id
            self._detail()
            self.post_message(BatchSelected(batch_id))

    def on_table_row_highlighted(self, event: Table.RowHighlighted) -> None:
        event.stop()
        self._set_selected(int(event.row_key))

    def _detail(self) -> None:
        line = self.query_one("#batches-detail", Line)
        b = self.selected
        if b is None:
            line.show(Text("no batches yet: n creates one from a file", style="bright_black"))
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"#{b.id} ", style="bright_black")
        t.append(f"{b.completed:,}/{b.total:,} checked", style="")
        if b.remaining and b.state in OPEN:
            t.append(f" · {b.remaining:,} left", style="")
        if b.cancelled:
            t.append(f" · {b.cancelled:,} cancelled", style="magenta")
        if b.requests:  # spend (store/spend.py): requests sent to the story source
            budget = f" of {b.max_requests:,}" if b.max_requests is not None else ""
            t.append(f" · {b.requests:,}{budget} requests", style="")
        if b.started_at:
            t.append(f" · started {fmt.age(b.started_at, self.now)} ago", style="bright_black")
        if b.finished_at:
            t.append(f" · ended {fmt.age(b.finished_at, self.now)} ago", style="bright_black")
        if b.reason and b.state != BatchState.FINISHED:
            t.append(" · ", style="bright_black")
            t.append_text(fmt.plain(b.reason, "yellow" if b.state == BatchState.PAUSED else "magenta"))
        line.show(t)
