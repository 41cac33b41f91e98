"""Runtime knobs (K): the source pace cap and the check threads per worker, for every worker
through the database (as ``storycheck set`` does); empty means each worker's own setting.

Set stays off until the knobs in force were read into the fields: empty fields set before
that (or after the read failed) would clear both knobs."""

from __future__ import annotations

from typing import Callable, Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static
from textual.worker import Worker, WorkerState

from storycheck_tui.errors import InputError
from storycheck_tui.store import knobs
from storycheck_tui.store.knobs import Knobs
from storycheck_tui.ui.modals.form import FormScreen, error_lines

#: (pace cap, threads) -> what was set, said in a toast; raises InputError
SetKnobs = Callable[[float | None, float | None], str]


class KnobsScreen(FormScreen[str]):
    box_id = "knobs-box"
    submit_label = "Set (ctrl+s)"
    working = "setting…"

    #: why Set is off while the knobs in force are being read
    reading = "reading the knobs in force…"

    def __init__(self, apply: SetKnobs) -> None:
        super().__init__()
        self._apply = apply
        self._read_done = False  # the fields hold the knobs in force: Set may write them

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
        self.query_one("#submit", Button).disabled = True
        self.show_note(self.reading)
        if self.app.refresh_every:
            self.run_worker(self._read, thread=True, group="knobs-read", exit_on_error=False)
            return
        try:
            current = knobs.read(self.app.store)
        except Exception as exc:
            self._read_failed(exc)
        else:
            self._fill(current)

    def _read(self) -> Knobs:
        with self.app.connection():
            return knobs.read(self.app.store)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Textual calls FormScreen's handler too (each class's in the MRO): this one takes only the read
        if event.worker.group != "knobs-read":
            return
        if event.state == WorkerState.SUCCESS:
            self._fill(event.worker.result)
        elif event.state == WorkerState.ERROR:
            self._read_failed(event.worker.error)

    def _read_failed(self, exc: BaseException | None) -> None:
        why = error_lines(exc) if exc is not None else ["failed"]
        self.show_errors([f"could not read the knobs in force: {why[0]}", *why[1:],
                          "Set is off (it would clear both knobs); close with esc and try again"])

    def _fill(self, current: Knobs) -> None:
        for name, value in ((knobs.PACE_CAP, current.pace_cap), (knobs.THREADS, current.threads)):
            field = self.query_one(f"#{name}", Input)
            if not field.value and value is not None:  # what the operator typed meanwhile stays
                field.value = f"{value:g}"
        self._read_done = True
        self.query_one("#submit", Button).disabled = False
        self.show_errors([])

    def prepare(self) -> Callable[[], str] | list[str]:
        if not self._read_done:  # ctrl+s does not look at the button
            return ["the knobs in force are not read yet: Set would clear both knobs"]
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
