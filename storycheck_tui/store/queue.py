"""The job queue lives in the database: claim, lease, fenced finish, release, reap.

Invariants kept by every function here (and tested under concurrency):

* a job is held by at most one lease owner at a time (claims are one statement);
* a finish changes a job only if the finisher still holds the lease it claimed
  (``lease_owner`` and ``lease_seq`` match); otherwise it changes nothing;
* batch counters change in the same transaction as the job rows they count, as
  ``x = x + n``: ``completed == succeeded + failed`` job rows, always.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from storycheck_tui import logs
from storycheck_tui.logs import LogEntry, clean
from storycheck_tui.sources.base import Outcome
from storycheck_tui.store.db import Store
from storycheck_tui.states import (
    CLAIMABLE, OPEN, BatchState, ErrorKind, JobState, OutcomeKind, WorkerState, sql, sql_list,
)
from storycheck_tui.store.models import BatchLog

# Older names, kept while callers move to ``storycheck_tui.states``.
PENDING, JOB_RUNNING, SUCCEEDED, FAILED = JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED


@dataclass(frozen=True)
class Claimed:
    """A job this process holds a lease on."""

    id: int
    batch_id: int
    username: str
    attempts: int
    lease_seq: int


@dataclass
class JobResult:
    """What a worker thread learned about one claimed job."""

    job: Claimed
    state: JobState  # SUCCEEDED or FAILED
    outcome: Outcome | None = None
    error_kind: str | None = None
    error_message: str | None = None
    proxy: str | None = None  # masked label
    http_status: int | None = None
    latency_ms: float | None = None
    tries: int = 0
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == JobState.SUCCEEDED


@dataclass
class FinishReport:
    applied: list[JobResult] = field(default_factory=list)
    stale: list[JobResult] = field(default_factory=list)  # lease lost: result dropped
    finished_batches: list[int] = field(default_factory=list)
    #: result_message() of each applied result, in the same order (the writer logs them)
    messages: list[tuple[str, str, str]] = field(default_factory=list)


def now(store: Store) -> float:
    """The database clock, epoch seconds."""
    return float(store.db.execute_sql(f"SELECT {store.dialect.now}").fetchone()[0])


def claim(store: Store, owner: str, lease_seconds: float, limit: int, batch_ids: Iterable[int] | None = None) -> list[Claimed]:
    """Claim up to ``limit`` pending jobs of claimable batches, highest priority first."""
    db = store.db
    d = store.dialect
    out: list[Claimed] = []
    with db.atomic():
        query = f"SELECT id FROM batch WHERE state IN {sql_list(CLAIMABLE)}"
        params: list = []
        if batch_ids is not None:
            ids = list(batch_ids)
            if not ids:
                return []
            query += " AND id IN (" + ", ".join([d.param] * len(ids)) + ")"
            params = ids
        query += " ORDER BY priority DESC, id"
        batches = [r[0] for r in db.execute_sql(query, params).fetchall()]
        for batch_id in batches:
            want = limit - len(out)
            if want <= 0:
                break
            # The batch row before any job row, as cancel() does: the first claim of a queued
            # batch and a cancel then wait for each other instead of deadlocking.
            db.execute_sql(
                f"UPDATE batch SET state = {sql(BatchState.RUNNING)}, started_at = {d.now} WHERE id = {d.param} "
                f"AND state = {sql(BatchState.QUEUED)}",
                (batch_id,))
            rows = db.execute_sql(d.claim_sql(), d.claim_params(owner, lease_seconds, batch_id, want)).fetchall()
            out.extend(Claimed(int(r[0]), int(r[1]), r[2], int(r[3]), int(r[4])) for r in rows)
    out.sort(key=lambda c: c.id)
    return out


_FENCE = "id = {p} AND state = " + sql(JobState.RUNNING) + " AND lease_owner = {p} AND lease_seq = {p}"


def _log_row(created: float, level: str, event: str, r: JobResult, message: str) -> tuple:
    """The batch_log row (in ``_LOG_COLUMNS`` order) that states a job's final result."""
    if r.ok:  # the common case, built by hand: json.dumps was a tenth of a group commit
        details = (f'{{"attempt": {int(r.job.attempts)}, "tries": {int(r.tries)}, '
                   f'"status": {_json_num(r.http_status)}, "latency_ms": {_json_num(r.latency_ms)}}}')
    else:
        d = {"attempt": r.job.attempts, "tries": r.tries, "status": r.http_status, "latency_ms": r.latency_ms,
             "error_kind": r.error_kind}
        if r.traceback:
            d["traceback"] = r.traceback
        details = json.dumps(d, ensure_ascii=False)
    return (created, level, event, r.job.batch_id, r.job.id, r.job.username, r.proxy,
            clean(message), details)  # one line, like every record


