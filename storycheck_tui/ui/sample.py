"""A fixed console state for snapshot tests and the README screenshots.

Builds a real SQLite database through the store API (batches, 100,000-profile batch
included, proxies in every state, workers, a failed job with its attempt history) with
every time pinned to :data:`FIXED_NOW`, a log ring of fixed records, and an app over a
watch-only runner with the timer off, the clock fixed and UTC times: the same pixels
on every run.
"""

from __future__ import annotations

import json
import logging
from datetime import timezone
from pathlib import Path

from peewee import Case, Expression, Value, fn

from storycheck_tui.config import Settings
from storycheck_tui.inputs.proxies import ProxySpec
from storycheck_tui.logs import LogRing
from storycheck_tui.states import BatchState, ErrorKind, JobState, OutcomeKind, ProxyState, WorkerState
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store, open_store
from storycheck_tui.store.models import Batch, BatchLog, Job, Proxy, Worker

FIXED_NOW = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC
TZ = timezone.utc
BIG = 100_000
BIG_DONE = 41_230
WORKER_A = "app-01:31337:9f3a1c"

PROXIES = [
    # label, state, successes, failures, latency, cooldown (s from now), last error, fail streak, disabled
    ("de-fra-01.proxy.example:8080", ProxyState.HEALTHY, 14_210, 41, 212.0, None, None, 0, False),
    ("de-fra-02.proxy.example:8080", ProxyState.HEALTHY, 13_877, 58, 388.0, None, None, 0, False),
    ("nl-ams-01.proxy.example:3128", ProxyState.COOLING, 9_412, 203, 1_740.0, 12.0,
     "proxy_failed: 502 Bad Gateway from the proxy", 2, False),
    ("us-nyc-01.proxy.example:1080", ProxyState.DEAD, 611, 1_021, None, None,
     "proxy_failed: connection refused (3 in a row)", 3, False),
    ("uk-lon-01.proxy.example:8080", ProxyState.DISABLED, 2_345, 12, 640.0, None, None, 0, True),
    ("sg-sin-01.proxy.example:8080", ProxyState.HEALTHY, 3_107, 9, 905.0, None, None, 0, False),
]


def _mod(x, n: int):
    return Expression(x, "%", n)  # (peewee's own % operator is LIKE)


def _names(n: int, start: int) -> list[str]:
    first = ["alex", "maria", "sam", "lena", "omar", "yuki", "noah", "ines", "leo", "zoe", "ravi", "mia"]
    second = ["travels", "cooks", "runs", "paints", "codes", "sings", "reads", "rides", "dives", "bakes"]
    return [f"{first[i % 12]}.{second[(i * 7 // 12) % 10]}{start + i}" for i in range(n)]


def build_sample_store(path: str | Path) -> Store:
    """Create the sample database at ``path`` (which must not exist yet) and return it open."""
    store = open_store(str(path))
    now = FIXED_NOW
    ops.add_proxies(store, [ProxySpec(url=f"http://{p[0]}", label=p[0]) for p in PROXIES])
    for (label, state, ok, bad, lat, cool, err, streak, disabled) in PROXIES:
        Proxy.update(state=state, successes=ok, failures=bad, last_latency_ms=lat,
                     cooldown_until=None if cool is None else now + cool, last_error=err, fail_streak=streak,
                     disabled=disabled, updated_at=now - 3).where(Proxy.label == label).execute()

    b1 = ops.create_batch(store, "march-leads", _names(1_200, 1000))
    b2 = ops.create_batch(store, "vip-accounts", _names(800, 5000))
    big = _names(BIG, 10_000)
    # user text that must show as typed: markup, a closing tag, an ANSI escape
    big[BIG_DONE - 2] = "[/bold]mallory"
    big[BIG_DONE - 4] = "eve[red]x"
    big[BIG_DONE - 7] = "\x1b[31mansi.red"
    b3 = ops.create_batch(store, "spring-campaign", big)
    b4 = ops.create_batch(store, "overnight-retry", _names(5_000, 200_000))

    _finish(b1, 1_200, now - 7_200, fail_every=24)
    _finish(b2, 312, now - 1_900, fail_every=26)
    _finish(b3, BIG_DONE, now, fail_every=37)
    first3 = Job.select(fn.MIN(Job.id)).where(Job.batch == b3).scalar()
    running_ids = list(range(first3 + BIG_DONE, first3 + BIG_DONE + 16))
    Job.update(state=JobState.RUNNING, attempts=1, lease_seq=1, lease_owner=WORKER_A, lease_until=now + 55,
               started_at=now - 0.4).where(Job.id.in_(running_ids)).execute()
    _failed_with_history(first3 + BIG_DONE - 3, b3, big[BIG_DONE - 3], now)

    for bid in (b1, b2, b3, b4):
        _recount(bid)
    Batch.update(state=BatchState.FINISHED, created_at=now - 10_800, started_at=now - 10_700,
                 finished_at=now - 7_200).where(Batch.id == b1).execute()
    Batch.update(state=BatchState.PAUSED, state_reason="paused by operator", created_at=now - 5_400,
                 started_at=now - 5_300).where(Batch.id == b2).execute()
    Batch.update(state=BatchState.RUNNING, created_at=now - 1_800, started_at=now - 1_000).where(Batch.id == b3).execute()
    Batch.update(state=BatchState.QUEUED, created_at=now - 60).where(Batch.id == b4).execute()

    Worker.insert_many([
        {"id": WORKER_A, "host": "app-01", "pid": 31337, "threads": 16, "started_at": now - 1_000,
         "heartbeat_at": now - 1, "checks": 21_402, "rate": 21.4, "state": WorkerState.RUNNING},
        {"id": "app-02:2718:0be2d4", "host": "app-02", "pid": 2718, "threads": 16, "started_at": now - 990,
         "heartbeat_at": now - 2, "checks": 19_828, "rate": 19.8, "state": WorkerState.RUNNING},
        {"id": "app-03:4096:77aa01", "host": "app-03", "pid": 4096, "threads": 8, "started_at": now - 3_000,
         "heartbeat_at": now - 25, "checks": 8_113, "rate": 0.0, "state": WorkerState.RUNNING},
    ]).execute()
    return store


