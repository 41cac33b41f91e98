"""Proxy health as workers share it through the ``proxy`` table: each worker writes what it
learned (state changes, success/failure counts as ``x = x + n``) and reads everyone's rows.

The engine's ``engine/proxysync.py`` decides what to write and what to adopt; the SQL is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from storycheck_tui.states import ProxyState
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Proxy
from storycheck_tui.store.queue import now


@dataclass(frozen=True)
class ProxyNews:
    """What one worker learned about one proxy since its last write."""

    proxy_id: int
    state: str  # a ProxyState
    fail_streak: int
    cooldown_until: float | None
    last_error: str | None  # already scrubbed of secrets
    last_latency_ms: float | None
    new_successes: int
    new_failures: int
    #: the state changed here: write it (else only the counts and latency)
    state_changed: bool
    #: the URL (credentials) the state is about: an ``auth_rejected`` is written only while
    #: the row still has it (new credentials imported meanwhile were not refused)
    url: str | None = None


def write_news(store: Store, news: list[ProxyNews]) -> tuple[float, set[int]]:
    """Write ``news`` in one transaction; returns (the database time it was stamped with, the
    ids whose state was written). A state is written only if the operator's ``disabled`` flag
    still agrees with it: an operator's disable or enable in between wins; and an
    ``auth_rejected`` only if the row's URL is still the one refused: new credentials imported
    in between win. A state not written still has its counts written."""
    db = store.db
    p = store.dialect.param
    written: set[int] = set()
    with db.atomic():
        ts = now(store)
        for n in news:
            if n.state_changed:
                refused = n.state == ProxyState.AUTH_REJECTED and n.url is not None
                cur = db.execute_sql(
                    f"UPDATE proxy SET state = {p}, fail_streak = {p}, cooldown_until = {p}, last_error = {p}, "
                    f"last_latency_ms = {p}, successes = successes + {p}, failures = failures + {p}, updated_at = {p} "
                    f"WHERE id = {p} AND disabled = {p}" + (f" AND url = {p}" if refused else ""),
                    (n.state, n.fail_streak, n.cooldown_until, n.last_error, n.last_latency_ms, n.new_successes,
                     n.new_failures, ts, n.proxy_id, n.state == ProxyState.DISABLED) + ((n.url,) if refused else ()))
                if cur.rowcount == 1:
                    written.add(n.proxy_id)
                    continue
            if n.new_successes or n.new_failures:
                db.execute_sql(
                    f"UPDATE proxy SET successes = successes + {p}, failures = failures + {p}, last_latency_ms = {p} "
                    f"WHERE id = {p}", (n.new_successes, n.new_failures, n.last_latency_ms, n.proxy_id))
    return ts, written


def proxy_rows(store: Store) -> list[Proxy]:
    """Every proxy row, in id order (a pool is hundreds of rows at most)."""
    return list(Proxy.select().order_by(Proxy.id))


__all__ = ["ProxyNews", "write_news", "proxy_rows"]