def _json_num(value: float | int | None) -> str:
    if value is None or value != value or value in (math.inf, -math.inf):  # NaN and infinities: not JSON
        return "null"
    return repr(value) if isinstance(value, float) else str(int(value))


def result_message(r: JobResult) -> tuple[str, str, str]:
    """(level, event, message) of the record that states a job's final result."""
    if r.ok and r.outcome is not None:
        o = r.outcome
        what = f"{o.story_count} active stor{'y' if o.story_count == 1 else 'ies'}" if o.kind == OutcomeKind.HAS_STORIES else o.kind.replace("_", " ")
        return "INFO", "STORY_CHECK_SUCCESS", f"{r.job.username}: {what} (HTTP {r.http_status}, {r.latency_ms or 0:.0f} ms via {r.proxy or 'direct'})"
    status = f"HTTP {r.http_status}" if r.http_status else "no HTTP status"
    return "ERROR", "CHECK_FAILED", (
        f"{r.job.username}: check failed after {r.tries} tr{'y' if r.tries == 1 else 'ies'}: {r.error_kind}: "
        f"{r.error_message} ({status}, via {r.proxy or 'direct'})")


def finish(store: Store, owner: str, results: list[JobResult], extra_logs: list[LogEntry] = ()) -> FinishReport:
    """Record results in ONE transaction, fenced; counters, stories and log rows with them."""
    report = FinishReport()
    db = store.db
    d = store.dialect
    p = d.param
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # batch -> [succeeded, failed]
    stories: list[tuple] = []
    logs: list[tuple] = []
    with db.atomic():
        ts = now(store)
        # Rows are locked in id order (jobs, then batches), like the reaper does: a late
        # finish and a reaper on the same jobs then wait for each other, never deadlock.
        ordered, seen = [], set()
        for r in sorted(results, key=lambda r: r.job.id):
            if r.job.id in seen:  # a second result for one job: the first one ends it
                report.stale.append(r)
                continue
            seen.add(r.job.id)
            ordered.append(r)
        applied = d.finish_jobs(db, [
            (r.job.id, r.job.lease_seq, owner, r.state, r.outcome.kind if r.outcome else None,
             r.outcome.story_count if r.outcome else None, r.outcome.latest_story_at if r.outcome else None,
             r.error_kind, r.error_message, r.proxy, r.http_status, r.latency_ms, r.tries, ts) for r in ordered])
        for r in ordered:
            o = r.outcome
            if r.job.id not in applied:
                report.stale.append(r)
                continue
            report.applied.append(r)
            deltas[r.job.batch_id][0 if r.ok else 1] += 1
            level, event, message = result_message(r)
            report.messages.append((level, event, message))
            logs.append(_log_row(ts, level, event, r, message))
            if o is not None:
                for s in o.stories:  # in _STORY_COLUMNS order
                    stories.append((r.job.username, s.story_id, s.taken_at, s.expires_at, s.media_type, ts,
                                    r.job.batch_id))
        d.insert_rows(db, "story", _STORY_COLUMNS, stories, ignore_conflicts=True)
        for e in extra_logs:
            row = entry_row(e)
            logs.append(tuple(row[c] for c in _LOG_COLUMNS))
        d.insert_rows(db, "batch_log", _LOG_COLUMNS, logs)
        for batch_id, (ok, failed) in sorted(deltas.items()):  # after the result rows: their BATCH_FINISHED last
            db.execute_sql(
                f"UPDATE batch SET completed_profiles = completed_profiles + {p}, "
                f"successful_checks = successful_checks + {p}, failed_checks = failed_checks + {p} WHERE id = {p}",
                (ok + failed, ok, failed, batch_id))
            if _finish_batch_if_done(store, batch_id, ts):
                report.finished_batches.append(batch_id)
    return report


