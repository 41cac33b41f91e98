"""The simulated world: which profiles exist and what stories they have.

Everything is derived from ``(seed, username)`` with blake2b, so two simulators with the same
seed agree on every profile, across processes and Python versions (``hash()`` is salted).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterable

HAS_STORIES = "has_stories"
NO_STORIES = "no_stories"
PRIVATE = "private"
NOT_FOUND = "not_found"
OUTCOMES = (HAS_STORIES, NO_STORIES, PRIVATE, NOT_FOUND)

# Usernames with these prefixes get that outcome whatever the hash says (for tests).
PREFIXES = (
    ("stories_", HAS_STORIES),
    ("nostories_", NO_STORIES),
    ("private_", PRIVATE),
    ("missing_", NOT_FOUND),
)

STORY_LIFETIME = 86400
MAX_AGE = 23 * 3600


def _digest(*parts: object) -> int:
    data = "\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class World:
    """Deterministic profiles and stories.

    ``profiles``: if given, only these usernames exist (others are not_found) and, unless a
    prefix says otherwise, each listed one exists (has/no stories or private, same odds).
    ``now``: the epoch second stories are dated against; fixed for the world's lifetime so
    a story keeps the same ``taken_at`` on every request.
    """

    def __init__(self, seed: int, profiles: Iterable[str] | None = None, now: int | None = None):
        self.seed = seed
        self.profiles: frozenset[str] | None = None if profiles is None else frozenset(profiles)
        self.now = int(time.time()) if now is None else int(now)

    def outcome(self, username: str) -> str:
        if self.profiles is not None and username not in self.profiles:
            return NOT_FOUND
        for prefix, outcome in PREFIXES:
            if username.startswith(prefix):
                return outcome
        # 45% has_stories, 35% no_stories, 10% private, 10% not_found; listed profiles
        # (profiles given) draw from the first 90 so they all exist.
        roll = _digest(self.seed, "outcome", username) % (100 if self.profiles is None else 90)
        if roll < 45:
            return HAS_STORIES
        if roll < 80:
            return NO_STORIES
        if roll < 90:
            return PRIVATE
        return NOT_FOUND

    def stories(self, username: str) -> list[dict]:
        """The profile's active stories (empty unless its outcome is has_stories)."""
        if self.outcome(username) != HAS_STORIES:
            return []
        return self._stories(username)

    def _stories(self, username: str) -> list[dict]:
        count = 1 + _digest(self.seed, "count", username) % 5
        items = []
        for k in range(count):
            h = _digest(self.seed, "story", username, k)
            taken_at = self.now - (h % MAX_AGE)
            items.append({
                "pk": str(h >> 1),
                "taken_at": taken_at,
                "expiring_at": taken_at + STORY_LIFETIME,
                "media_type": 1 + (h >> 40) % 2,
            })
        items.sort(key=lambda item: item["taken_at"], reverse=True)
        return items

    def answer(self, username: str) -> tuple[int, bytes]:
        """HTTP status and JSON body the story API gives for ``username``."""
        outcome = self.outcome(username)
        if outcome == NOT_FOUND:
            return 404, b'{"error": "not_found"}'
        if outcome == PRIVATE:
            return 403, b'{"error": "private"}'
        items = self._stories(username) if outcome == HAS_STORIES else []
        body = {"user": {"username": username}, "items": items}
        return 200, json.dumps(body).encode()
