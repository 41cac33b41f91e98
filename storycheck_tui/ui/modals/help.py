"""Every key, by section, with the keys in force (a user keymap shows here too)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from storycheck_tui.ui import keymap

INTRO = ("storycheck checks batches of profiles for active stories through a proxy pool. The panes redraw a "
         "few times a second from the engine and the database; actions apply to the selected batch (pane 1) "
         "or proxy (pane 3). ctrl+p opens the command palette with every action below.")


def key_label(app, binding: Binding) -> str:
    keys = app._keymap.get(binding.id) if binding.id else None
    raw = keys or binding.key
    if not keys and binding.key_display:
        return binding.key_display
    return " / ".join(app.get_key_display(Binding(k.strip(), "")) for k in raw.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [keymap.CLOSE, ("q,question_mark,f1", "close", "Close")]

    def compose(self):
        with Vertical(id="help-box", classes="modal-box"):
            yield Static(Text("storycheck console — keys", style="bold"), markup=False)
            with VerticalScroll(id="help-body"):
                yield Static(Text(INTRO, style="bright_black"), markup=False)
                for section, bindings in keymap.SECTIONS:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(width=14, style="bold cyan", no_wrap=True)
                    table.add_column(width=22, style="bold")
                    table.add_column(style="")
                    for b in bindings:
                        table.add_row(key_label(self.app, b), b.description, b.tooltip)
                    yield Static(Text(section, style="bold underline"), classes="help-section", markup=False)
                    yield Static(table, markup=False)
            yield Static(Text("esc close", style="bright_black"), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
