"""A new batch from a file of usernames: read it, store the batch, say what was imported.

The one place both the CLI (``storycheck add`` / ``run``) and the console's New-batch form
turn a file into a batch, so they accept the same files and describe them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storycheck_tui.inputs.profiles import ProfileList, load_profiles
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store
from storycheck_tui.words import plural


@dataclass(frozen=True)
class Imported:
    batch_id: int
    name: str
    profiles: int
    duplicates: int
    invalid: int

    def describe(self) -> str:
        """One line: ``batch 3 'leads': 1,200 profiles (2 duplicates dropped, 1 invalid line skipped)``."""
        extra = []
        if self.duplicates:
            extra.append(f"{plural(self.duplicates, 'duplicate')} dropped")
        if self.invalid:
            extra.append(f"{plural(self.invalid, 'invalid line')} skipped")
        return (f"batch {self.batch_id} {self.name!r}: {plural(self.profiles, 'profile')}"
                + (f" ({', '.join(extra)})" if extra else ""))


def import_batch(store: Store, path: str | Path, *, name: str = "", priority: int = 0, skip_invalid: bool = False,
                 profiles: ProfileList | None = None, max_requests: int | None = None) -> Imported:
    """Create a batch from the file at ``path`` (already read into ``profiles`` if given).

    ``name`` defaults to the file's name without its extension. Raises ``InputError`` /
    ``InputErrors`` (naming file and line) when the file cannot be imported; nothing is
    stored then.
    """
    path = Path(path).expanduser()
    plist = profiles if profiles is not None else load_profiles(path, skip_invalid=skip_invalid)
    name = name or path.stem
    batch_id = ops.create_batch(store, name, plist.usernames, priority=priority, source_file=str(path),
                                max_requests=max_requests)
    return Imported(batch_id, name, len(plist.usernames), plist.duplicates, plist.invalid_count)
