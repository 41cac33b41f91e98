"""Read-only queries the console needs: a window of a batch's jobs, a job's detail, the
proxy and worker tables as the database holds them.

The console never writes SQL itself; everything it reads comes through here. Each
function is one or two cheap statements (indexed, or bounded by ``LIMIT``), safe to
call from a thread worker. Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peewee import SQL, NodeList, fn

from storycheck_tui.states import DONE, JobState, OutcomeKind, WorkerState
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Batch, BatchLog, Job, Proxy, Story, Worker

#: result filters the console offers (``is:NAME`` in its filter box)
STATE_FILTERS: dict[str, Any] = {
    "all": None,
    "ok": (Job.state == JobState.SUCCEEDED),
    "succeeded": (Job.state == JobState.SUCCEEDED),
    "failed": (Job.state == JobState.FAILED),
    "running": (Job.state == JobState.RUNNING),
    "pending": (Job.state == JobState.PENDING),
    "cancelled": (Job.state == JobState.CANCELLED),
    "done": Job.state.in_(DONE),
    "has_stories": (Job.outcome == OutcomeKind.HAS_STORIES),
    "stories": (Job.outcome == OutcomeKind.HAS_STORIES),
    "no_stories": (Job.outcome == OutcomeKind.NO_STORIES),
    "private": (Job.outcome == OutcomeKind.PRIVATE),
    "not_found": (Job.outcome == OutcomeKind.NOT_FOUND),
}

#: longest text filter accepted (a pasted novel is cut, not sent to LIKE)
MAX_TEXT = 100


@dataclass(frozen=True)
class JobRow:
    """One job as the results table shows it."""

    id: int
    batch_id: int
    username: str
    state: str
    outcome: str | None
    story_count: int | None
    latest_story_at: float | None
    proxy: str | None
    attempts: int
    latency_ms: float | None
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class JobWindow:
    """A page of a batch's jobs, newest activity first, and how many match in all."""

    batch_id: int
    rows: tuple[JobRow, ...]
    total: int  # jobs of the batch that match the filter
    offset: int
    limit: int
    state: str = "all"
    text: str = ""


@dataclass(frozen=True)
class LogLine:
    """A stored ``batch_log`` row."""

    id: int
    created: float
    level: str
    event: str | None
    username: str | None
    proxy: str | None
    message: str
    details: dict[str, Any]

    @property
    def attempt(self) -> int | None:
        v = self.details.get("attempt")
        return v if isinstance(v, int) else None

    @property
    def traceback(self) -> str | None:
        v = self.details.get("traceback")
        return v if isinstance(v, str) else None


@dataclass(frozen=True)
class JobDetail:
    job: JobRow
    tries: int
    lease_owner: str | None
    lease_until: float | None
    run_after: float
    log: tuple[LogLine, ...]

    @property
    def traceback(self) -> str | None:
        for line in reversed(self.log):
            if line.traceback:
                return line.traceback
        return None


@dataclass(frozen=True)
class ProxyRow:
    """A ``proxy`` row without its URL (which may hold a password)."""

    id: int
    label: str
    state: str
    disabled: bool
    fail_streak: int
    successes: int
    failures: int
    last_latency_ms: float | None
    cooldown_until: float | None
    last_error: str | None
    updated_at: float


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    threads: int
    state: str
    started_at: float
    heartbeat_at: float
    checks: int
    rate: float
    pace: float | None = None  # requests/s to the source it paces itself to (None: no source)
    pace_reason: str | None = None  # why the pace last changed
    circuit: str | None = None  # its source's circuit breaker: closed, open, probing
    circuit_reason: str | None = None  # the failure that opened it
    blocked: str | None = None  # why it can send nothing now (None: its checks can go out)


_JOB_FIELDS = (Job.id, Job.batch, Job.username, Job.state, Job.outcome, Job.story_count, Job.latest_story_at,
               Job.proxy, Job.attempts, Job.latency_ms, Job.error_kind, Job.error_message, Job.http_status,
               Job.started_at, Job.finished_at)


