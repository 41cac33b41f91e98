"""Live charts (g): for the selected batch, checks per second in all and by outcome, and
failures; the 429s every batch got; the source's pace (requests/s, found by the engines or
capped by a knob); the checks/s of every worker together and of each. The last 5 minutes, a bar per 5 seconds, drawn with Textual's Sparkline (a
terminal-native widget from Textual itself: no plotting dependency for one row of bars)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Sparkline, Static

from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.series import BARS, BUCKET, ChartData, Series
from storycheck_tui.ui.typed import ConsoleNode

LABELS = {"checks": "checks/s", "has_stories": "  stories", "no_stories": "  no stories", "private": "  private",
          "not_found": "  not found", "failed": "failed/s"}
#: workers shown (the rest are counted)
MAX_WORKERS = 8


def _row(label: str, spark_id: str) -> Horizontal:
    return Horizontal(Static(Text(label, style="bright_black"), classes="chart-label", markup=False),
                      Sparkline([], id=spark_id, classes="chart-bars"),
                      Static("", id=f"{spark_id}-now", classes="chart-now", markup=False),
                      classes="chart-row")


class ChartsScreen(ConsoleNode, ModalScreen[None]):
    BINDINGS = [keymap.CLOSE, ("g,q", "close", "Close")]

    def __init__(self, batch_id: int | None, batch_name: str | None) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.batch_name = batch_name

    def compose(self):
        with Vertical(id="charts-box", classes="modal-box"):
            title = Text("Charts", style="bold")
            if self.batch_name is not None:
                title.append("  batch ")
                title.append_text(fmt.plain(self.batch_name, "bold"))
                title.append(f" #{self.batch_id}", style="bright_black")
            title.append(f"   last {BARS * BUCKET / 60:.0f} minutes, a bar per {BUCKET:.0f} s", style="bright_black")
            yield Static(title, markup=False)
            with VerticalScroll(id="charts-body"):
                for name in ChartData.BATCH_SERIES:
                    yield _row(LABELS[name], f"chart-{name}")
                yield _row("429s/s (all)", "chart-429")
                yield _row("source pace req/s", "chart-source-pace")
                yield _row("workers checks/s", "chart-pace")
                yield Static(Text("Workers (checks/s, from their heartbeats)", style="bold"), classes="chart-section",
                             markup=False)
                for i in range(MAX_WORKERS):
                    yield _row("", f"chart-worker-{i}")
            yield Static(Text("esc close", style="bright_black"), markup=False)

    def on_mount(self) -> None:
        self.show(self.app.charts, self.app.clock())

    def _set(self, spark_id: str, series: Series | None, now: float, label: str | None = None) -> None:
        bars = series.bars(now) if series is not None else [0.0] * BARS
        self.query_one(f"#{spark_id}", Sparkline).data = bars
        self.query_one(f"#{spark_id}-now", Static).update(Text(f"{bars[-1]:.1f}"))
        if label is not None:
            row = self.query_one(f"#{spark_id}").parent
            row.query_one(".chart-label", Static).update(fmt.plain(label, "bright_black"))
            row.display = True

    def show(self, data: ChartData, now: float) -> None:
        batch = data.batch.get(self.batch_id) if self.batch_id is not None else None
        for name in ChartData.BATCH_SERIES:
            self._set(f"chart-{name}", batch[name] if batch else None, now)
        self._set("chart-429", data.rate_limited, now)
        self._set("chart-source-pace", data.source_pace, now)
        self._set("chart-pace", data.pace, now)
        workers = sorted(data.workers.items())
        for i in range(MAX_WORKERS):
            if i < len(workers):
                self._set(f"chart-worker-{i}", workers[i][1], now, workers[i][0])
            else:
                self.query_one(f"#chart-worker-{i}").parent.display = False

    def action_close(self) -> None:
        self.dismiss(None)
