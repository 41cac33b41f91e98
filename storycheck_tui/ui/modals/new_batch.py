"""New batch from a file: path and name; the file's errors shown here as ``FILE:LINE: reason``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Static

from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.modals.form import FormScreen
from storycheck_tui.ui.modals.paths import PathSuggester

#: how many of a file's errors the modal lists before "… and N more"
SHOW_ERRORS = 8


@dataclass(frozen=True)
class Created:
    batch_id: int
    message: str


#: (path, name, skip_invalid) -> Created; raises InputError / InputErrors / StorycheckError
CreateBatch = Callable[[str, str, bool], Created]


class NewBatchScreen(FormScreen[Created]):
    box_id = "new-batch-box"
    submit_label = "Create (ctrl+s)"
    working = "reading the file…"

    def __init__(self, create: CreateBatch, *, path: str = "", name: str = "") -> None:
        super().__init__()
        self._create = create
        self._path = path
        self._name = name

    def fields(self) -> Iterable[Widget]:
        yield Static(Text("New batch", style="bold"), markup=False)
        yield Static(Text("A .txt file (one username a line) or a .csv file with a username column.",
                          style="bright_black"), markup=False)
        yield Label("File")
        yield Input(self._path, placeholder="path/to/usernames.txt", id="path", suggester=PathSuggester())
        yield Label("Name (default: the file name)")
        yield Input(self._name, placeholder="", id="name")
        yield Checkbox("Skip invalid lines (import the valid ones)", id="skip", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#path", Input).focus()

    def prepare(self) -> Callable[[], Created] | list[str]:
        path = self.query_one("#path", Input).value.strip()
        if not path:
            self.query_one("#path", Input).focus()
            return ["give the path of a file of usernames"]
        name = self.query_one("#name", Input).value.strip()
        skip = self.query_one("#skip", Checkbox).value
        return lambda: self._create(path, name, skip)

    def error_text(self, lines: list[str]) -> Text:
        t = Text()
        shown = lines[:SHOW_ERRORS]
        for i, line in enumerate(shown):
            if i:
                t.append("\n")
            t.append(fmt.literal(line), style="red")
        if len(lines) > SHOW_ERRORS:
            t.append(f"\n… and {len(lines) - SHOW_ERRORS} more", style="red")
        if not self.query_one("#skip", Checkbox).value and ":" in shown[0]:
            t.append("\nFix the file, or tick “Skip invalid lines” to import the valid ones.", style="bright_black")
        return Text.assemble(Text(f"The file cannot be imported ({len(lines)} problem"
                                  f"{'s' if len(lines) != 1 else ''}):\n", style="bold red"), t)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "path":
            self.query_one("#name", Input).focus()
        else:
            self.action_submit()
