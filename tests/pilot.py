"""What the console's Pilot tests read off the screen, and how they wait for it.

Textual has no public plain view of the composed screen; its own ``export_screenshot`` renders
the screen's compositor, as :func:`screen_strips` does. This is the one place the tests touch it.
"""

from __future__ import annotations

import time
from typing import Callable

from textual.strip import Strip


def screen_strips(app) -> list[Strip]:
    """The composed screen, one strip (styled segments) per terminal line."""
    return app.screen._compositor.render_strips()


def screen_lines(app) -> list[str]:
    """What the terminal shows, one string per line."""
    return ["".join(seg.text for seg in strip) for strip in screen_strips(app)]


def screen_text(app) -> str:
    """What the terminal shows, as plain text lines."""
    return "\n".join(screen_lines(app))


async def until(pilot, predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds; after ``timeout`` s fail naming ``what``,
    with the screen as it was."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{screen_text(pilot.app)}")
        await pilot.pause(0.02)
