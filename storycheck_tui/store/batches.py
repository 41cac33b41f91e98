"""Batch and proxy operations shared by the CLI, the console and the runner.

Every state change is one transaction and one log record; the functions return what
changed so callers can say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

from storycheck_tui import logs
from storycheck_tui.errors import StorycheckError
from storycheck_tui.store.db import Store
from storycheck_tui.states import OPEN, BatchState, JobState, ProxyState, sql, sql_list
from storycheck_tui.store.models import Batch, Job, Proxy, Watch

# Older names, kept while callers move to ``storycheck_tui.states``.
QUEUED, RUNNING, PAUSED, CANCELLED, FINISHED = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED,
                                                BatchState.CANCELLED, BatchState.FINISHED)
from storycheck_tui.store.queue import finish_batch_if_done, log_batches_finished, now
from storycheck_tui.store import spend


class NoSuchBatch(StorycheckError):
    pass


class AmbiguousBatch(StorycheckError):
    """A name given for a batch that several batches have."""


@dataclass(frozen=True)
class BatchView:
    """A batch row as the CLI and console show it."""

    id: int
    name: str
    state: str
    priority: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    total: int
    completed: int
    succeeded: int
    failed: int
    cancelled: int
    reason: str | None
    watch: str | None = None  # the watch this batch is a round of
    requests: int = 0  # sent to the story source by its ended checks
    max_requests: int | None = None  # its request budget, if any

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.completed - self.cancelled)

    @property
    def fraction(self) -> float:
        return (self.completed + self.cancelled) / self.total if self.total else 1.0


def _view(b: Batch, watch_names: dict[int, str] | None = None) -> BatchView:
    watch = None
    if b.watch_id is not None:
        if watch_names is None:
            w = Watch.get_or_none(Watch.id == b.watch_id)
            watch = w.name if w else None
        else:
            watch = watch_names.get(b.watch_id)
    return BatchView(b.id, b.name, b.state, b.priority, b.created_at, b.started_at, b.finished_at,
                     b.total_profiles, b.completed_profiles, b.successful_checks, b.failed_checks,
                     b.cancelled_profiles, b.state_reason, watch, b.requests, b.max_requests)


def create_batch(store: Store, name: str, usernames: list[str], *, priority: int = 0,
                 source_file: str | None = None, state: BatchState = BatchState.QUEUED,
                 max_requests: int | None = None) -> int:
    """Create a batch with one pending job per username, all or nothing; ``max_requests`` is
    its request budget (store/spend.py)."""
    db = store.db
    with db.atomic():
        ts = now(store)
        batch = Batch.create(name=name, state=state, priority=priority, source_file=source_file,
                             created_at=ts, total_profiles=len(usernames), max_requests=max_requests)
        store.dialect.insert_jobs(db, batch.id, usernames)
        if not usernames:
            batch.state = BatchState.FINISHED
            batch.finished_at = ts
            batch.save()
    logs.event(logging.INFO, logs.BATCH_CREATED, f"batch {batch.id} {name!r} created with {len(usernames)} profiles",
               batch_id=batch.id)
    flush_logs(store)
    return batch.id


def get_batch(store: Store, batch_id: int) -> BatchView:
    b = Batch.get_or_none(Batch.id == batch_id)
    if b is None:
        raise NoSuchBatch(f"no batch with id {batch_id}")
    return _view(b)


def find_batch(store: Store, ref: str) -> BatchView:
    """A batch by id or by exact name; a name that several batches share is an error listing
    their ids (a command must not act on one of them by guess)."""
    if ref.isdigit():
        return get_batch(store, int(ref))
    found = list(Batch.select().where(Batch.name == ref).order_by(Batch.id).limit(11))
    if not found:
        raise NoSuchBatch(f"no batch with id or name {ref!r}")
    if len(found) > 1:
        ids = ", ".join(str(b.id) for b in found[:10]) + (", …" if len(found) > 10 else "")
        raise AmbiguousBatch(f"{len(found) if len(found) <= 10 else 'more than 10'} batches are named {ref!r} "
                             f"(ids {ids}): give the id")
    return _view(found[0])


def list_batches(store: Store, states: tuple[str, ...] | None = None) -> list[BatchView]:
    q = Batch.select().order_by(Batch.id)
    if states:
        q = q.where(Batch.state.in_(states))
    names = {w.id: w.name for w in Watch.select(Watch.id, Watch.name)}
    return [_view(b, names) for b in q]


def _set_state(store: Store, batch_id: int, new: str, allowed: tuple[str, ...], reason: str | None) -> bool:
    p = store.dialect.param
    with store.db.atomic():
        cur = store.db.execute_sql(
            f"UPDATE batch SET state = {p}, state_reason = {p} WHERE id = {p} AND state IN ({', '.join([p] * len(allowed))})",
            (new, reason, batch_id, *allowed))
        return cur.rowcount == 1


def pause(store: Store, batch_id: int, reason: str | None = None, *, level: int = logging.INFO) -> bool:
    get_batch(store, batch_id)
    changed = _set_state(store, batch_id, BatchState.PAUSED, (BatchState.QUEUED, BatchState.RUNNING), reason)
    if changed:
        logs.event(level, logs.BATCH_PAUSED, f"batch {batch_id} paused" + (f": {reason}" if reason else ""),
                   batch_id=batch_id)
        flush_logs(store)
    return changed


def resume(store: Store, batch_id: int) -> bool:
    get_batch(store, batch_id)
    changed = _set_state(store, batch_id, BatchState.RUNNING, (BatchState.PAUSED,), None)
    if changed:
        lifted = spend.lift_spent_budget(store, batch_id)
        logs.event(logging.INFO, logs.BATCH_RESUMED, f"batch {batch_id} resumed"
                   + (" (its spent request budget is lifted)" if lifted else ""), batch_id=batch_id)
        flush_logs(store)
        with store.db.atomic():  # nothing left to check (e.g. its last jobs were reaped while paused)
            finished = finish_batch_if_done(store, batch_id, now(store))
        if finished:
            log_batches_finished([batch_id])
    return changed


def cancel(store: Store, batch_id: int) -> int:
    """Cancel pending jobs (running ones finish); returns how many were cancelled."""
    get_batch(store, batch_id)
    p = store.dialect.param
    with store.db.atomic():
        cur = store.db.execute_sql(
            f"UPDATE batch SET state = {sql(BatchState.CANCELLED)}, state_reason = 'cancelled by operator', "
            f"finished_at = {store.dialect.now} WHERE id = {p} AND state IN {sql_list(OPEN)}", (batch_id,))
        if cur.rowcount != 1:
            return 0
        n = store.db.execute_sql(
            f"UPDATE job SET state = {sql(JobState.CANCELLED)} WHERE batch_id = {p} AND state = {sql(JobState.PENDING)}",
            (batch_id,)).rowcount
        store.db.execute_sql(f"UPDATE batch SET cancelled_profiles = cancelled_profiles + {p} WHERE id = {p}",
                             (n, batch_id))
    logs.event(logging.WARNING, logs.BATCH_CANCELLED, f"batch {batch_id} cancelled: {n} pending profiles will not be checked",
               batch_id=batch_id)
    flush_logs(store)
    return n


def retry_failed(store: Store, batch_id: int) -> int:
    """Put failed jobs back to pending and take them out of the counters, in one transaction.

    A cancelled batch is refused: nothing would ever claim its jobs again.
    """
    if get_batch(store, batch_id).state == BatchState.CANCELLED:
        raise StorycheckError(f"batch {batch_id} is cancelled: its failed checks cannot be retried "
                              f"(create a new batch from them: storycheck export, then storycheck add)")
    p = store.dialect.param
    with store.db.atomic():
        n = store.db.execute_sql(
            f"UPDATE job SET state = {sql(JobState.PENDING)}, attempts = 0, run_after = 0, error_kind = NULL, "
            f"error_message = NULL, http_status = NULL, finished_at = NULL WHERE batch_id = {p} "
            f"AND state = {sql(JobState.FAILED)}", (batch_id,)).rowcount
        if n:
            store.db.execute_sql(
                f"UPDATE batch SET failed_checks = failed_checks - {p}, completed_profiles = completed_profiles - {p}, "
                f"finished_at = NULL, state = CASE WHEN state = {sql(BatchState.FINISHED)} "
                f"THEN {sql(BatchState.RUNNING)} ELSE state END "
                f"WHERE id = {p}", (n, n, batch_id))
    if n:
        logs.event(logging.INFO, logs.BATCH_RETRY, f"batch {batch_id}: {n} failed checks queued again", batch_id=batch_id)
        flush_logs(store)
    return n


def iter_jobs(store: Store, batch_id: int, chunk: int = 2000) -> Iterator[Job]:
    """All jobs of a batch in id order, read in chunks (constant memory)."""
    last = 0
    while True:
        rows = list(Job.select().where((Job.batch == batch_id) & (Job.id > last)).order_by(Job.id).limit(chunk))
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def summary(store: Store, batch_id: int) -> dict[str, dict[str, int]]:
    """Counts by state, by outcome and by error kind."""
    p = store.dialect.param
    out: dict[str, dict[str, int]] = {"state": {}, "outcome": {}, "error": {}}
    for col, key in (("state", "state"), ("outcome", "outcome"), ("error_kind", "error")):
        rows = store.db.execute_sql(
            f"SELECT {col}, COUNT(*) FROM job WHERE batch_id = {p} AND {col} IS NOT NULL GROUP BY {col}", (batch_id,))
        out[key] = {r[0]: int(r[1]) for r in rows.fetchall()}
    return out


# --- proxies -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProxiesAdded:
    """What :func:`add_proxies` did: proxies new to the pool, and refused ones given new credentials."""

    added: int = 0
    renewed: int = 0


def add_proxies(store: Store, specs) -> ProxiesAdded:
    """Insert proxies (ProxySpec) that are not there yet.

    A proxy whose credentials were refused (``auth_rejected``) takes those of a new URL with its
    label (scheme, user, host and port: only the password differs): it keeps its id and counters,
    becomes ``unchecked`` and running workers try it again within a second.
    """
    if not specs:
        return ProxiesAdded()
    renewed: list[str] = []
    with store.db.atomic():
        before = Proxy.select().count()
        rejected: dict[str, list[Proxy]] = {}
        for row in Proxy.select().where(Proxy.state == ProxyState.AUTH_REJECTED):
            rejected.setdefault(row.label, []).append(row)
        fresh = []
        for s in specs:
            rows = rejected.get(s.label)
            if rows and len(rows) == 1 and not Proxy.select().where(Proxy.url == s.url).exists():
                _renew(store, rows.pop().id, s.url)
                renewed.append(s.label)
            else:
                fresh.append({"url": s.url, "label": s.label})
        for i in range(0, len(fresh), 200):
            Proxy.insert_many(fresh[i:i + 200]).on_conflict_ignore().execute()
        added = Proxy.select().count() - before
    for label in renewed:
        logs.event(logging.INFO, logs.PROXY_ENABLED, f"proxy {label} has new credentials: it is tried again",
                   proxy=label)
    return ProxiesAdded(added, len(renewed))


def _renew(store: Store, proxy_id: int, url: str) -> None:
    p = store.dialect.param
    store.db.execute_sql(
        f"UPDATE proxy SET url = {p}, state = {p}, fail_streak = 0, cooldown_until = NULL, last_error = NULL, "
        f"updated_at = {store.dialect.now} WHERE id = {p}", (url, ProxyState.UNCHECKED, proxy_id))


def list_proxies(store: Store) -> list[Proxy]:
    return list(Proxy.select().order_by(Proxy.id))


def find_proxy(store: Store, ref: str) -> Proxy:
    q = Proxy.select()
    p = q.where(Proxy.id == int(ref)).first() if ref.isdigit() else q.where(Proxy.label == ref).first()
    if p is None:
        raise StorycheckError(f"no proxy with id or label {ref!r} (see: storycheck proxies list)")
    return p


def set_proxy_disabled(store: Store, proxy_id: int, disabled: bool) -> bool:
    """The operator's disable, or enable (which also gives a proxy whose credentials were
    refused another try); False if nothing changed."""
    p = store.dialect.param
    was = f"disabled = {p}" if disabled else f"(disabled = {p} OR state = {sql(ProxyState.AUTH_REJECTED)})"
    with store.db.atomic():
        changed = store.db.execute_sql(
            f"UPDATE proxy SET disabled = {p}, state = {p}, fail_streak = 0, cooldown_until = NULL, "
            f"updated_at = {store.dialect.now} WHERE id = {p} AND {was}",
            (disabled, ProxyState.DISABLED if disabled else ProxyState.UNCHECKED, proxy_id, not disabled)).rowcount == 1
    if changed:
        label = Proxy.get_by_id(proxy_id).label
        logs.event(logging.WARNING if disabled else logging.INFO,
                   logs.PROXY_DISABLED if disabled else logs.PROXY_ENABLED,
                   f"proxy {label} {'disabled' if disabled else 'enabled'} by operator", proxy=label)
    return changed


def remove_proxy(store: Store, proxy_id: int) -> bool:
    """Delete a proxy from the pool (workers drop it at their next proxy sync); False if it was
    already gone."""
    p = store.dialect.param
    row = Proxy.get_or_none(Proxy.id == proxy_id)
    with store.db.atomic():
        gone = store.db.execute_sql(f"DELETE FROM proxy WHERE id = {p}", (proxy_id,)).rowcount == 1
    if gone and row is not None:
        logs.event(logging.WARNING, logs.PROXY_REMOVED, f"proxy {row.label} removed by operator", proxy=row.label)
    return gone


def request_validation(store: Store, proxy_id: int) -> float | None:
    """Ask every worker to validate the proxy now; the request's stamp, None if no such proxy."""
    p = store.dialect.param
    with store.db.atomic():
        store.db.execute_sql(f"UPDATE proxy SET validate_requested_at = {store.dialect.now} WHERE id = {p}",
                             (proxy_id,))
        row = store.db.execute_sql(f"SELECT validate_requested_at FROM proxy WHERE id = {p}", (proxy_id,)).fetchone()
    return None if row is None else row[0]


def flush_logs(store: Store) -> None:
    """Store the batch records queued in the store's log sink now (used outside a running
    engine, e.g. by CLI commands); nothing without a sink."""
    if store.log_sink is None:
        return
    from storycheck_tui.store.logrows import store_logs

    store_logs(store, store.log_sink.drain())


__all__ = ["BatchView", "NoSuchBatch", "AmbiguousBatch", "create_batch", "get_batch", "find_batch", "list_batches", "pause", "resume",
           "cancel", "retry_failed", "iter_jobs", "summary", "add_proxies", "list_proxies", "find_proxy",
           "set_proxy_disabled", "remove_proxy", "flush_logs", "RUNNING", "PAUSED", "CANCELLED", "FINISHED", "QUEUED"]
