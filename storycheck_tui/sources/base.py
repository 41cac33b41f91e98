"""The StorySource protocol and the outcome of one successful check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from storycheck_tui.states import OutcomeKind

HAS_STORIES = OutcomeKind.HAS_STORIES
NO_STORIES = OutcomeKind.NO_STORIES
PRIVATE = OutcomeKind.PRIVATE
NOT_FOUND = OutcomeKind.NOT_FOUND
OUTCOMES = tuple(OutcomeKind)


@dataclass(frozen=True)
class Story:
    story_id: str
    taken_at: float | None  # epoch seconds
    expires_at: float | None = None
    media_type: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A parsed, valid answer about one username: the only thing that counts as success."""

    kind: OutcomeKind
    stories: tuple[Story, ...] = ()
    http_status: int = 200
    latency_ms: float = 0.0
    decided_by: str = ""  # what decided it: a response rule, a status list or the items path

    @property
    def story_count(self) -> int:
        return len(self.stories)

    @property
    def latest_story_at(self) -> float | None:
        times = [s.taken_at for s in self.stories if s.taken_at is not None]
        return max(times) if times else None


@dataclass(frozen=True)
class Route:
    """How a request leaves this machine: through a proxy URL, or direct (``url is None``).

    ``url`` may contain credentials and is only ever handed to httpx; ``label`` is the
    secret-free name used in logs, the database and the screen.
    """

    key: str  # stable identity, e.g. the proxy row id as text, or "direct"
    url: str | None
    label: str = field(default="direct")


DIRECT = Route(key="direct", url=None, label="direct")


class StorySource(Protocol):
    """Asks the story API about one username.

    ``check`` returns an :class:`Outcome` or raises a
    :class:`storycheck_tui.errors.CheckError` subclass; it never returns a partial result.
    It is called from many threads at once.
    """

    def check(self, username: str, via: Route) -> Outcome: ...

    def health(self, via: Route) -> float:
        """Probe ``health_url`` through ``via``; return latency ms or raise CheckError."""
        ...

    def close(self) -> None: ...
