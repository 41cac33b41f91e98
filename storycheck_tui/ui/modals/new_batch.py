"""New batch from a file: path and name; the file's errors shown here as ``FILE:LINE: reason``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static
from textual.worker import Worker, WorkerState

from storycheck_tui.errors import InputError, InputErrors, StorycheckError
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.modals.paths import PathSuggester

#: how many of a file's errors the modal lists before "… and N more"
SHOW_ERRORS = 8


@dataclass(frozen=True)
class Created:
    batch_id: int
    message: str


@dataclass(frozen=True)
class Failed:
    lines: list[str]


#: (path, name, skip_invalid) -> Created; raises InputError / InputErrors / StorycheckError
CreateBatch = Callable[[str, str, bool], Created]


def error_lines(exc: BaseException) -> list[str]:
    if isinstance(exc, InputErrors):
        return [str(e) for e in exc.errors]
    if isinstance(exc, (InputError, StorycheckError)):
        return str(exc).splitlines() or [type(exc).__name__]
    return [f"{type(exc).__name__}: {exc}"]


class NewBatchScreen(ModalScreen[Created | None]):
    BINDINGS = [keymap.CLOSE, keymap.SUBMIT]

    def __init__(self, create: CreateBatch, *, path: str = "", name: str = "") -> None:
        super().__init__()
        self._create = create
        self._path = path
        self._name = name
        self._busy = False

    def compose(self):
        with Vertical(id="new-batch-box", classes="modal-box"):
            yield Static(Text("New batch", style="bold"), markup=False)
            yield Static(Text("A .txt file (one username a line) or a .csv file with a username column.",
                              style="bright_black"), markup=False)
            yield Label("File")
            yield Input(self._path, placeholder="path/to/usernames.txt", id="path", suggester=PathSuggester())
            yield Label("Name (default: the file name)")
            yield Input(self._name, placeholder="", id="name")
            yield Checkbox("Skip invalid lines (import the valid ones)", id="skip", compact=True)
            yield Static("", id="errors", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)
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
            self.show_errors(["give the path of a file of usernames"])
            self.query_one("#path", Input).focus()
            return
        name = self.query_one("#name", Input).value.strip()
        skip = self.query_one("#skip", Checkbox).value
        self._busy = True
        self.query_one("#create", Button).disabled = True
        self.show_errors([], note="reading the file…")
        self.run_worker(lambda: self._run(path, name, skip), thread=True, exclusive=True, exit_on_error=False,
                        group="new-batch")

    def _run(self, path: str, name: str, skip: bool) -> Created | Failed:
        try:
            return self._create(path, name, skip)
        except Exception as exc:  # shown in the modal, never a crash
            return Failed(error_lines(exc))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "new-batch" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self._busy = False
        self.query_one("#create", Button).disabled = False
        result = event.worker.result if event.state == WorkerState.SUCCESS else Failed(error_lines(event.worker.error))
        if isinstance(result, Created):
            self.dismiss(result)
        else:
            self.show_errors(result.lines)

    def show_errors(self, lines: list[str], *, note: str | None = None) -> None:
        box = self.query_one("#errors", Static)
        t = Text()
        if note:
            t.append(note, style="bright_black")
        shown = lines[:SHOW_ERRORS]
        for i, line in enumerate(shown):
            if i:
                t.append("\n")
            t.append(fmt.literal(line), style="red")
        if len(lines) > SHOW_ERRORS:
            t.append(f"\n… and {len(lines) - SHOW_ERRORS} more", style="red")
        if shown and not self.query_one("#skip", Checkbox).value and ":" in shown[0]:
            t.append("\nFix the file, or tick “Skip invalid lines” to import the valid ones.",
                     style="bright_black")
        if shown:
            t = Text.assemble(Text(f"The file cannot be imported ({len(lines)} problem"
                                   f"{'s' if len(lines) != 1 else ''}):\n", style="bold red"), t)
        box.update(t)
        box.display = bool(lines or note)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "path":
            self.query_one("#name", Input).focus()
        else:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.action_submit()
        else:
            self.dismiss(None)
