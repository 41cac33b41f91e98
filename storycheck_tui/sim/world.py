"""The simulated world: which profiles exist and what stories they have, over time.

Everything is derived from ``(seed, username)`` with blake2b, so two simulators with the same
seed agree on every profile, across processes and Python versions (``hash()`` is salted).

A profile is not found, private, or public; a public profile has stories or has none (the
hash decides, or a username prefix: ``stories_``, ``nostories_``, ``private_``, ``missing_``).
Its stories change in two ways, for monitoring (the same story id on every answer while the
story lives, a new id for a new story):

* **By schedule** (``story_every`` seconds, 0 = never, the default). Each profile with stories
  keeps its last ``n`` posts (``n`` from 1 to 5, by hash): every ``story_every`` seconds, at a
  moment of its own (a per-profile phase), it posts a new story and its oldest one expires.
  Story ids and ``taken_at`` follow from the seed and the clock alone, so two simulators with
  the same seed, started at the same second, answer the same.
* **By hand** (:meth:`World.post`, :meth:`World.expire`; the simulator's ``POST /_sim/post``
  and ``POST /_sim/expire``). A posted story is active until expired; posting to a profile
  makes it public with stories (a private or missing profile included); expiring takes
  stories out whatever posted them. A public profile whose stories all expired has none.

State: one World is owned by the simulator's event-loop thread; nothing here locks.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, Iterable

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
    a story keeps the same ``taken_at`` on every request (the schedule counts from it too).
    ``story_every``: see the module docstring. ``clock``: epoch seconds (for tests).
    """

    def __init__(self, seed: int, profiles: Iterable[str] | None = None, now: int | None = None,
                 story_every: float = 0.0, clock: Callable[[], float] = time.time):
        self.seed = seed
        self.profiles: frozenset[str] | None = None if profiles is None else frozenset(profiles)
        self.now = int(clock()) if now is None else int(now)
        self.story_every = float(story_every)
        self._clock = clock
        self._posted: dict[str, list[dict]] = {}  # username -> stories posted by hand
        self._expired: dict[str, set[str]] = {}  # username -> story ids taken out
        self._posts = 0  # stories posted by hand so far (their ids' counter)

    def kind(self, username: str) -> str:
        """What the profile is before any story changes: one of OUTCOMES."""
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

    def outcome(self, username: str) -> str:
        """What the API says about the profile now: one of OUTCOMES."""
        if not self._posted and not self._expired:  # nothing changed by hand: the hot path
            return self.kind(username)
        if self._posted.get(username):
            return HAS_STORIES if self.stories(username) else NO_STORIES
        kind = self.kind(username)
        if kind == HAS_STORIES and not self.stories(username):
            return NO_STORIES
        return kind

    def stories(self, username: str) -> list[dict]:
        """The profile's active stories, newest first (empty unless it has stories)."""
        posted = self._posted.get(username, [])
        items = self._scheduled(username) if self.kind(username) == HAS_STORIES else []
        if posted:
            items = sorted(items + posted, key=lambda item: item["taken_at"], reverse=True)
        expired = self._expired.get(username)
        if expired:
            items = [item for item in items if item["pk"] not in expired]
        return items

    def post(self, username: str, taken_at: int | None = None) -> dict:
        """A new story of ``username``, active until expired; returns it."""
        self._posts += 1
        taken = int(self._clock()) if taken_at is None else int(taken_at)
        item = {"pk": str(_digest(self.seed, "posted", username, self._posts) >> 1), "taken_at": taken,
                "expiring_at": taken + STORY_LIFETIME, "media_type": 1}
        self._posted.setdefault(username, []).append(item)
        return item

    def expire(self, username: str, story_ids: Iterable[str] | None = None) -> list[str]:
        """Take out the given active stories of ``username`` (all of them if None); their ids."""
        active = [item["pk"] for item in self.stories(username)]
        gone = active if story_ids is None else [pk for pk in map(str, story_ids) if pk in active]
        if gone:
            self._expired.setdefault(username, set()).update(gone)
        return gone

    def _scheduled(self, username: str) -> list[dict]:
        count = 1 + _digest(self.seed, "count", username) % 5
        every = self.story_every
        items = []
        if every <= 0:  # stories that never change, dated within the day before `now`
            for k in range(count):
                h = _digest(self.seed, "story", username, k)
                taken_at = self.now - (h % MAX_AGE)
                items.append({"pk": str(h >> 1), "taken_at": taken_at, "expiring_at": taken_at + STORY_LIFETIME,
                              "media_type": 1 + (h >> 40) % 2})
        else:  # the last `count` posts: one every `every` seconds at the profile's own phase
            phase = (_digest(self.seed, "phase", username) % 1000) / 1000 * every
            slot = int((self._clock() - self.now + phase) // every)
            for k in range(slot - count + 1, slot + 1):
                h = _digest(self.seed, "story", username, "slot", k)
                taken_at = int(self.now + k * every - phase)
                items.append({"pk": str(h >> 1), "taken_at": taken_at,
                              "expiring_at": int(taken_at + count * every), "media_type": 1 + (h >> 40) % 2})
        items.sort(key=lambda item: item["taken_at"], reverse=True)
        return items

    def answer(self, username: str) -> tuple[int, bytes]:
        """HTTP status and JSON body the story API gives for ``username``."""
        outcome = self.outcome(username)
        if outcome == NOT_FOUND:
            return 404, b'{"error": "not_found"}'
        if outcome == PRIVATE:
            return 403, b'{"error": "private"}'
        items = self.stories(username) if outcome == HAS_STORIES else []
        body = {"user": {"username": username}, "items": items}
        return 200, json.dumps(body).encode()
