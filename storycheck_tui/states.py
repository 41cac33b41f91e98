"""Every state, outcome and error kind storycheck stores, as ``StrEnum``s.

The values are the strings kept in the database (``batch.state``, ``job.state``,
``job.outcome``, ``job.error_kind``, ``proxy.state``, ``worker.state``) and printed by
``--json``: they never change. A member *is* its string (``JobState.PENDING == "pending"``),
so it goes into SQL parameters, f-strings and JSON as is; ``sql_list`` writes a tuple of them
as an SQL ``IN (...)`` list for statements built from constants.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable


class BatchState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


#: batches whose pending jobs a worker may claim
CLAIMABLE = (BatchState.QUEUED, BatchState.RUNNING)
#: batches that can still change (not cancelled, not finished)
OPEN = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED)


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: a job in one of these states is done (it counts in ``completed_profiles``)
DONE = (JobState.SUCCEEDED, JobState.FAILED)


class OutcomeKind(StrEnum):
    """``job.outcome`` of a successful check: what the source said about the profile."""

    HAS_STORIES = "has_stories"
    NO_STORIES = "no_stories"
    PRIVATE = "private"
    NOT_FOUND = "not_found"


class ErrorKind(StrEnum):
    """``job.error_kind`` of a failed check (``errors.CheckError.kind`` of each subclass)."""

    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    PROXY_FAILED = "proxy_failed"
    SOURCE_UNAVAILABLE = "source_unavailable"
    BAD_RESPONSE = "bad_response"
    AUTH_FAILED = "auth_failed"
    NO_PROXY = "no_proxy"
    #: never stored: the job went back to the queue while the source's circuit was open
    CIRCUIT_OPEN = "circuit_open"
    UNEXPECTED = "unexpected"
    #: the reaper failed the job: its lease expired ``max_claims`` times
    LEASE_EXPIRED = "lease_expired"


class ProxyState(StrEnum):
    UNCHECKED = "unchecked"
    HEALTHY = "healthy"
    COOLING = "cooling"
    DEAD = "dead"
    DISABLED = "disabled"
    #: the proxy refused its credentials (407, SOCKS5 username/password): it will not heal by
    #: itself; tried again only when its credentials change or an operator enables or retries it
    AUTH_REJECTED = "auth_rejected"


class WorkerState(StrEnum):
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    #: silent for a lease length (set by ``mark_lost_workers``)
    LOST = "lost"


class EventType(StrEnum):
    STORY_NEW = "story.new"
    PROFILE_CHANGED = "profile.changed"


class DeliveryState(StrEnum):
    """``event.delivery``: where an event stands with its watch's webhook."""

    NONE = "none"  # the watch had no webhook when the event happened
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried for 24 hours, then given up


class ProfileStatus(StrEnum):
    """What a watch remembers of a profile between rounds (``profile.changed`` fires on a change)."""

    PUBLIC = "public"  # has_stories or no_stories
    PRIVATE = "private"
    NOT_FOUND = "not_found"


def sql_list(values: Iterable[StrEnum]) -> str:
    """``('a', 'b')`` for an SQL ``IN``: only for enum members (fixed, quote-free strings)."""
    items = []
    for v in values:
        if not isinstance(v, StrEnum) or "'" in v:
            raise ValueError(f"sql_list takes enum members, not {v!r}")
        items.append(f"'{v}'")
    return "(" + ", ".join(items) + ")"


def sql(value: StrEnum) -> str:
    """``'value'`` as an SQL literal (enum members only)."""
    return sql_list([value])[1:-1]


__all__ = ["BatchState", "JobState", "OutcomeKind", "ErrorKind", "ProxyState", "WorkerState", "EventType",
           "DeliveryState", "ProfileStatus", "CLAIMABLE", "OPEN", "DONE",
           "sql_list", "sql"]
