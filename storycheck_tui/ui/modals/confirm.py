"""A yes/no question: ctrl+y (or enter on the yes button) confirms; n, escape or enter on the
no button (which has the focus) declines. No single letter confirms: keys typed by mistake
(text meant for a filter box) cannot say yes."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from storycheck_tui.ui import keymap


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [keymap.CONFIRM_YES, keymap.CONFIRM_NO]

    def __init__(self, title: str, message: Text | str, *, yes: str = "Yes", no: str = "No",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = title
        self._message = message if isinstance(message, Text) else Text(message)
        self._yes = yes
        self._no = no

    def compose(self):
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(Text(self._title, style="bold"), id="confirm-title", markup=False)
            yield Static(self._message, id="confirm-message", markup=False)
            with Horizontal(id="confirm-buttons", classes="buttons"):
                yield Button(f"{self._yes} ({keymap.CONFIRM_YES.key_display})", id="yes", variant="error",
                             compact=True)
                yield Button(f"{self._no} (n)", id="no", variant="default", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
