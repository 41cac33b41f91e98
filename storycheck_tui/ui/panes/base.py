"""What every pane shares: a titled border, a focus target, an optional filter box.

The filter box is mounted when `/` opens it and removed when it closes empty: every widget
on the screen is restyled by a zoom (and a pane's by each focus change it takes part in),
and the five boxes, mounted hidden, were about a third of that work. The box takes the
focus in the same handler that mounts it, so the keys typed right after `/` queue up for
the box and reach it in order once it is mounted: none of them can run as a command.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Static

from storycheck_tui.ui.table import SortChanged


def same_text(a: Text | str | None, b: Text | str | None) -> bool:
    """Would ``a`` and ``b`` look the same on screen? (``Text ==`` ignores the base style.)"""
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain == b.plain and a.spans == b.spans and a.style == b.style and a.justify == b.justify
                and a.overflow == b.overflow and a.no_wrap == b.no_wrap)
    return type(a) is type(b) and a == b


class Line(Static):
    """A line of text whose size is set by the stylesheet: showing new text repaints it and
    nothing else (no layout pass), and showing the same text again does nothing."""

    def __init__(self, content: Text | str = "", **kw) -> None:
        super().__init__(content, markup=False, **kw)
        self._shown: Text | str = content

    def show(self, text: Text | str) -> None:
        if same_text(text, self._shown):
            return
        self._shown = text
        self.update(text, layout=False)


class FilterInput(Input):
    """The one-line filter box of a pane: enter applies, escape closes (and clears)."""

    BINDINGS = [("escape", "close_filter", "Close filter")]

    def action_close_filter(self) -> None:
        pane = next((a for a in self.ancestors if isinstance(a, Pane)), None)
        if pane is not None:
            pane.close_filter(clear=True)


class Pane(Vertical):
    """A bordered pane; ``number`` is its `1`-`5` key, ``target`` the widget that takes focus."""

    ALLOW_MAXIMIZE = True

    pane_name = "pane"
    number = 0
    pane_title = ""
    filter_placeholder = "filter"
    #: the id of the pane's filter box (None: the pane has no filter)
    filter_id: str | None = None

    def target(self) -> Widget:
        raise NotImplementedError

    def set_subtitle(self, text: Text | str) -> None:
        """The border subtitle, repainted only when it changes."""
        if same_text(text, getattr(self, "_subtitle", None)):
            return
        self._subtitle = text
        self.border_subtitle = text

    def on_mount(self) -> None:
        self.add_class("pane")
        self.border_title = f"{self.number} {self.pane_title}" if self.number else self.pane_title

    def focus_target(self) -> None:
        # at once, not after a refresh: a key typed right after "2" goes to the new pane
        self.screen.set_focus(self.target())

    # -- filter ------------------------------------------------------------------------------------

    def filter_input(self) -> FilterInput | None:
        """The filter box, while it is open (or holds a filter)."""
        for child in self.children:
            if isinstance(child, FilterInput):
                return child
        return None

    def open_filter(self) -> bool:
        if self.filter_id is None:
            return False
        box = self.filter_input()
        if box is None:
            box = FilterInput(placeholder=self.filter_placeholder, id=self.filter_id)
            self.mount(box, before=self.target())
        box.display = True
        # at once, before the box is mounted: the keys typed next wait in its queue
        self.screen.set_focus(box)
        return True

    def close_filter(self, *, clear: bool = False) -> None:
        box = self.filter_input()
        if box is None:
            return
        if clear and box.value:
            box.value = ""
            self.apply_filter("")
        self.focus_target()
        if not box.value:
            box.remove()

    #: seconds of quiet typing before a filter is applied (enter applies at once)
    filter_debounce = 0.0

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            if not self.filter_debounce:
                self.apply_filter(event.value)
                return
            timer = getattr(self, "_filter_timer", None)
            if timer is not None:
                timer.stop()
            value = event.value
            self._filter_timer = self.set_timer(self.filter_debounce, lambda: self.apply_filter(value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            timer = getattr(self, "_filter_timer", None)
            if timer is not None:
                timer.stop()
            self.apply_filter(event.value)
            self.close_filter()

    def apply_filter(self, text: str) -> None:
        """Apply the filter text (called on every change)."""

    def on_sort_changed(self, event: SortChanged) -> None:
        event.stop()
        self.resort()

    def resort(self) -> None:
        """Show the rows again in the table's new sort order."""

    def on_click(self, event) -> None:
        """A click anywhere in a pane focuses it (its table or log: the click also selects)."""
        if self.screen.focused is None or self not in self.screen.focused.ancestors_with_self:
            self.focus_target()