_STORY_COLUMNS = ("username", "story_id", "taken_at", "expires_at", "media_type", "first_seen_at", "batch")
_LOG_COLUMNS = ("created", "level", "event", "batch", "job", "username", "proxy", "message", "details")


def entry_row(e: LogEntry) -> dict:
    details = dict(e.details or {})
    for key in ("attempt", "status", "error_type"):
        val = getattr(e, key)
        if val is not None:
            details[key] = val
    if e.traceback:
        details["traceback"] = e.traceback
    return {"created": e.created, "level": e.level, "event": e.event, "batch": e.batch_id, "job": e.job_id,
            "username": e.username, "proxy": e.proxy, "message": e.message,
            "details": json.dumps(details, ensure_ascii=False) if details else None}


def store_logs(store: Store, entries: list[LogEntry]) -> None:
    if not entries:
        return
    with store.db.atomic():
        for chunk in _chunks([entry_row(e) for e in entries], 200):
            BatchLog.insert_many(chunk).execute()


def _finish_batch_if_done(store: Store, batch_id: int, ts: float) -> bool:
    """Mark the batch finished if nothing is left, with its BATCH_FINISHED row in the same
    transaction (whatever finished it: a result, the reaper, a resume). After the commit
    the caller logs the record with :func:`log_batches_finished`."""
    p = store.dialect.param
    cur = store.db.execute_sql(
        f"UPDATE batch SET state = {sql(BatchState.FINISHED)}, finished_at = {p} WHERE id = {p} "
        f"AND state IN {sql_list(OPEN)} "
        f"AND completed_profiles + cancelled_profiles >= total_profiles",
        (ts, batch_id))
    if cur.rowcount != 1:
        return False
    store.dialect.insert_rows(store.db, "batch_log", _LOG_COLUMNS, [
        (ts, "INFO", logs.BATCH_FINISHED, batch_id, None, None, None, _finished_message(batch_id), None)])
    return True


def _finished_message(batch_id: int) -> str:
    return f"batch {batch_id} finished"


def log_batches_finished(batch_ids: Iterable[int]) -> None:
    """The log records (file, console) of batches :func:`_finish_batch_if_done` finished; their
    rows are already in batch_log, committed with the state change."""
    for batch_id in batch_ids:
        logs.event(logging.INFO, logs.BATCH_FINISHED, _finished_message(batch_id), batch_id=batch_id, persisted=True)


def release(store: Store, owner: str, jobs: list[Claimed], *, delay: float = 0.0) -> int:
    """Give jobs back to the queue without spending an attempt (pause, no proxy, shutdown)."""
    if not jobs:
        return 0
    p = store.dialect.param
    fence = _FENCE.format(p=p)
    n = 0
    with store.db.atomic():
        for j in sorted(jobs, key=lambda j: j.id):  # id order, as in finish and reap
            cur = store.db.execute_sql(
                f"UPDATE job SET state = {sql(JobState.PENDING)}, attempts = attempts - 1, lease_owner = NULL, lease_until = NULL, "
                f"run_after = {store.dialect.now} + {p} WHERE {fence}",
                (delay, j.id, owner, j.lease_seq))
            n += cur.rowcount
        _cancel_pending_of_cancelled(store, {j.batch_id for j in jobs})
    return n


def _cancel_pending_of_cancelled(store: Store, batch_ids: Iterable[int]) -> None:
    """Jobs handed back (released or reaped) to a batch cancelled meanwhile are cancelled too:
    nothing claims a cancelled batch's jobs, so left pending they would never end."""
    p = store.dialect.param
    for batch_id in batch_ids:
        n = store.db.execute_sql(
            f"UPDATE job SET state = {sql(JobState.CANCELLED)} WHERE batch_id = {p} AND state = {sql(JobState.PENDING)} "
            f"AND EXISTS (SELECT 1 FROM batch b WHERE b.id = {p} AND b.state = {sql(BatchState.CANCELLED)})",
            (batch_id, batch_id)).rowcount
        if n:
            store.db.execute_sql(
                f"UPDATE batch SET cancelled_profiles = cancelled_profiles + {p} WHERE id = {p}", (n, batch_id))


