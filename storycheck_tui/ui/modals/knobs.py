"""Runtime knobs (K): the source pace cap and the check threads per worker, for every worker
through the database (as ``storycheck set`` does); empty means each worker's own setting."""

from __future__ import annotations

from typing import Callable, Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Input, Label, Static
from textual.worker import Worker, WorkerState

from storycheck_tui.errors import InputError
from storycheck_tui.store import knobs
from storycheck_tui.store.knobs import Knobs
from storycheck_tui.ui.modals.form import FormScreen

#: (pace cap, threads) -> what was set, said in a toast; raises InputError
SetKnobs = Callable[[float | None, float | None], str]


class KnobsScreen(FormScreen[str]):
    box_id = "knobs-box"
    submit_label = "Set (ctrl+s)"
    working = "setting…"

    def __init__(self, apply: SetKnobs) -> None:
        super().__init__()
        self._apply = apply

    def fields(self) -> Iterable[Widget]:
        """One-line (compact) fields: the form fits an 80x24 terminal with its buttons."""
        yield Static(Text("Runtime knobs", style="bold"), markup=False)
        yield Static(Text("Every running worker takes them within a second; empty: each worker's own "
                          "setting ([source] max_rate, --workers).", style="bright_black"), markup=False)
        yield Label(f"Pace cap: {knobs.HELP[knobs.PACE_CAP]}")
        yield Input("", placeholder="none: found by the engine", id="pace-cap", compact=True)
        yield Label(f"Threads: {knobs.HELP[knobs.THREADS]} (1-{knobs.MAX_THREADS})")
        yield Input("", placeholder="each worker's own", id="threads", compact=True)

    def on_mount(self) -> None:
        """The knobs in force fill the fields (read in a thread; inline with the timer off)."""
        super().on_mount()
        self.query_one("#pace-cap", Input).focus()
        if self.app.refresh_every:
            self.run_worker(self._read, thread=True, group="knobs-read", exit_on_error=False)
        else:
            self._fill(knobs.read(self.app.store))

    def _read(self) -> Knobs:
        with self.app.connection():
            return knobs.read(self.app.store)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Textual calls FormScreen's handler too (each class's in the MRO): the form's own work is its
        if event.worker.group == "knobs-read" and event.state == WorkerState.SUCCESS:
            self._fill(event.worker.result)

    def _fill(self, current: Knobs) -> None:
        for name, value in ((knobs.PACE_CAP, current.pace_cap), (knobs.THREADS, current.threads)):
            field = self.query_one(f"#{name}", Input)
            if not field.value and value is not None:  # what the operator typed meanwhile stays
                field.value = f"{value:g}"

    def prepare(self) -> Callable[[], str] | list[str]:
        values, errors = [], []
        for name in (knobs.PACE_CAP, knobs.THREADS):
            try:
                values.append(knobs.parse(name, self.query_one(f"#{name}", Input).value))
            except InputError as exc:
                errors.append(str(exc))
        if errors:
            return errors
        cap, threads = values
        return lambda: self._apply(cap, threads)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "pace-cap":
            self.query_one("#threads", Input).focus()
        else:
            self.action_submit()