def _finish(batch_id: int, done: int, last_at: float, *, fail_every: int) -> None:
    """The first ``done`` jobs of the batch finished, the newest at ``last_at``, ~41/s before it."""
    first = Job.select(fn.MIN(Job.id)).where(Job.batch == batch_id).scalar()
    last = first + done - 1
    rng = (Job.batch == batch_id) & (Job.id <= last)
    finished = Value(last_at) - (Value(last) - Job.id) * 0.0243
    latency = 140 + _mod(Job.id * 37, 900)
    proxy = Case(_mod(Job.id, 4), [(0, PROXIES[0][0]), (1, PROXIES[1][0]), (2, PROXIES[5][0])], PROXIES[2][0])
    outcome = Case(_mod(Job.id, 7), [(0, OutcomeKind.HAS_STORIES), (1, OutcomeKind.HAS_STORIES), (2, OutcomeKind.PRIVATE),
                                        (3, OutcomeKind.NOT_FOUND)], OutcomeKind.NO_STORIES)
    Job.update(state=JobState.SUCCEEDED, attempts=Case(None, [(_mod(Job.id, 11) == 0, 2)], 1), lease_seq=1,
               outcome=outcome, proxy=proxy, http_status=200, latency_ms=latency, tries=1,
               started_at=finished - latency / 1000.0, finished_at=finished).where(rng).execute()
    stories = rng & (Job.outcome == OutcomeKind.HAS_STORIES)
    Job.update(story_count=1 + _mod(Job.id, 4), latest_story_at=finished - _mod(Job.id * 97, 80_000)).where(stories).execute()
    failed = rng & (_mod(Job.id, fail_every) == 0)
    kind = Case(_mod(Job.id, 3), [(0, ErrorKind.PROXY_FAILED), (1, ErrorKind.SOURCE_UNAVAILABLE)], ErrorKind.BAD_RESPONSE)
    message = Case(_mod(Job.id, 3), [(0, "407 Proxy Authentication Required"),
                                (1, "HTTP 503 Service Unavailable (4 tries)")], "body is not JSON: '<html>…'")
    Job.update(state=JobState.FAILED, outcome=None, story_count=None, latest_story_at=None, error_kind=kind,
               error_message=message, http_status=Case(_mod(Job.id, 3), [(0, 407), (1, 503)], 200),
               attempts=3, tries=4).where(failed).execute()


