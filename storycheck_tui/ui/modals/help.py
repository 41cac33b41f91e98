"""Every key, by section, with the keys in force (a user keymap shows here too)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from storycheck_tui.ui import keymap
from storycheck_tui.ui.typed import ConsoleNode

INTRO = ("The panes redraw a few times a second from the engine and the database. Batch keys act on the "
         "selected batch (pane 1), proxy keys on the selected proxy (pane 3). ctrl+p opens the command palette "
         "with every action below. Results filter: words match usernames and errors; is:failed, is:ok, "
         "is:stories, is:pending, is:running pick a state. Remap any key by its id (right column) in "
         "keymap.toml in the storycheck config directory, e.g.  \"batch.pause\" = \"space\".")


def key_label(app, binding: Binding) -> str:
    keys = app.keymap_overrides.get(binding.id) if binding.id else None
    raw = keys or binding.key
    if not keys and binding.key_display:
        return binding.key_display
    return " / ".join(app.get_key_display(Binding(k.strip(), "")) for k in raw.split(","))


class HelpScreen(ConsoleNode, ModalScreen[None]):
    BINDINGS = [keymap.CLOSE, ("q,question_mark,f1", "close", "Close")]

    def compose(self):
        with Vertical(id="help-box", classes="modal-box"):
            yield Static(Text("storycheck console — keys", style="bold"), markup=False)
            with VerticalScroll(id="help-body"):
                yield Static(Text(INTRO, style="bright_black"), markup=False)
                for section, bindings in keymap.SECTIONS:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(width=10, style="bold cyan", no_wrap=True)
                    table.add_column(width=14, style="bold", no_wrap=True)
                    table.add_column(ratio=1)
                    table.add_column(width=22, style="bright_black", no_wrap=True)
                    for b in bindings:
                        tip = b.tooltip or ""
                        if self.app.read_only and b in keymap.STEERING:
                            tip = "off (read-only console): " + tip
                        table.add_row(key_label(self.app, b), b.description, tip, b.id)
                    yield Static(Text(section, style="bold underline"), classes="help-section", markup=False)
                    yield Static(table, markup=False)
            yield Static(Text("esc close", style="bright_black"), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
