"""Delivering the event outbox: claim due events, record each try.

At-least-once: an event is claimed with a lease (``lease_until``) before its POST, so two
deliverers do not post it at the same moment; a deliverer killed mid-POST leaves the lease
to expire and the event is posted again, with the same ``webhook-id``. A failed try is
retried with a growing delay until :data:`GIVE_UP_AFTER` seconds after the event, then the
event is marked failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from storycheck_tui.masking import one_line
from storycheck_tui.states import DeliveryState, sql
from storycheck_tui.store.db import Store
from storycheck_tui.store.history import EVENT_FIELDS, EventRow, event_row
from storycheck_tui.store.queue import now

#: an event not delivered this long after it happened is marked failed
GIVE_UP_AFTER = 24 * 3600.0
#: how long a claimed event is a deliverer's before another may post it (a deliverer killed
#: mid-POST delays its events by this much at most)
DELIVERY_LEASE = 20.0


@dataclass(frozen=True)
class Delivery:
    event: EventRow
    url: str | None  # the watch's webhook now (None: removed since)


def claim_due(store: Store, limit: int = 20, lease: float = DELIVERY_LEASE) -> list[Delivery]:
    """Claim up to ``limit`` pending events whose next try is due."""
    db, p = store.db, store.dialect.param
    pending = sql(DeliveryState.PENDING)
    out = []
    with db.atomic():
        ts = now(store)
        rows = db.execute_sql(
            f"SELECT {', '.join('e.' + f.strip() for f in EVENT_FIELDS.split(','))}, w.webhook FROM event e "
            f"LEFT JOIN watch w ON w.id = e.watch_id WHERE e.delivery = {pending} AND e.next_try_at <= {p} "
            f"AND (e.lease_until IS NULL OR e.lease_until < {p}) ORDER BY e.next_try_at, e.id LIMIT {p}",
            (ts, ts, limit)).fetchall()
        for t in rows:
            n = db.execute_sql(f"UPDATE event SET lease_until = {p} WHERE id = {p} AND delivery = {pending} "
                               f"AND (lease_until IS NULL OR lease_until < {p})", (ts + lease, t[0], ts)).rowcount
            if n == 1:
                out.append(Delivery(event_row(t[:-1]), t[-1]))
    return out


def release(store: Store, event_ids: list[int]) -> None:
    """Give back claimed events not posted (the deliverer is stopping or its lease runs short)."""
    if event_ids:
        p = store.dialect.param
        with store.db.atomic():
            store.db.execute_sql(f"UPDATE event SET lease_until = NULL WHERE id IN ({', '.join([p] * len(event_ids))})",
                                 event_ids)


def delivered(store: Store, event_id: int) -> None:
    p = store.dialect.param
    with store.db.atomic():
        store.db.execute_sql(
            f"UPDATE event SET delivery = {sql(DeliveryState.DELIVERED)}, delivered_at = {store.dialect.now}, "
            f"attempts = attempts + 1, lease_until = NULL, last_error = NULL WHERE id = {p}", (event_id,))


def backoff(attempts: int) -> float:
    """Seconds before try ``attempts + 1``: 2, 4, 8 … up to an hour."""
    return min(3600.0, 2.0 ** max(1, attempts))


def failed_try(store: Store, event_id: int, error: str) -> str:
    """Record a failed try: retry later, or mark the event failed once it is too old. Returns
    the new delivery state."""
    db, p = store.db, store.dialect.param
    with db.atomic():
        ts = now(store)
        row = db.execute_sql(f"SELECT attempts, at FROM event WHERE id = {p}", (event_id,)).fetchone()
        if row is None:
            return DeliveryState.FAILED
        attempts, at = int(row[0]) + 1, float(row[1])
        nxt = ts + backoff(attempts)
        state = DeliveryState.FAILED if nxt - at > GIVE_UP_AFTER else DeliveryState.PENDING
        db.execute_sql(f"UPDATE event SET delivery = {p}, attempts = {p}, next_try_at = {p}, lease_until = NULL, "
                       f"last_error = {p} WHERE id = {p}", (state, attempts, nxt, one_line(error, 300), event_id))
    return state


def body(event: EventRow) -> bytes:
    """The JSON body POSTed for an event (the same on every try)."""
    from storycheck_tui.exports import iso

    payload = event.as_json()
    payload.pop("delivery", None)
    payload["at"], payload["taken_at"] = iso(event.at), iso(event.taken_at) or None
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def pending_count(store: Store) -> int:
    return int(store.db.execute_sql(
        f"SELECT COUNT(*) FROM event WHERE delivery = {sql(DeliveryState.PENDING)}").fetchone()[0])


__all__ = ["Delivery", "claim_due", "release", "delivered", "failed_try", "backoff", "body", "pending_count", "GIVE_UP_AFTER",
           "DELIVERY_LEASE"]