def _failed_with_history(job_id: int, batch_id: int, username: str, now: float) -> None:
    tb = ("Traceback (most recent call last):\n"
          '  File "storycheck_tui/engine/checker.py", line 121, in _attempt\n'
          "    outcome = self.source.check(job.username, via=route)\n"
          '  File "storycheck_tui/sources/http.py", line 88, in check\n'
          "    items = body[\"reel\"][\"items\"]\n"
          "KeyError: 'items'\n")
    Job.update(state=JobState.FAILED, outcome=None, story_count=None, latest_story_at=None,
               error_kind=ErrorKind.UNEXPECTED,
               error_message="KeyError: 'items' (the answer had no reel items)", http_status=200, attempts=2,
               tries=3, proxy=PROXIES[1][0], latency_ms=1_204.0, started_at=now - 6.2,
               finished_at=now - 0.07).where(Job.id == job_id).execute()
    rows = [
        (now - 31.0, "WARNING", "RETRY_SCHEDULED", PROXIES[0][0], 1, 503,
         f"{username}: source_unavailable: HTTP 503; try 1 failed, retrying in 0.4 s (1/4 attempts spent)"),
        (now - 30.2, "WARNING", "PROXY_FAILOVER", PROXIES[0][0], 1, 407,
         f"{username}: proxy {PROXIES[0][0]} failed (407 Proxy Authentication Required); trying another proxy"),
        (now - 29.9, "ERROR", "LEASE_EXPIRED", None, 1, None,
         f"{username}: lease of worker app-03:4096:77aa01 expired; job back in the queue"),
        (now - 6.2, "WARNING", "RATE_LIMITED", PROXIES[1][0], 2, 429,
         f"{username}: rate limited via {PROXIES[1][0]} (Retry-After 2 s); pace halved"),
        (now - 0.07, "ERROR", "CHECK_FAILED", PROXIES[1][0], 2, 200,
         f"{username}: check failed after 3 tries: unexpected: KeyError: 'items' (HTTP 200, via {PROXIES[1][0]})"),
    ]
    BatchLog.insert_many([
        {"created": t, "level": lvl, "event": ev, "batch": batch_id, "job": job_id, "username": username,
         "proxy": px, "message": msg,
         "details": json.dumps({"attempt": att, "status": st, **({"traceback": tb} if ev == "CHECK_FAILED" else {})})}
        for (t, lvl, ev, px, att, st, msg) in rows]).execute()


def _recount(batch_id: int) -> None:
    counts = dict(Job.select(Job.state, fn.COUNT(Job.id)).where(Job.batch == batch_id).group_by(Job.state).tuples())
    ok, bad = counts.get(JobState.SUCCEEDED, 0), counts.get(JobState.FAILED, 0)
    Batch.update(completed_profiles=ok + bad, successful_checks=ok, failed_checks=bad,
                 cancelled_profiles=counts.get(JobState.CANCELLED, 0)).where(Batch.id == batch_id).execute()


LOG_LINES = [
    (-95.0, "INFO", "WORKER_STARTED", "worker app-01:31337:9f3a1c started with 16 check threads, 6 proxies", {}),
    (-94.0, "INFO", "WORKER_STARTED", "worker app-02:2718:0be2d4 started with 16 check threads, 6 proxies", {}),
    (-60.0, "INFO", "BATCH_CREATED", "batch 4 'overnight-retry' created with 5000 profiles", {"batch_id": 4}),
    (-41.0, "WARNING", "PROXY_DISABLED", "proxy uk-lon-01.proxy.example:8080 disabled by operator",
     {"proxy": "uk-lon-01.proxy.example:8080"}),
    (-33.0, "ERROR", "PROXY_DEAD", "proxy us-nyc-01.proxy.example:1080 is dead: proxy_failed: connection refused "
     "(3 in a row)", {"proxy": "us-nyc-01.proxy.example:1080"}),
    (-31.0, "WARNING", "RETRY_SCHEDULED", "ravi.reads{u}: source_unavailable: HTTP 503; try 1 failed, retrying in "
     "0.4 s (1/4 attempts spent)", {}),
    (-30.2, "WARNING", "PROXY_FAILOVER", "ravi.reads{u}: proxy de-fra-01.proxy.example:8080 failed (407 Proxy "
     "Authentication Required); trying another proxy", {}),
    (-18.0, "INFO", "PROXY_RECOVERED", "proxy sg-sin-01.proxy.example:8080 is healthy: validated", {}),
    (-12.5, "WARNING", "PROXY_COOLING", "proxy nl-ams-01.proxy.example:3128 is cooling: proxy_failed: 502 Bad Gateway "
     "from the proxy (2 in a row, cooldown 12 s)", {}),
    (-6.2, "WARNING", "RATE_LIMITED", "ravi.reads{u}: rate limited via de-fra-02.proxy.example:8080 (Retry-After 2 s); "
     "pace halved", {}),
    (-2.0, "INFO", "STORY_CHECK_SUCCESS", "leo.codes{u}: 2 active stories (HTTP 200, 212 ms via "
     "de-fra-01.proxy.example:8080)", {}),
    (-1.6, "INFO", "STORY_CHECK_SUCCESS", "[/bold]mallory: no stories (HTTP 200, 388 ms via "
     "de-fra-02.proxy.example:8080)", {}),
    (-1.2, "INFO", "STORY_CHECK_SUCCESS", "eve[red]x: private (HTTP 200, 905 ms via sg-sin-01.proxy.example:8080)", {}),
    (-0.9, "DEBUG", "STORY_CHECK_STARTED", "mia.dives{u}: checking", {}),
    (-0.07, "ERROR", "CHECK_FAILED", "ravi.reads{u}: check failed after 3 tries: unexpected: KeyError: 'items' "
     "(HTTP 200, via de-fra-02.proxy.example:8080)", {}),
]