def extend_leases(store: Store, owner: str, lease_seconds: float) -> int:
    d = store.dialect
    with store.db.atomic():
        return store.db.execute_sql(d.extend_leases_sql(), d.extend_leases_params(owner, lease_seconds)).rowcount


@dataclass(frozen=True)
class Reaped:
    job_id: int
    batch_id: int
    username: str
    owner: str
    failed: bool  # attempts spent: the job failed instead of going back to pending


def reap_expired(store: Store, max_claims: int, limit: int = 1000) -> list[Reaped]:
    """Expired leases go back to pending, or fail when their attempts are spent.

    Each reaped job's LEASE_EXPIRED row (and a BATCH_FINISHED row for a batch this ends) is
    written in the same transaction; their records are logged after the commit, in order."""
    db = store.db
    d = store.dialect
    p = d.param
    out: list[Reaped] = []
    finished: list[int] = []
    with db.atomic():
        ts = now(store)
        rows = db.execute_sql(
            f"SELECT id, batch_id, username, attempts, lease_owner, lease_seq FROM job "
            f"WHERE state = {sql(JobState.RUNNING)} AND lease_until < {p} ORDER BY id LIMIT {p}", (ts, limit)).fetchall()
        failed_by_batch: dict[int, int] = defaultdict(int)
        for job_id, batch_id, username, attempts, owner, seq in rows:
            give_up = attempts >= max_claims
            if give_up:
                cur = db.execute_sql(
                    f"UPDATE job SET state = {sql(JobState.FAILED)}, error_kind = {sql(ErrorKind.LEASE_EXPIRED)}, "
                    f"error_message = {p}, finished_at = {p}, lease_owner = NULL, lease_until = NULL "
                    f"WHERE {_FENCE.format(p=p)}",
                    (f"worker {owner} stopped without finishing it, {attempts} times", ts, job_id, owner, seq))
            else:
                cur = db.execute_sql(
                    f"UPDATE job SET state = {sql(JobState.PENDING)}, lease_owner = NULL, lease_until = NULL, run_after = {p} "
                    f"WHERE {_FENCE.format(p=p)}", (ts, job_id, owner, seq))
            if cur.rowcount == 1:
                out.append(Reaped(job_id, batch_id, username, owner, give_up))
                if give_up:
                    failed_by_batch[batch_id] += 1
        _cancel_pending_of_cancelled(store, {r.batch_id for r in out if not r.failed})
        d.insert_rows(db, "batch_log", _LOG_COLUMNS, [
            (ts, "WARNING", logs.LEASE_EXPIRED, r.batch_id, r.job_id, r.username, None, clean(_reaped_message(r)), None)
            for r in out])
        for batch_id, n in failed_by_batch.items():
            db.execute_sql(
                f"UPDATE batch SET completed_profiles = completed_profiles + {p}, failed_checks = failed_checks + {p} "
                f"WHERE id = {p}", (n, n, batch_id))
            if _finish_batch_if_done(store, batch_id, ts):
                finished.append(batch_id)
    for r in out:
        logs.event(logging.WARNING, logs.LEASE_EXPIRED, _reaped_message(r), persisted=True,
                   batch_id=r.batch_id, job_id=r.job_id, username=r.username)
    log_batches_finished(finished)
    return out


def _reaped_message(r: Reaped) -> str:
    return (f"{r.username}: lease of worker {r.owner} expired; "
            + ("attempts spent, job failed" if r.failed else "job back in the queue"))


# --- workers -------------------------------------------------------------------------------

def new_worker_id() -> str:
    """``host:pid:NNNNNNrrrr``: NNNNNN names this process table (see :func:`_node`), rrrr is random."""
    return f"{socket.gethostname()}:{os.getpid()}:{_node()}{os.urandom(2).hex()}"


