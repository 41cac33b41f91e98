"""``self.app`` typed as the console's app, written once for the classes that need it."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from storycheck_tui.ui.app import StorycheckApp


class ConsoleNode:
    """Mixed in before a Textual class (a screen, a command provider): its ``app`` is a
    :class:`~storycheck_tui.ui.app.StorycheckApp`."""

    @property
    def app(self) -> StorycheckApp:
        return cast("StorycheckApp", super().app)  # type: ignore[misc]  # the Textual class's own property