def _job_row(t: tuple) -> JobRow:
    return JobRow(int(t[0]), int(t[1]), t[2], t[3], t[4], t[5], t[6], t[7], int(t[8] or 0), t[9], t[10], t[11],
                  t[12], t[13], t[14])


def _like(expr, pattern: str):
    """``expr LIKE pattern ESCAPE '!'`` (the same on SQLite and PostgreSQL)."""
    return NodeList((expr, SQL("LIKE"), pattern, SQL("ESCAPE '!'")))


def _escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _where(batch_id: int, state: str, text: str):
    cond = Job.batch == batch_id
    extra = STATE_FILTERS.get(state)
    if extra is not None:
        cond &= extra
    text = text.strip()[:MAX_TEXT].lower()
    if text:
        pattern = "%" + _escape_like(text) + "%"
        cond &= (_like(fn.LOWER(Job.username), pattern)
                 | _like(fn.LOWER(fn.COALESCE(Job.error_message, "")), pattern)
                 | _like(fn.LOWER(fn.COALESCE(Job.error_kind, "")), pattern))
    return cond


#: columns the results table may sort by (name -> the column): the only ORDER BY taken from outside
SORTS: dict[str, Any] = {
    "username": Job.username,
    "state": Job.state,
    "outcome": Job.outcome,
    "stories": Job.story_count,
    "latest": Job.latest_story_at,
    "proxy": Job.proxy,
    "attempts": Job.attempts,
    "latency": Job.latency_ms,
    "error": Job.error_kind,
    "finished": Job.finished_at,
}


def _order(sort: str | None, descending: bool) -> list:
    """ORDER BY for a sort name from :data:`SORTS` (``None``: newest activity first). Empty
    values last either way; the job id breaks ties, so the order is total and stable."""
    if sort is None:
        activity = fn.COALESCE(Job.finished_at, Job.started_at)
        return [SQL("(COALESCE(finished_at, started_at) IS NULL)"), activity.desc(), Job.id]
    if sort not in SORTS:
        raise ValueError(f"cannot sort by {sort!r}: one of {', '.join(SORTS)}")
    col = SORTS[sort]
    return [col.is_null(), col.desc() if descending else col.asc(), Job.id.desc() if descending else Job.id]


def job_window(store: Store, batch_id: int, *, state: str = "all", text: str = "", offset: int = 0,
               limit: int = 100, sort: str | None = None, descending: bool = False,
               until: float | None = None) -> JobWindow:
    """Jobs of ``batch_id`` that match, most recent activity first (finished or started),
    then the pending ones in queue order (or by ``sort``, a name in :data:`SORTS`);
    ``offset``/``limit`` page through them.

    ``text`` matches usernames and error messages (case-insensitive substring). ``until``
    leaves out jobs with activity after that time (a paged view holds still: what finished
    since it was taken does not push its rows down).
    """
    if state not in STATE_FILTERS:
        raise ValueError(f"unknown filter {state!r}: one of {', '.join(STATE_FILTERS)}")
    offset = max(0, offset)
    limit = max(1, min(limit, 1000))
    cond = _where(batch_id, state, text)
    if until is not None:
        activity = fn.COALESCE(Job.finished_at, Job.started_at)
        cond &= activity.is_null() | (activity <= until)
    query = (Job.select(*_JOB_FIELDS).where(cond).order_by(*_order(sort, descending))
             .limit(limit).offset(offset).tuples())
    rows = tuple(_job_row(t) for t in query)
    if offset == 0 and len(rows) < limit:
        total = len(rows)
    else:
        total = Job.select(fn.COUNT(Job.id)).where(cond).scalar() or 0
    return JobWindow(batch_id, rows, int(total), offset, limit, state, text.strip()[:MAX_TEXT])