@functools.lru_cache(maxsize=1)
def _node() -> str:
    """Where a pid means what it means here: this boot of this kernel, this pid namespace.

    Two machines (cloned VMs, containers on the host network) may share a hostname; only a
    worker with the same node token is one whose pid can be checked from here.
    """
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        try:
            with open(path) as fh:
                parts.append(fh.read().strip())
            break
        except OSError:
            continue
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:6]


def _is_local(worker_id: str) -> bool:
    parts = worker_id.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    # An id without a node token (``host:pid:rrrrrr``, older storycheck) is judged by hostname.
    return len(parts[2]) == 6 or parts[2][:6] == _node()


def register_worker(store: Store, worker_id: str, threads: int) -> None:
    host, pid = worker_id.split(":")[0], int(worker_id.split(":")[1])
    p = store.dialect.param
    with store.db.atomic():
        ts = now(store)
        store.db.execute_sql(
            f"INSERT INTO worker (id, host, pid, threads, started_at, heartbeat_at, checks, rate, state) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, 0, 0, {sql(WorkerState.RUNNING)})",
            (worker_id, host, pid, threads, ts, ts))


def heartbeat(store: Store, worker_id: str, *, checks: int, rate: float, lease_seconds: float,
              state: WorkerState = WorkerState.RUNNING) -> None:
    """Say this worker is alive and extend the leases it holds, in one transaction."""
    d = store.dialect
    p = d.param
    with store.db.atomic():
        store.db.execute_sql(
            f"UPDATE worker SET heartbeat_at = {d.now}, checks = {p}, rate = {p}, state = {p} WHERE id = {p}",
            (checks, rate, state, worker_id))
        store.db.execute_sql(d.extend_leases_sql(), d.extend_leases_params(worker_id, lease_seconds))


def stop_worker(store: Store, worker_id: str) -> None:
    p = store.dialect.param
    with store.db.atomic():
        store.db.execute_sql(f"UPDATE worker SET state = {sql(WorkerState.STOPPED)}, heartbeat_at = {store.dialect.now} WHERE id = {p}",
                             (worker_id,))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expire_dead_local_workers(store: Store, me: str) -> list[str]:
    """Workers of this machine (same process table) whose process is gone: expire their
    leases now, no waiting. A worker elsewhere, even on a machine with the same hostname, is
    never judged by a pid here: its jobs come back when its leases expire.
    """
    host = socket.gethostname()
    d = store.dialect
    p = d.param
    rows = store.db.execute_sql(
        f"SELECT id, pid FROM worker WHERE host = {p} AND state != {sql(WorkerState.STOPPED)} AND id != {p}", (host, me)).fetchall()
    dead = [wid for wid, pid in rows if _is_local(wid) and not pid_alive(int(pid))]
    if dead:
        with store.db.atomic():
            for wid in dead:
                store.db.execute_sql(d.extend_leases_sql(), d.extend_leases_params(wid, -1.0))  # expired now
                store.db.execute_sql(f"UPDATE worker SET state = {sql(WorkerState.STOPPED)} WHERE id = {p}", (wid,))
    return dead


def mark_lost_workers(store: Store, silent_for: float) -> int:
    """Workers silent for ``silent_for`` seconds (a lease length) are 'lost': shown as such, not as running."""
    d = store.dialect
    with store.db.atomic():
        return store.db.execute_sql(
            f"UPDATE worker SET state = {sql(WorkerState.LOST)} "
            f"WHERE state IN {sql_list((WorkerState.RUNNING, WorkerState.STOPPING))} "
            f"AND heartbeat_at < {d.now} - {d.param}", (silent_for,)).rowcount


#: a worker row is listed while alive, and for this long after its last heartbeat
WORKER_SHOWN_FOR = 3600.0


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


__all__ = [
    "Claimed", "JobResult", "FinishReport", "Reaped", "claim", "finish", "release", "extend_leases",
    "reap_expired", "mark_lost_workers", "WORKER_SHOWN_FOR", "register_worker", "heartbeat", "stop_worker", "expire_dead_local_workers", "new_worker_id",
    "now", "store_logs", "entry_row", "result_message", "PENDING", "JOB_RUNNING", "FAILED", "SUCCEEDED",
]
