"""Export the selected batch to a file: CSV, or JSON Lines for a .jsonl/.json name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from textual.worker import Worker, WorkerState

from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.modals.new_batch import error_lines
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


class ExportScreen(ModalScreen[Exported | None]):
    BINDINGS = [keymap.CLOSE, keymap.SUBMIT]

    def __init__(self, batch_label: str, default_path: str, export: ExportBatch) -> None:
        super().__init__()
        self._label = batch_label
        self._path = default_path
        self._export = export
        self._busy = False

    def compose(self):
        with Vertical(id="export-box", classes="modal-box"):
            title = Text("Export batch ", style="bold")
            title.append_text(fmt.plain(self._label, "bold"))
            yield Static(title, markup=False)
            yield Static(Text("CSV, or JSON Lines when the name ends in .jsonl. Written to a temporary file, "
                              "then renamed: never half-written.", style="bright_black"), markup=False)
            yield Label("File")
            yield Input(self._path, id="path", suggester=PathSuggester())
            yield Static("", id="errors", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Export (enter)", id="export", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#errors", Static).display = False
        self.query_one("#path", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        if self._busy:
            return
        path = self.query_one("#path", Input).value.strip()
        if not path:
            return
        kind = format_for(path)
        self._busy = True
        self._show(Text(f"writing {kind}…", style="bright_black"))
        self.run_worker(lambda: self._run(path, kind), thread=True, exclusive=True, exit_on_error=False,
                        group="export")

    def _run(self, path: str, kind: str):
        try:
            return Exported(path, self._export(path, kind), kind)
        except Exception as exc:
            return error_lines(exc)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "export" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self._busy = False
        result = event.worker.result if event.state == WorkerState.SUCCESS else error_lines(event.worker.error)
        if isinstance(result, Exported):
            self.dismiss(result)
        else:
            self._show(Text("\n".join(fmt.literal(x) for x in result), style="red"))

    def _show(self, text: Text) -> None:
        box = self.query_one("#errors", Static)
        box.update(text)
        box.display = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export":
            self.action_submit()
        else:
            self.dismiss(None)
