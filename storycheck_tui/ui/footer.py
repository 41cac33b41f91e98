"""The footer: the keys in force for the focused widget, on one line.

Drawn as one line of text (not a widget per key, as Textual's ``Footer`` does), and drawn
again only when the keys it shows change: the screen announces new bindings after most
actions, while the keys mostly stay the same. It looks like Textual's compact footer (the
same theme variables), a key runs when clicked, and a key's tooltip shows on hover.

Runs on the UI thread only (widget state: the keys shown and the hovered one).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class FooterItem:
    key: str  # what pressing it sends
    display: str  # what the footer shows for it
    description: str
    enabled: bool
    tooltip: str

    @property
    def width(self) -> int:
        """Cells it takes, its gap to the next one included."""
        return Text(self.display).cell_len + (1 + Text(self.description).cell_len if self.description else 0) + 1


#: actions the footer always shows first
FIRST = ("help", "quit_app")


class KeysFooter(Widget, can_focus=False):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"keys-footer--key", "keys-footer--description", "keys-footer--hover"}
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        text-wrap: nowrap;
        text-overflow: clip;
        color: $footer-foreground;
        background: $footer-background;
        .keys-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keys-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .keys-footer--hover {
            color: $footer-key-foreground;
            background: $block-hover-background;
        }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.items: tuple[FooterItem, ...] = ()
        self._hover: int | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
        if screen is not self.screen:
            return
        items: dict[str, FooterItem] = {}
        hidden = getattr(self.app, "hidden_actions", frozenset())  # e.g. a read-only console's steering keys
        for _node, binding, enabled, tooltip in screen.active_bindings.values():
            if binding.show and binding.action not in items and binding.action not in hidden:  # the first binding of each action
                items[binding.action] = FooterItem(binding.key, self.app.get_key_display(binding),
                                                   binding.description, enabled, tooltip or binding.tooltip)
        # help and quit first, whatever has the focus: an 80-column footer still shows them
        first = [i for a, i in items.items() if a in FIRST]
        new = tuple(first + [i for a, i in items.items() if a not in FIRST])
        if new != self.items:
            self.items = new
            self._hover = None
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keys-footer--key")
        description_style = self.get_component_rich_style("keys-footer--description")
        hover_style = self.get_component_rich_style("keys-footer--hover")
        line = Text(no_wrap=True, overflow="crop", end="")
        for i, item in enumerate(self.items):
            start = len(line)
            line.append(item.display, key_style)
            if item.description:
                line.append(" " + item.description, description_style)
            if not item.enabled:
                line.stylize("dim", start)
            if i == self._hover:
                line.stylize(hover_style, start)
            if i < len(self.items) - 1:
                line.append(" ")
        line.stylize_before(self.rich_style)
        return line

    def item_at(self, x: int) -> FooterItem | None:
        left = 0
        for item in self.items:
            if left <= x < left + item.width - 1:
                return item
            left += item.width
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        item = self.item_at(event.x)
        hover = None if item is None else self.items.index(item)
        if hover != self._hover:
            self._hover = hover
            self.tooltip = item.tooltip if item is not None and item.tooltip else None
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.refresh()

    def on_click(self, event: events.Click) -> None:
        item = self.item_at(event.x)
        if item is None:
            return
        if item.enabled:
            self.app.simulate_key(item.key)
        else:
            self.app.bell()