def jobs_by_id(store: Store, ids: list[int]) -> tuple[JobRow, ...]:
    """These jobs as they are now, in the order given (a held page, read again); jobs that no
    longer exist are left out."""
    if not ids:
        return ()
    found = {int(t[0]): _job_row(t) for t in Job.select(*_JOB_FIELDS).where(Job.id.in_(ids)).tuples()}
    return tuple(found[i] for i in ids if i in found)


def get_job(store: Store, job_id: int) -> JobRow | None:
    t = Job.select(*_JOB_FIELDS).where(Job.id == job_id).tuples().first()
    return _job_row(t) if t else None


def _details(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"value": value}


def job_log(store: Store, job_id: int, limit: int = 500) -> list[LogLine]:
    """The ``batch_log`` lines of one job, oldest first (the newest ``limit`` of them)."""
    q = (BatchLog.select(BatchLog.id, BatchLog.created, BatchLog.level, BatchLog.event, BatchLog.username,
                         BatchLog.proxy, BatchLog.message, BatchLog.details)
         .where(BatchLog.job == job_id).order_by(BatchLog.id.desc()).limit(limit).tuples())
    lines = [LogLine(int(t[0]), float(t[1]), t[2], t[3], t[4], t[5], t[6], _details(t[7])) for t in q]
    lines.reverse()
    return lines


def log_tail(store: Store, after_id: int | None, limit: int = 2000) -> list[LogLine]:
    """``batch_log`` rows after ``after_id``, oldest first, at most ``limit`` of them; with
    ``after_id=None``, the newest ``limit`` rows (where a tail starts). Indexed by the primary
    key: a tail reads only what is new."""
    q = BatchLog.select(BatchLog.id, BatchLog.created, BatchLog.level, BatchLog.event, BatchLog.username,
                        BatchLog.proxy, BatchLog.message, BatchLog.details)
    if after_id is None:
        q = q.order_by(BatchLog.id.desc()).limit(limit)
    else:
        q = q.where(BatchLog.id > after_id).order_by(BatchLog.id).limit(limit)
    lines = [LogLine(int(t[0]), float(t[1]), t[2], t[3], t[4], t[5], t[6], _details(t[7])) for t in q.tuples()]
    if after_id is None:
        lines.reverse()
    return lines


def job_detail(store: Store, job_id: int) -> JobDetail | None:
    """A job with its lease facts and its log lines (attempt history, errors, traceback)."""
    t = (Job.select(*_JOB_FIELDS, Job.tries, Job.lease_owner, Job.lease_until, Job.run_after)
         .where(Job.id == job_id).tuples().first())
    if t is None:
        return None
    n = len(_JOB_FIELDS)
    return JobDetail(_job_row(t[:n]), int(t[n] or 0), t[n + 1], t[n + 2], float(t[n + 3] or 0.0),
                     tuple(job_log(store, job_id)))


def proxies(store: Store) -> list[ProxyRow]:
    q = (Proxy.select(Proxy.id, Proxy.label, Proxy.state, Proxy.disabled, Proxy.fail_streak, Proxy.successes,
                      Proxy.failures, Proxy.last_latency_ms, Proxy.cooldown_until, Proxy.last_error, Proxy.updated_at)
         .order_by(Proxy.id).tuples())
    return [ProxyRow(int(t[0]), t[1], t[2], bool(t[3]), int(t[4] or 0), int(t[5] or 0), int(t[6] or 0), t[7], t[8],
                     t[9], float(t[10] or 0.0)) for t in q]


