"""Export the selected batch to a file: CSV, or JSON Lines for a .jsonl/.json name.

An existing file is overwritten only after a yes; the toast says what the file holds
(checked profiles by outcome, failed, pending), read back from the file itself."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from storycheck_tui.states import JobState, OutcomeKind
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.modals.confirm import ConfirmScreen
from storycheck_tui.ui.modals.form import FormScreen
from storycheck_tui.ui.modals.paths import PathSuggester


@dataclass(frozen=True)
class Exported:
    path: str
    rows: int
    fmt: str
    #: rows by (state, outcome), as written
    tally: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        """``3,404 checked (1,200 with stories, 2,104 without, 100 failed), 16,596 pending``."""
        by_state: Counter = Counter()
        by_outcome: Counter = Counter()
        for (state, outcome), n in self.tally.items():
            by_state[state] += n
            if state == JobState.SUCCEEDED:
                by_outcome[outcome] += n
        checked = by_state[JobState.SUCCEEDED] + by_state[JobState.FAILED]
        parts = [f"{OUTCOME_WORDS.get(o, o)} {n:,}" for o, n in sorted(by_outcome.items(), key=lambda x: -x[1])]
        if by_state[JobState.FAILED]:
            parts.append(f"failed {by_state[JobState.FAILED]:,}")
        out = f"{checked:,} checked" + (f" ({', '.join(parts)})" if parts else "")
        for state in (JobState.RUNNING, JobState.PENDING, JobState.CANCELLED):
            if by_state[state]:
                out += f", {by_state[state]:,} {state}"
        return out


OUTCOME_WORDS = {OutcomeKind.HAS_STORIES: "stories", OutcomeKind.NO_STORIES: "no stories",
                 OutcomeKind.PRIVATE: "private", OutcomeKind.NOT_FOUND: "not found"}


def tally_file(path: str, kind: str) -> Counter:
    """Rows of an export by (state, outcome), read back from the file."""
    out: Counter = Counter()
    with open(Path(path).expanduser(), encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(fh) if kind == "csv" else (json.loads(line) for line in fh if line.strip())
        for row in rows:
            out[(row.get("state") or "", row.get("outcome") or None)] += 1
    return out


#: (path, format) -> rows written; raises on error
ExportBatch = Callable[[str, str], int]


def format_for(path: str) -> str:
    return "jsonl" if path.lower().endswith((".jsonl", ".json", ".ndjson")) else "csv"


class ExportScreen(FormScreen[Exported]):
    box_id = "export-box"
    submit_label = "Export (ctrl+s)"

    def __init__(self, batch_label: str, default_path: str, export: ExportBatch) -> None:
        super().__init__()
        self._label = batch_label
        self._path = default_path
        self._export = export
        self._overwrite: str | None = None  # the path the operator agreed to overwrite

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
        if Path(path).expanduser().exists() and self._overwrite != path:
            self._ask_overwrite(path)
            return []
        kind = format_for(path)
        self.working = f"writing {kind}…"

        def export() -> Exported:
            rows = self._export(path, kind)
            return Exported(path, rows, kind, tally_file(path, kind))

        return export

    def _ask_overwrite(self, path: str) -> None:
        msg = Text()
        msg.append_text(fmt.plain(path, "bold"))
        msg.append(" exists. Write the export over it?")

        def done(yes: bool | None) -> None:
            if yes:
                self._overwrite = path
                self.action_submit()
            else:
                self.query_one("#path", Input).focus()

        self.app.push_screen(ConfirmScreen("Overwrite the file?", msg, yes="Overwrite", no="Keep it"), done)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()
