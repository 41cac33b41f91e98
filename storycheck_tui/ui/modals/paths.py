"""A file-path suggester for the modals' path boxes (right arrow accepts)."""

from __future__ import annotations

import os

from textual.suggester import Suggester


class PathSuggester(Suggester):
    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(n for n in os.listdir(folder or ".") if n.startswith(prefix) and not
                           (n.startswith(".") and not prefix.startswith(".")))
        except OSError:
            return None
        if not names or names[0] == prefix:
            return None
        name = names[0]
        full = os.path.join(folder, name)
        suffix = name[len(prefix):] + ("/" if os.path.isdir(full) else "")
        return value + suffix
