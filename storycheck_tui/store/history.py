"""Story history, profile status over time and the event outbox of watch rounds.

:func:`record` runs inside the transaction of the fenced finish (``queue.finish``): the
results that finish is applying, and only those, update the history and write their events.
So a ``kill -9`` anywhere either loses the whole finish (the jobs are checked again, the
events written then) or keeps it with its events: never an event without its result or a
result without its events. A story is one event whatever happens: ``watch_story`` knows the
stories seen, and the ``event_story`` unique index refuses a second ``story.new`` for one
(watch, profile, story id).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from storycheck_tui.states import DeliveryState, EventType, OutcomeKind, ProfileStatus
from storycheck_tui.store.db import Store

if TYPE_CHECKING:
    from storycheck_tui.store.queue import JobResult

EVENT_COLUMNS = ("type", "watch_id", "watch", "username", "story_id", "taken_at", "details", "at", "delivery",
                 "attempts", "next_try_at")
STORY_COLUMNS = ("watch_id", "username", "story_id", "taken_at", "expires_at", "first_seen", "last_seen")


def status_of(kind: str) -> ProfileStatus:
    if kind in (OutcomeKind.HAS_STORIES, OutcomeKind.NO_STORIES):
        return ProfileStatus.PUBLIC
    return ProfileStatus(kind)


def _in(p: str, n: int) -> str:
    return "(" + ", ".join([p] * n) + ")"


def record(store: Store, ts: float, results: list[JobResult]) -> int:
    """History and events of the applied ``results`` that belong to watch rounds, in the
    caller's transaction; returns how many events were written."""
    batch_ids = sorted({r.job.batch_id for r in results if r.ok and r.outcome is not None})
    if not batch_ids:
        return 0
    db, d = store.db, store.dialect
    p = d.param
    rounds = {int(b): (int(w), name, hook) for b, w, name, hook in db.execute_sql(
        f"SELECT b.id, w.id, w.name, w.webhook FROM batch b JOIN watch w ON w.id = b.watch_id "
        f"WHERE b.id IN {_in(p, len(batch_ids))}", batch_ids).fetchall()}
    if not rounds:
        return 0
    by_watch: dict[int, list[JobResult]] = defaultdict(list)
    for r in results:
        if r.ok and r.outcome is not None and r.job.batch_id in rounds:
            by_watch[rounds[r.job.batch_id][0]].append(r)
    names = {w: (name, hook) for w, name, hook in rounds.values()}
    written = 0
    for watch_id, rs in sorted(by_watch.items()):
        name, hook = names[watch_id]
        written += _record_watch(store, ts, watch_id, name, DeliveryState.PENDING if hook else DeliveryState.NONE, rs)
    return written


def _record_watch(store: Store, ts: float, watch_id: int, name: str, delivery: DeliveryState,
                  rs: list[JobResult]) -> int:
    db, d = store.db, store.dialect
    p = d.param
    known: set[tuple[str, str]] = set()
    status: dict[str, str | None] = {}
    for i in range(0, len(rs), 500):
        users = [r.job.username for r in rs[i:i + 500]]
        known.update((u, s) for u, s in db.execute_sql(
            f"SELECT username, story_id FROM watch_story WHERE watch_id = {p} AND username IN {_in(p, len(users))}",
            [watch_id, *users]).fetchall())
        status.update((u, s) for u, s in db.execute_sql(
            f"SELECT username, status FROM watch_profile WHERE watch_id = {p} AND username IN {_in(p, len(users))}",
            [watch_id, *users]).fetchall())
    new_stories, seen, events, changes, profiles = [], [], [], [], []
    for r in rs:
        u, o = r.job.username, r.outcome
        for s in o.stories:
            if (u, s.story_id) in known:
                seen.append((ts, s.expires_at, watch_id, u, s.story_id))
                continue
            known.add((u, s.story_id))
            new_stories.append((watch_id, u, s.story_id, s.taken_at, s.expires_at, ts, ts))
            events.append((EventType.STORY_NEW, watch_id, name, u, s.story_id, s.taken_at, None, ts, delivery, 0, ts))
        now_status = status_of(o.kind)
        before = status.get(u)
        if before != now_status:
            changes.append((watch_id, u, now_status, ts))
            if before is not None:  # the first round sets where a profile stands: no change yet
                events.append((EventType.PROFILE_CHANGED, watch_id, name, u, None, None,
                               json.dumps({"from": before, "to": now_status}), ts, delivery, 0, ts))
            profiles.append((now_status, ts, watch_id, u))  # only changes are written: rounds stay cheap
    d.insert_rows(db, "watch_story", STORY_COLUMNS, new_stories, ignore_conflicts=True)
    d.insert_rows(db, "profile_change", ("watch_id", "username", "status", "at"), changes)
    d.insert_rows(db, "event", EVENT_COLUMNS, events, ignore_conflicts=True)
    if seen:
        d.execute_many(db, f"UPDATE watch_story SET last_seen = {p}, expires_at = COALESCE({p}, expires_at) "
                       f"WHERE watch_id = {p} AND username = {p} AND story_id = {p}", seen)
    if profiles:
        d.execute_many(db, f"UPDATE watch_profile SET status = {p}, status_since = {p} "
                           f"WHERE watch_id = {p} AND username = {p}", profiles)
    return len(events)