def workers(store: Store, *, stopped_within: float = 60.0, now: float | None = None) -> list[WorkerRow]:
    """Workers that are running, stopping, lost (silent for a lease, listed for an hour), or
    stopped less than ``stopped_within`` seconds ago."""
    from storycheck_tui.store.queue import now as db_now
    from storycheck_tui.store.workers import WORKER_SHOWN_FOR

    ts = db_now(store) if now is None else now
    q = (Worker.select(Worker.id, Worker.host, Worker.pid, Worker.threads, Worker.state, Worker.started_at,
                       Worker.heartbeat_at, Worker.checks, Worker.rate, Worker.pace, Worker.pace_reason,
                       Worker.circuit, Worker.circuit_reason, Worker.blocked)
         .where(((Worker.state != WorkerState.STOPPED) & (Worker.heartbeat_at > ts - WORKER_SHOWN_FOR))
                | (Worker.heartbeat_at > ts - stopped_within))
         .order_by(Worker.started_at).tuples())
    return [WorkerRow(t[0], t[1], int(t[2]), int(t[3]), t[4], float(t[5]), float(t[6]), int(t[7] or 0),
                      float(t[8] or 0.0), t[9], t[10], t[11], t[12], t[13]) for t in q]


#: a running worker counts as live while its heartbeat is at most this old (a worker killed with
#: ``kill -9`` while no other worker runs leaves its row saying "running")
LIVE_WITHIN = 15.0


def live_workers(rows: list[WorkerRow], now: float) -> list[WorkerRow]:
    """The workers of ``rows`` (from :func:`workers`) that are running and heard from lately."""
    return [w for w in rows if w.state == WorkerState.RUNNING and now - w.heartbeat_at <= LIVE_WITHIN]


#: the circuit states from worst to best: the one shown for several workers is the worst
CIRCUIT_ORDER = ("open", "probing", "closed")


@dataclass(frozen=True)
class SourceFacts:
    """The story source as the live workers pace it, for `batches` and the console."""

    workers: int  # live workers with a source
    pace: float | None  # requests/s, summed over them (None: no live worker paces a source)
    pace_reason: str | None  # why the pace last changed (of the first of them)
    circuit: str | None  # the worst of their circuit breakers
    circuit_reason: str | None  # the failure that opened it
    blocked: str | None = None  # why the first of them that can send nothing can't
    blocked_workers: int = 0  # how many of them can send nothing now


def source_facts(rows: list[WorkerRow], now: float) -> SourceFacts:
    """What the live workers of ``rows`` (from :func:`workers`) say of the source."""
    live = [w for w in live_workers(rows, now) if w.pace is not None]
    if not live:
        return SourceFacts(0, None, None, None, None)
    worst = min(live, key=lambda w: CIRCUIT_ORDER.index(w.circuit) if w.circuit in CIRCUIT_ORDER else 2)
    stuck = [w for w in live if w.blocked]
    return SourceFacts(len(live), sum(w.pace or 0.0 for w in live), live[0].pace_reason, worst.circuit,
                       worst.circuit_reason, stuck[0].blocked if stuck else None, len(stuck))


@dataclass(frozen=True)
class StoryRow:
    """A stored story (one per username and story id, whichever batch saw it first)."""

    username: str
    story_id: str
    taken_at: float | None
    expires_at: float | None
    media_type: str | None
    first_seen_at: float


def stories_of(store: Store, usernames: list[str]) -> dict[str, list[StoryRow]]:
    """The stored stories of ``usernames`` by username, newest first (one statement per 500 names)."""
    out: dict[str, list[StoryRow]] = {}
    for i in range(0, len(usernames), 500):
        q = (Story.select(Story.username, Story.story_id, Story.taken_at, Story.expires_at, Story.media_type,
                          Story.first_seen_at)
             .where(Story.username.in_(usernames[i:i + 500])).tuples())
        for t in q:
            out.setdefault(t[0], []).append(StoryRow(*t))
    for rows in out.values():
        rows.sort(key=lambda r: (r.taken_at or r.first_seen_at, r.story_id), reverse=True)
    return out


def database_now(store: Store) -> float:
    """The database clock (worker heartbeats and leases are stamped with it)."""
    from storycheck_tui.store.queue import now as db_now

    return db_now(store)


