"""The job queue lives in the database: claim, lease, fenced finish, release, reap.

Invariants kept by every function here (and tested under concurrency):

* a job is held by at most one lease owner at a time (claims are one statement);
* a finish changes a job only if the finisher still holds the lease it claimed
  (``lease_owner`` and ``lease_seq`` match); otherwise it changes nothing;
* batch counters change in the same transaction as the job rows they count, as
  ``x = x + n``: ``completed == succeeded + failed`` job rows, always.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from storycheck_tui import logs
from storycheck_tui.logs import LogEntry, clean
from storycheck_tui.result_text import result_message
from storycheck_tui.sources.base import Outcome
from storycheck_tui.store import history
from storycheck_tui.store.db import Store
from storycheck_tui.states import CLAIMABLE, OPEN, BatchState, ErrorKind, JobState, sql, sql_list
from storycheck_tui.store.logrows import LOG_COLUMNS, entry_tuple, result_row
from storycheck_tui.store import spend

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
    #: of ``tries``, those of earlier claims that handed the job back: already counted as spent
    carried: int = 0
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == JobState.SUCCEEDED


@dataclass
class FinishReport:
    applied: list[JobResult] = field(default_factory=list)
    stale: list[JobResult] = field(default_factory=list)  # lease lost: result dropped
    finished_batches: list[int] = field(default_factory=list)
    #: (batch id, reason) of batches paused because their request budget is spent (store/spend.py)
    paused_batches: list[tuple[int, str]] = field(default_factory=list)
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


def open_jobs(store: Store, batch_ids: Iterable[int] | None = None) -> int:
    """Jobs still pending or running in claimable batches (of ``batch_ids`` if given): 0 means
    nothing is left to claim or to wait for."""
    d = store.dialect
    query = (f"SELECT COUNT(*) FROM job j JOIN batch b ON b.id = j.batch_id "
             f"WHERE j.state IN {sql_list((JobState.PENDING, JobState.RUNNING))} AND b.state IN {sql_list(CLAIMABLE)}")
    params: list = []
    if batch_ids is not None:
        params = list(batch_ids)
        if not params:
            return 0
        query += " AND b.id IN (" + ", ".join([d.param] * len(params)) + ")"
    return int(store.db.execute_sql(query, params).fetchone()[0])


_FENCE = "id = {p} AND state = " + sql(JobState.RUNNING) + " AND lease_owner = {p} AND lease_seq = {p}"


def finish(store: Store, owner: str, results: list[JobResult], extra_logs: list[LogEntry] = ()) -> FinishReport:
    """Record results in ONE transaction, fenced; counters, stories and log rows with them."""
    report = FinishReport()
    db = store.db
    d = store.dialect
    p = d.param
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # batch -> [succeeded, failed]
    stories: list[tuple] = []
    log_rows: list[tuple] = []
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
            log_rows.append(result_row(ts, level, event, r, message))
            if o is not None:
                for s in o.stories:  # in STORY_COLUMNS order
                    stories.append((r.job.username, s.story_id, s.taken_at, s.expires_at, s.media_type, ts,
                                    r.job.batch_id))
        d.insert_rows(db, "story", STORY_COLUMNS, stories, ignore_conflicts=True)
        history.record(store, ts, report.applied)  # watch rounds: history and events, same transaction
        log_rows.extend(entry_tuple(e) for e in extra_logs)
        d.insert_rows(db, "batch_log", LOG_COLUMNS, log_rows)
        for batch_id, (ok, failed) in sorted(deltas.items()):  # after the result rows: their BATCH_FINISHED last
            db.execute_sql(
                f"UPDATE batch SET completed_profiles = completed_profiles + {p}, "
                f"successful_checks = successful_checks + {p}, failed_checks = failed_checks + {p} WHERE id = {p}",
                (ok + failed, ok, failed, batch_id))
            if finish_batch_if_done(store, batch_id, ts):
                report.finished_batches.append(batch_id)
        report.paused_batches = spend.record(store, report.applied, ts)
    return report


STORY_COLUMNS = ("username", "story_id", "taken_at", "expires_at", "media_type", "first_seen_at", "batch")



def finish_batch_if_done(store: Store, batch_id: int, ts: float) -> bool:
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
    store.dialect.insert_rows(store.db, "batch_log", LOG_COLUMNS, [
        (ts, "INFO", logs.BATCH_FINISHED, batch_id, None, None, None, _finished_message(batch_id), None)])
    return True


def _finished_message(batch_id: int) -> str:
    return f"batch {batch_id} finished"


def log_batches_finished(batch_ids: Iterable[int]) -> None:
    """The log records (file, console) of batches :func:`finish_batch_if_done` finished; their
    rows are already in batch_log, committed with the state change."""
    for batch_id in batch_ids:
        logs.event(logging.INFO, logs.BATCH_FINISHED, _finished_message(batch_id), batch_id=batch_id, persisted=True)


def release(store: Store, owner: str, jobs: list[Claimed], *, delay: float = 0.0,
            sent: dict[int, tuple[str, int]] | None = None) -> int:
    """Give jobs back to the queue without spending an attempt (pause, no proxy, shutdown).

    ``sent`` maps a job id to ``(reason, requests)``: the requests its claim sent before it
    handed the job back, added to the batch's spend in the same transaction (a job this
    worker no longer holds is not counted, as a stale result is not); a batch whose request
    budget that spends is paused with them, and logged after the commit. Returns the jobs
    released."""
    if not jobs:
        return 0
    p = store.dialect.param
    fence = _FENCE.format(p=p)
    n = 0
    spent: list[tuple[int, str, int]] = []
    with store.db.atomic():
        for j in sorted(jobs, key=lambda j: j.id):  # id order, as in finish and reap
            cur = store.db.execute_sql(
                f"UPDATE job SET state = {sql(JobState.PENDING)}, attempts = attempts - 1, lease_owner = NULL, lease_until = NULL, "
                f"run_after = {store.dialect.now} + {p} WHERE {fence}",
                (delay, j.id, owner, j.lease_seq))
            n += cur.rowcount
            if cur.rowcount and sent and j.id in sent:
                reason, requests = sent[j.id]
                spent.append((j.batch_id, reason, requests))
        _cancel_pending_of_cancelled(store, {j.batch_id for j in jobs})
        paused = spend.add(store, spent, now(store)) if spent else []
    spend.log_budget_pauses(paused)
    return n


def mark_started(store: Store, owner: str, jobs: list[Claimed]) -> int:
    """Record that checks of these claims have started (fenced: only while ``owner`` holds
    them): from now on a death of ``owner`` counts against their ``max_claims``."""
    if not jobs:
        return 0
    p = store.dialect.param
    query = f"UPDATE job SET check_started_at = {store.dialect.now} WHERE {_FENCE.format(p=p)}"
    n = 0
    with store.db.atomic():
        for j in sorted(jobs, key=lambda j: j.id):  # id order, as in finish and reap
            n += store.db.execute_sql(query, (j.id, owner, j.lease_seq)).rowcount
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
    started: bool = True  # its check had started: the death counted against max_claims


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
            f"SELECT id, batch_id, username, attempts, lease_owner, lease_seq, check_started_at FROM job "
            f"WHERE state = {sql(JobState.RUNNING)} AND lease_until < {p} ORDER BY id LIMIT {p}", (ts, limit)).fetchall()
        failed_by_batch: dict[int, int] = defaultdict(int)
        for job_id, batch_id, username, attempts, owner, seq, check_started in rows:
            # A death counts only against a check that was in flight: a job still waiting in the
            # dead worker's inbox goes back with its attempt given back, however often that happens.
            started = check_started is not None
            give_up = started and attempts >= max_claims
            if give_up:
                cur = db.execute_sql(
                    f"UPDATE job SET state = {sql(JobState.FAILED)}, error_kind = {sql(ErrorKind.LEASE_EXPIRED)}, "
                    f"error_message = {p}, finished_at = {p}, lease_owner = NULL, lease_until = NULL "
                    f"WHERE {_FENCE.format(p=p)}",
                    (f"worker {owner} stopped without finishing it, {attempts} times", ts, job_id, owner, seq))
            else:
                cur = db.execute_sql(
                    f"UPDATE job SET state = {sql(JobState.PENDING)}, attempts = attempts - {p}, lease_owner = NULL, "
                    f"lease_until = NULL, run_after = {p} WHERE {_FENCE.format(p=p)}",
                    (0 if started else 1, ts, job_id, owner, seq))
            if cur.rowcount == 1:
                out.append(Reaped(job_id, batch_id, username, owner, give_up, started))
                if give_up:
                    failed_by_batch[batch_id] += 1
        _cancel_pending_of_cancelled(store, {r.batch_id for r in out if not r.failed})
        d.insert_rows(db, "batch_log", LOG_COLUMNS, [
            (ts, "WARNING", logs.LEASE_EXPIRED, r.batch_id, r.job_id, r.username, None, clean(_reaped_message(r)), None)
            for r in out])
        for batch_id, n in failed_by_batch.items():
            db.execute_sql(
                f"UPDATE batch SET completed_profiles = completed_profiles + {p}, failed_checks = failed_checks + {p} "
                f"WHERE id = {p}", (n, n, batch_id))
            if finish_batch_if_done(store, batch_id, ts):
                finished.append(batch_id)
    for r in out:
        logs.event(logging.WARNING, logs.LEASE_EXPIRED, _reaped_message(r), persisted=True,
                   batch_id=r.batch_id, job_id=r.job_id, username=r.username)
    log_batches_finished(finished)
    return out


def _reaped_message(r: Reaped) -> str:
    return (f"{r.username}: lease of worker {r.owner} expired; "
            + ("attempts spent, job failed" if r.failed else "job back in the queue" if r.started
               else "job back in the queue (its check had not started: no attempt spent)"))


__all__ = [
    "Claimed", "JobResult", "FinishReport", "Reaped", "claim", "finish", "release", "extend_leases", "reap_expired",
    "finish_batch_if_done", "log_batches_finished", "mark_started", "now", "open_jobs", "STORY_COLUMNS", "PENDING", "JOB_RUNNING", "FAILED",
    "SUCCEEDED",
]
