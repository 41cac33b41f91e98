"""Export the selected batch to a file: CSV, or JSON Lines for a .jsonl/.json name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.modals.form import FormScreen
from storycheck_tui.ui.modals.paths import PathSuggester


@dataclass(frozen=True)
class Exported:
    path: str
    rows: int
    fmt: str


#: (path, format) -> rows written; raises on error
ExportBatch = Callable[[str, str], int]


def format_for(path: str) -> str:
    return "jsonl" if path.lower().endswith((".jsonl", ".json", ".ndjson")) else "csv"


class ExportScreen(FormScreen[Exported]):
    box_id = "export-box"
    submit_label = "Export (enter)"

    def __init__(self, batch_label: str, default_path: str, export: ExportBatch) -> None:
        super().__init__()
        self._label = batch_label
        self._path = default_path
        self._export = export

    def fields(self) -> Iterable[Widget]:
        title = Text("Export batch ", style="bold")
        title.append_text(fmt.plain(self._label, "bold"))
        yield Static(title, markup=False)
        yield Static(Text("CSV, or JSON Lines when the name ends in .jsonl. Written to a temporary file, "
                          "then renamed: never half-written.", style="bright_black"), markup=False)
        yield Label("File")
        yield Input(self._path, id="path", suggester=PathSuggester())

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#path", Input).focus()

    def prepare(self) -> Callable[[], Exported] | list[str]:
        path = self.query_one("#path", Input).value.strip()
        if not path:
            return ["give the path of the file to write"]
        kind = format_for(path)
        self.working = f"writing {kind}…"
        return lambda: Exported(path, self._export(path, kind), kind)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()