def sample_ring(now: float = FIXED_NOW) -> LogRing:
    """A log ring holding fixed records (its own: records logged by tests do not reach it)."""
    ring = LogRing(capacity=1000)
    names = _names(BIG_DONE + 1, 10_000)
    for offset, level, event, message, extra in LOG_LINES:
        for marker, back in (("ravi.reads{u}", 3), ("leo.codes{u}", 6), ("mia.dives{u}", 0)):
            message = message.replace(marker, names[BIG_DONE - back])
        record = logging.makeLogRecord({
            "name": "storycheck.engine", "levelno": getattr(logging, level), "levelname": level,
            "msg": message, "args": None, "created": now + offset,
            "event": event, **extra})
        ring.emit(record)
    return ring


def seed_charts(charts, batch_id: int, now: float = FIXED_NOW) -> None:
    """Five minutes of fixed history for the charts view (spring-campaign and three workers)."""
    from storycheck_tui.ui.series import BARS, BUCKET

    s = charts.series_of(batch_id)
    for i in range(BARS):
        t = now - (BARS - 1 - i) * BUCKET
        wave = (i * 7) % 11
        per = {"has_stories": 40 + wave * 3, "no_stories": 90 + (i * 5) % 13 * 4, "private": 10 + i % 4,
               "not_found": 4 + i % 3}
        for name, n in per.items():
            s[name].add(t, n)
        s["checks"].add(t, sum(per.values()) + (12 if i % 9 == 0 else 2))
        s["failed"].add(t, 12 if i % 9 == 0 else 2)
        charts.rate_limited.add(t, 30 if 20 <= i < 26 else (i % 5 == 0) * 2)
        rates = {"app-01:31337": 21.4 + (i % 6) * 0.6, "app-02:2718": 19.8 + (i % 4) * 0.8,
                 "app-03:4096": 8.0 if i < 50 else 0.0}
        charts.workers_seen(t, rates)


def sample_app(store: Store, **kw):
    """The console over ``store`` as the snapshots show it: watch-only, timer off, clock fixed.

    Returns ``(app, runner)``; the caller stops the runner when done.
    """
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.ui.app import StorycheckApp
    from storycheck_tui.ui.launch import WATCH_ONLY_NOTE
    from storycheck_tui.ui.rates import RateTracker

    runner = build_runner(store, Settings(), workers=0)
    runner.start()
    rates = RateTracker()
    big = Batch.get(Batch.name == "spring-campaign")
    rates.observe(big.id, FIXED_NOW - 10.0, big.completed_profiles - 412)
    options = dict(clock=lambda: FIXED_NOW, tz=TZ, refresh_every=None, note=WATCH_ONLY_NOTE, rates=rates)
    options.update(kw)
    app = StorycheckApp(runner, store, sample_ring(), **options)
    seed_charts(app.charts, big.id)
    for row in Proxy.select().order_by(Proxy.id):
        if row.last_latency_ms is not None:
            base = row.last_latency_ms
            series = [base * (0.7 + 0.6 * (((row.id * 7 + i * 5) % 11) / 10)) for i in range(11)] + [base]
            app.seed_latency(row.id, series, row.successes + row.failures)
    return app, runner


_template: Path | None = None


def sample_copy(dest_dir: str | Path) -> Store:
    """A fresh copy of the sample database in ``dest_dir`` (built once per process, then copied)."""
    import shutil
    import tempfile

    global _template
    if _template is None or not _template.exists():
        folder = Path(tempfile.mkdtemp(prefix="storycheck-sample-"))
        store = build_sample_store(folder / "sample.db")
        store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        _template = folder / "sample.db"
    target = Path(dest_dir) / "sample.db"
    shutil.copyfile(_template, target)
    return open_store(str(target))
