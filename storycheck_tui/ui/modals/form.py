"""What the console's form modals share: a box of fields, an error box, a submit and a cancel
button; the submitted work runs in a thread (it reads files and writes the database), and
its errors are shown in the form, never as a crash.

A form subclasses :class:`FormScreen`, yields its fields from :meth:`FormScreen.fields`, and
turns them into work in :meth:`FormScreen.prepare` (or says what is missing). The work
returns the form's result (the screen closes with it) or raises (the form shows why).

State (the fields, the error box) belongs to the UI thread; the work gets plain values.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterable, TypeVar

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from storycheck_tui.errors import InputError, InputErrors, StorycheckError
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap

ResultT = TypeVar("ResultT")


def error_lines(exc: BaseException) -> list[str]:
    """An error as the lines a form shows (one per problem of a file)."""
    if isinstance(exc, InputErrors):
        return [str(e) for e in exc.errors]
    if isinstance(exc, (InputError, StorycheckError)):
        return str(exc).splitlines() or [type(exc).__name__]
    return [f"{type(exc).__name__}: {exc}"]


class FormScreen(ModalScreen[ResultT | None], Generic[ResultT]):
    BINDINGS = [keymap.CLOSE, keymap.SUBMIT]

    #: the id of the form's box (the stylesheet sizes it)
    box_id = "form-box"
    #: the submit button's label
    submit_label = "OK (ctrl+s)"
    #: shown while the work runs
    working = "working…"

    def fields(self) -> Iterable[Widget]:
        """The form's title, help text and inputs, top to bottom."""
        raise NotImplementedError

    def prepare(self) -> Callable[[], ResultT] | list[str]:
        """The work for the values in the form, or what is wrong with them (shown as errors)."""
        raise NotImplementedError

    def error_text(self, lines: list[str]) -> Text:
        """How the error box shows the lines of an error (plain text, never markup)."""
        return Text("\n".join(fmt.literal(x) for x in lines), style="red")

    # -- the form ---------------------------------------------------------------------------------

    def compose(self):
        with Vertical(id=self.box_id, classes="modal-box"):
            yield from self.fields()
            yield Static("", id="errors", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.submit_label, id="submit", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#errors", Static).display = False

    @property
    def busy(self) -> bool:
        return any(w.group == "form" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers)

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#submit")
    def submit_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        if self.busy:
            return
        job = self.prepare()
        if isinstance(job, list):
            self.show_errors(job)
            return
        self.query_one("#submit", Button).disabled = True
        self.show_note(self.working)
        self._run(job)

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _run(self, job: Callable[[], ResultT]) -> ResultT:
        return job()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "form" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self.query_one("#submit", Button).disabled = False
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)
        else:
            self.show_errors(error_lines(event.worker.error) if event.worker.error else ["failed"])

    # -- the error box ----------------------------------------------------------------------------

    def show_errors(self, lines: list[str]) -> None:
        self._show(self.error_text(lines) if lines else Text())

    def show_note(self, note: str) -> None:
        self._show(Text(note, style="bright_black"))

    def _show(self, text: Text) -> None:
        box = self.query_one("#errors", Static)
        box.update(text)
        box.display = bool(text.plain)