# --- reads --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    watch: str
    username: str
    story_id: str | None
    taken_at: float | None
    at: float
    delivery: str
    attempts: int
    last_error: str | None
    details: dict

    def as_json(self) -> dict:
        out = {"id": self.id, "type": self.type, "watch": self.watch, "username": self.username,
               "story_id": self.story_id, "taken_at": self.taken_at, "at": self.at, "delivery": self.delivery}
        out.update({k: v for k, v in self.details.items() if k in ("from", "to")})
        return out


EVENT_FIELDS = "id, type, watch, username, story_id, taken_at, at, delivery, attempts, last_error, details"


def event_row(t: tuple) -> EventRow:
    return EventRow(int(t[0]), t[1], t[2], t[3], t[4], t[5], float(t[6]), t[7], int(t[8] or 0), t[9],
                    json.loads(t[10]) if t[10] else {})


def events(store: Store, *, watch: str | None = None, since: float | None = None, after_id: int = 0,
           chunk: int = 2000) -> Iterator[EventRow]:
    """Events in id order (read in chunks: constant memory)."""
    p = store.dialect.param
    last = after_id
    while True:
        where, params = [f"id > {p}"], [last]
        if watch is not None:
            where.append(f"watch = {p}")
            params.append(watch)
        if since is not None:
            where.append(f"at >= {p}")
            params.append(since)
        rows = store.db.execute_sql(f"SELECT {EVENT_FIELDS} FROM event WHERE {' AND '.join(where)} "
                                    f"ORDER BY id LIMIT {int(chunk)}", params).fetchall()
        if not rows:
            return
        for t in rows:
            yield event_row(t)
        last = int(rows[-1][0])


@dataclass(frozen=True)
class StoryRow:
    watch: str
    username: str
    story_id: str
    taken_at: float | None
    expires_at: float | None
    first_seen: float
    last_seen: float

    def as_json(self) -> dict:
        return {"watch": self.watch, "username": self.username, "story_id": self.story_id,
                "taken_at": self.taken_at, "expires_at": self.expires_at, "first_seen": self.first_seen,
                "last_seen": self.last_seen}


def history(store: Store, username: str, *, watch: str | None = None) -> list[StoryRow]:
    """Every story seen for ``username`` (in every watch, or in ``watch``), oldest first."""
    p = store.dialect.param
    sql_ = (f"SELECT w.name, s.username, s.story_id, s.taken_at, s.expires_at, s.first_seen, s.last_seen "
            f"FROM watch_story s JOIN watch w ON w.id = s.watch_id WHERE s.username = {p}")
    params: list = [username]
    if watch is not None:
        sql_ += f" AND w.name = {p}"
        params.append(watch)
    rows = store.db.execute_sql(sql_ + " ORDER BY s.first_seen, s.id", params).fetchall()
    return [StoryRow(*t) for t in rows]


@dataclass(frozen=True)
class StatusChange:
    watch: str
    username: str
    status: str
    at: float


def status_history(store: Store, username: str, *, watch: str | None = None) -> list[StatusChange]:
    """Where ``username`` stood over time (public, private, not_found), oldest first."""
    p = store.dialect.param
    sql_ = (f"SELECT w.name, c.username, c.status, c.at FROM profile_change c JOIN watch w ON w.id = c.watch_id "
            f"WHERE c.username = {p}")
    params: list = [username]
    if watch is not None:
        sql_ += f" AND w.name = {p}"
        params.append(watch)
    return [StatusChange(*t) for t in store.db.execute_sql(sql_ + " ORDER BY c.id", params).fetchall()]


def prune_stories(store: Store, older_than: float) -> int:
    """Forget stories last seen before ``older_than`` (epoch seconds); events are kept."""
    p = store.dialect.param
    with store.db.atomic():
        return store.db.execute_sql(f"DELETE FROM watch_story WHERE last_seen < {p}", (older_than,)).rowcount


__all__ = ["record", "status_of", "EventRow", "StoryRow", "StatusChange", "events", "history", "status_history",
           "prune_stories", "EVENT_COLUMNS", "EVENT_FIELDS", "event_row"]