@dataclass(frozen=True)
class RoundSummary:
    """A watch's newest round (a batch)."""

    batch_id: int
    state: str
    total: int
    completed: int
    succeeded: int
    failed: int
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class NewStory:
    event_id: int
    username: str
    story_id: str
    taken_at: float | None
    at: float  # when storycheck first saw it
    watch: str = ""  # the watch that saw it


@dataclass(frozen=True)
class WatchOverview:
    """One watch as the console's watch view shows it."""

    name: str
    every: float  # seconds
    paused: bool
    profiles: int
    next_round_at: float
    rounds: int
    webhook: str | None  # masked
    last_round: RoundSummary | None
    #: story.new events since the newest round started: how many, and the newest few
    new_stories: int
    recent: tuple[NewStory, ...]


def watch_overview(store: Store, *, recent: int = 10) -> list[WatchOverview]:
    """Every watch with its interval, next round, newest round's summary and new stories.

    A few indexed statements per watch (watches are few); safe from a thread worker."""
    from storycheck_tui.states import EventType
    from storycheck_tui.store.watches import list_watches

    p = store.dialect.param
    out = []
    for w in list_watches(store):
        last = None
        since = None
        if w.last_round is not None:
            b = Batch.get_or_none(Batch.id == w.last_round)
            if b is not None:
                last = RoundSummary(b.id, b.state, b.total_profiles, b.completed_profiles, b.successful_checks,
                                    b.failed_checks, b.created_at, b.finished_at)
                since = b.created_at
        where = f"watch_id = {p} AND type = {p}" + (f" AND at >= {p}" if since is not None else "")
        params = [w.id, EventType.STORY_NEW] + ([since] if since is not None else [])
        n = int(store.db.execute_sql(f"SELECT COUNT(*) FROM event WHERE {where}", params).fetchone()[0])
        rows = store.db.execute_sql(f"SELECT id, username, story_id, taken_at, at FROM event WHERE {where} "
                                    f"ORDER BY id DESC LIMIT {int(recent)}", params).fetchall() if recent > 0 else []
        out.append(WatchOverview(w.name, w.every, w.paused, w.profiles, w.next_round_at, w.rounds, w.webhook, last, n,
                                 tuple(NewStory(int(r[0]), r[1], r[2], r[3], float(r[4])) for r in rows)))
    return out


def new_stories_after(store: Store, event_id: int, limit: int = 100) -> list[NewStory]:
    """story.new events with an id above ``event_id``, oldest first (for a "new stories" toast:
    remember the last id shown)."""
    from storycheck_tui.states import EventType

    p = store.dialect.param
    rows = store.db.execute_sql(f"SELECT id, username, story_id, taken_at, at, watch FROM event WHERE id > {p} "
                                f"AND type = {p} ORDER BY id LIMIT {int(limit)}",
                                (event_id, EventType.STORY_NEW)).fetchall()
    return [NewStory(int(r[0]), r[1], r[2], r[3], float(r[4]), r[5]) for r in rows]


def last_event_id(store: Store) -> int:
    """The newest event's id (0 when there is none): where a "new stories" toast starts."""
    from storycheck_tui.store.models import Event

    return int(Event.select(fn.MAX(Event.id)).scalar() or 0)


def story_history(store: Store, username: str) -> list:
    """The stories seen for ``username`` in every watch (``history.StoryRow``), for the result detail."""
    from storycheck_tui.store.history import history

    return history(store, username)


__all__ = ["STATE_FILTERS", "JobRow", "JobWindow", "LogLine", "JobDetail", "ProxyRow", "WorkerRow", "job_window",
           "SORTS", "jobs_by_id", "get_job", "job_log", "log_tail", "job_detail", "proxies", "workers",
           "live_workers", "LIVE_WITHIN", "SourceFacts", "source_facts",
           "database_now", "StoryRow", "stories_of", "last_event_id"]
