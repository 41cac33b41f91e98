"""The command palette (ctrl+p): every key's action, by name, from the same keymap lists."""

from __future__ import annotations

from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from storycheck_tui.ui import keymap
from storycheck_tui.ui.typed import ConsoleNode

#: focus moves that make no sense from the palette
SKIP = {keymap.NEXT_PANE.id, keymap.PREV_PANE.id}


def commands(read_only: bool = False) -> list[tuple[str, str, Binding]]:
    out = []
    for section, bindings in keymap.SECTIONS:
        for b in bindings:
            if b.id in SKIP or (read_only and b in keymap.STEERING):
                continue
            out.append((f"{section}: {b.description}", b.tooltip or b.description, b))
    return out


class StorycheckCommands(ConsoleNode, Provider):
    async def discover(self) -> Hits:
        for title, help_text, binding in commands(self.app.read_only):
            yield DiscoveryHit(title, partial(self.app.run_binding, binding), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, binding in commands(self.app.read_only):
            score = max(matcher.match(title), matcher.match(help_text) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_binding, binding),
                          help=help_text)
