"""The store on both backends: claim/lease/fence under concurrency, the reaper, pause in the
claim, indexes, schema creation, upgrades and the version check, secret-free errors.

Every test here runs on SQLite and on PostgreSQL (the ``store`` / ``db_url`` fixtures of
conftest.py); the postgres cases need STORYCHECK_TEST_PG (``source .ci/start-postgres.sh``).
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from helpers import assert_counters_match_rows, wait_for
from storycheck_tui.errors import DatabaseError
from storycheck_tui.inputs.proxies import parse_proxy_line
from storycheck_tui.sources.base import Outcome, Story
from storycheck_tui.states import JobState
from storycheck_tui.store import batches as ops
from storycheck_tui.store import db as dbmod
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as wk
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import BatchLog, Job, Meta_, Proxy

HAS = Outcome("has_stories", stories=(Story("s1", 1_700_000_000.0),), http_status=200, latency_ms=5.0)
NONE = Outcome("no_stories", http_status=200, latency_ms=5.0)


def ok(job: q.Claimed, outcome: Outcome = NONE) -> q.JobResult:
    return q.JobResult(job=job, state=JobState.SUCCEEDED, outcome=outcome, proxy="http://p:1", http_status=200,
                       latency_ms=5.0, tries=1)


def bad(job: q.Claimed) -> q.JobResult:
    return q.JobResult(job=job, state=JobState.FAILED, error_kind="source_unavailable", error_message="HTTP 503",
                       proxy="http://p:1", http_status=503, tries=4)


def job_counts(store, batch_id: int) -> dict[str, int]:
    return ops.summary(store, batch_id)["state"]


# --- claim / fence -------------------------------------------------------------------------------

def test_claim_takes_each_job_once_and_finish_is_fenced(store):
    batch_id = ops.create_batch(store, "b", [f"u{i}" for i in range(5)])
    first = q.claim(store, "w1", 30, 3)
    second = q.claim(store, "w2", 30, 10)
    assert [c.username for c in first] == ["u0", "u1", "u2"]
    assert [c.username for c in second] == ["u3", "u4"]
    assert q.claim(store, "w3", 30, 10) == []
    assert ops.get_batch(store, batch_id).state == "running"

    # the wrong owner, or the right owner with an old lease_seq, changes nothing
    report = q.finish(store, "w2", [ok(first[0])])
    assert report.stale and not report.applied
    old = q.Claimed(first[1].id, batch_id, "u1", first[1].attempts, first[1].lease_seq - 1)
    assert q.finish(store, "w1", [ok(old)]).stale
    assert ops.get_batch(store, batch_id).completed == 0

    assert len(q.finish(store, "w1", [ok(c, HAS) for c in first]).applied) == 3
    report = q.finish(store, "w2", [bad(c) for c in second])
    assert len(report.applied) == 2 and report.finished_batches == [batch_id]
    b = ops.get_batch(store, batch_id)
    assert (b.state, b.completed, b.succeeded, b.failed) == ("finished", 5, 3, 2)
    assert_counters_match_rows(store, batch_id)
    # finishing again (a duplicate delivery) changes nothing
    assert len(q.finish(store, "w1", [ok(c) for c in first]).stale) == 3
    assert_counters_match_rows(store, batch_id)


def test_a_group_of_many_results_is_fenced_row_by_row(store):
    """A group commit larger than one statement's rows (SQLite writes a group in pieces of at
    most 64 rows, the last one padded): every held job changes, every stale one does not, and
    each applied result has its story rows and its one batch_log row, in id order."""
    batch_id = ops.create_batch(store, "b", [f"u{i:03d}" for i in range(150)])
    claimed = q.claim(store, "w1", 30, 150)
    assert len(claimed) == 150
    stale = {c.id for c in claimed[::7]}  # their lease went to another worker meanwhile
    results = []
    for c in claimed:
        job = q.Claimed(c.id, c.batch_id, c.username, c.attempts, c.lease_seq - 1) if c.id in stale else c
        outcome = Outcome("has_stories", stories=(Story(f"{c.username}-a", 1.7e9), Story(f"{c.username}-b", 1.7e9 + 1)),
                          http_status=200, latency_ms=5.0) if c.id % 3 == 0 else NONE
        results.append(ok(job, outcome))
    report = q.finish(store, "w1", results)
    assert sorted(r.job.id for r in report.stale) == sorted(stale)
    applied = [r.job.id for r in report.applied]
    assert applied == sorted(c.id for c in claimed if c.id not in stale)
    states = dict(store.db.execute_sql("SELECT id, state FROM job WHERE batch_id = %s" % int(batch_id)).fetchall())
    assert {i for i, st in states.items() if st == "succeeded"} == set(applied)
    assert {i for i, st in states.items() if st == "running"} == stale
    logged = [row[0] for row in store.db.execute_sql(
        "SELECT job FROM batch_log WHERE batch = %s AND event = 'STORY_CHECK_SUCCESS' ORDER BY id" % int(batch_id))]
    assert logged == applied
    stories = store.db.execute_sql("SELECT COUNT(*) FROM story").fetchone()[0]
    assert stories == 2 * sum(1 for i in applied if i % 3 == 0)
    b = ops.get_batch(store, batch_id)
    assert (b.completed, b.succeeded) == (len(applied), len(applied))
    assert_counters_match_rows(store, batch_id)


def test_claim_hammer_16_threads_with_late_finishers(db_url):
    """16 threads claim and finish; some finish after their lease was reaped and the job
    re-claimed by another thread: those finishes must change nothing.

    Checked: no (job, lease_seq) is ever handed out twice (no job held by two owners at once);
    every applied finish carries the newest lease of its job; every job is finished exactly
    once; counters == job rows by state; one result log row per finished job.
    """
    store = open_store(db_url, pool_size=24)  # 16 claimers + the reaper + the main thread
    try:
        n_jobs, lease = 240, 0.4
        batch_id = ops.create_batch(store, "hammer", [f"user{i}" for i in range(n_jobs)])
        lock = threading.Lock()
        claims: list[tuple[int, int, str]] = []  # (job, lease_seq, owner)
        applied: list[tuple[int, int, str]] = []
        stale: list[tuple[int, int, str]] = []
        done = threading.Event()
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            owner = f"host:{1000 + i}:t{i}"
            rng = random.Random(i)
            try:
                while not done.is_set():
                    got = q.claim(store, owner, lease, rng.randint(1, 4))
                    if not got:
                        if ops.get_batch(store, batch_id).state == "finished":
                            return
                        time.sleep(0.01)
                        continue
                    with lock:
                        claims.extend((c.id, c.lease_seq, owner) for c in got)
                    roll = rng.random()
                    if roll < 0.12:  # late: finish only once the reaper has taken these back (waited on,
                        # not slept on: under load a fixed sleep could end before the reaper got there)
                        ids = [c.id for c in got]
                        wait_for(lambda: not Job.select().where(Job.id.in_(ids) & (Job.lease_owner == owner)).count(),
                                 30, f"the reaper to take back {owner}'s jobs")
                    elif roll < 0.2:
                        q.release(store, owner, got[:1])
                        got = got[1:]
                    results = [ok(c, HAS) if (c.id % 3) else bad(c) for c in got]
                    report = q.finish(store, owner, results)
                    with lock:
                        applied.extend((r.job.id, r.job.lease_seq, owner) for r in report.applied)
                        stale.extend((r.job.id, r.job.lease_seq, owner) for r in report.stale)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                store.db.close()  # hand the pooled connection back

        def reaper() -> None:
            try:
                while not done.is_set():
                    # a fencing stress test, not a test of max_claims: with leases this short every job is
                    # reaped again and again, and must stay claimable so the race goes on to the end
                    q.reap_expired(store, max_claims=1000)
                    time.sleep(0.05)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)
            finally:
                store.db.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)] + [threading.Thread(target=reaper)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while ops.get_batch(store, batch_id).state != "finished" and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        done.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert ops.get_batch(store, batch_id).state == "finished"

        # no (job, lease_seq) handed out twice: never two owners of one lease
        dup = [k for k, n in collections.Counter((j, s) for j, s, _ in claims).items() if n > 1]
        assert not dup, f"leases handed out twice: {dup[:5]}"
        newest = {}
        for j, s, _ in claims:
            newest[j] = max(s, newest.get(j, 0))
        # every job finished exactly once, by the holder of its newest lease
        assert sorted(j for j, _, _ in applied) == sorted(newest)
        assert len(applied) == n_jobs
        assert all(s == newest[j] for j, s, _ in applied)
        # some late finishes happened and were fenced out
        assert stale, "no late finisher was fenced out: the test did not exercise the fence"
        assert all(s < newest[j] or (j, s) in {(a, b) for a, b, _ in applied} for j, s, _ in stale)
        assert_counters_match_rows(store, batch_id)
        rows = job_counts(store, batch_id)
        assert rows == {"succeeded": sum(1 for j in newest if j % 3), "failed": sum(1 for j in newest if not j % 3)}
        # exactly one result record per job, and each success record belongs to a succeeded job
        logged = collections.Counter(
            r.job for r in BatchLog.select().where(BatchLog.event.in_(["STORY_CHECK_SUCCESS", "CHECK_FAILED"])))
        assert set(logged.values()) == {1} and len(logged) == n_jobs
        succeeded = {j.id for j in Job.select(Job.id).where(Job.state == "succeeded")}
        assert {r.job for r in BatchLog.select().where(BatchLog.event == "STORY_CHECK_SUCCESS")} == succeeded
    finally:
        store.close()


def test_release_gives_the_attempt_back(store):
    ops.create_batch(store, "b", ["a"])
    (c,) = q.claim(store, "w1", 30, 1)
    assert q.release(store, "w2", [c]) == 0  # not the owner
    assert q.release(store, "w1", [c], delay=0) == 1
    (c2,) = q.claim(store, "w2", 30, 1)
    assert (c2.attempts, c2.lease_seq) == (1, 2)
    assert q.finish(store, "w1", [ok(c)]).stale  # the first lease is gone for good


def test_lease_comes_from_the_database_clock(store):
    ops.create_batch(store, "b", ["a"])
    before = q.now(store)
    (c,) = q.claim(store, "w1", 30, 1)
    after = q.now(store)
    job = Job.get_by_id(c.id)
    assert before + 30 <= job.lease_until <= after + 30
    assert before <= job.started_at <= after


# --- reaper -------------------------------------------------------------------------------------

def test_reaper_returns_expired_leases_then_fails_spent_jobs(store):
    """Leases are long (30 s, nothing can expire by chance on a slow machine); expiry is driven
    explicitly by moving the lease end into the past, as a worker found dead does."""
    batch_id = ops.create_batch(store, "b", ["a", "b"])
    held = q.claim(store, "dead-worker", 30, 2)
    q.mark_started(store, "dead-worker", held)  # their checks were in flight: a death counts
    assert q.reap_expired(store, max_claims=2) == []  # not expired (the DB clock says so)
    assert q.extend_leases(store, "dead-worker", -1.0) == 2  # its lease ended a second ago
    reaped = q.reap_expired(store, max_claims=2)
    assert sorted(r.username for r in reaped) == ["a", "b"] and not any(r.failed for r in reaped)
    assert job_counts(store, batch_id) == {"pending": 2}
    assert q.finish(store, "dead-worker", [ok(c) for c in held]).stale  # late: nothing changes
    assert ops.get_batch(store, batch_id).completed == 0

    # second expiry: attempts (2) reached max_claims (2): the jobs fail and count as failed
    q.mark_started(store, "dead-again", q.claim(store, "dead-again", 30, 2))
    assert q.reap_expired(store, max_claims=2) == []
    q.extend_leases(store, "dead-again", -1.0)
    reaped = q.reap_expired(store, max_claims=2)
    assert all(r.failed for r in reaped) and len(reaped) == 2
    b = ops.get_batch(store, batch_id)
    assert (b.state, b.completed, b.failed, b.succeeded) == ("finished", 2, 2, 0)
    assert_counters_match_rows(store, batch_id)
    assert {j.error_kind for j in Job.select()} == {"lease_expired"}


def test_heartbeat_extends_only_the_own_leases(store):
    ops.create_batch(store, "b", ["a", "b"])
    wk.register_worker(store, "h:1:aa", 2)
    wk.register_worker(store, "h:2:bb", 2)
    (mine,) = q.claim(store, "h:1:aa", 30, 1)
    (theirs,) = q.claim(store, "h:2:bb", 30, 1)
    before = q.now(store)
    wk.heartbeat(store, "h:1:aa", checks=0, rate=0.0, lease_seconds=3600)  # read from the leases, no waiting
    assert Job.get_by_id(mine.id).lease_until >= before + 3600
    assert Job.get_by_id(theirs.id).lease_until <= q.now(store) + 30
    wk.heartbeat(store, "h:1:aa", checks=0, rate=0.0, lease_seconds=-1)  # and only its own run out
    assert [r.job_id for r in q.reap_expired(store, 5)] == [mine.id]
    assert Job.get_by_id(theirs.id).state == "running"


def finished_rows(store, batch_id: int) -> list[str]:
    return [r.message for r in BatchLog.select().where((BatchLog.batch == batch_id) & (BatchLog.event == "BATCH_FINISHED"))]


def events_of(store, batch_id: int) -> list[str]:
    return [r.event for r in BatchLog.select().where(BatchLog.batch == batch_id).order_by(BatchLog.id)]


def test_every_way_a_batch_finishes_commits_one_batch_finished_row_with_it(store):
    # by results
    b1 = ops.create_batch(store, "by-results", ["a"])
    report = q.finish(store, "w", [ok(c) for c in q.claim(store, "w", 30, 5, batch_ids=[b1])])
    assert report.finished_batches == [b1] and finished_rows(store, b1) == [f"batch {b1} finished"]
    assert events_of(store, b1)[-2:] == ["STORY_CHECK_SUCCESS", "BATCH_FINISHED"]  # the last result, then this
    # by the reaper: the last job's attempts are spent (no result, no writer: the reaper's own commit)
    b2 = ops.create_batch(store, "by-reaper", ["b"])
    q.mark_started(store, "dead-worker", q.claim(store, "dead-worker", 30, 5, batch_ids=[b2]))
    q.extend_leases(store, "dead-worker", -1.0)  # its lease ran out
    assert [r.failed for r in q.reap_expired(store, max_claims=1)] == [True]
    assert ops.get_batch(store, b2).state == "finished" and finished_rows(store, b2) == [f"batch {b2} finished"]
    assert events_of(store, b2)[-2:] == ["LEASE_EXPIRED", "BATCH_FINISHED"]
    # by the reaper, while paused: a paused batch with nothing left is finished too
    b3 = ops.create_batch(store, "paused", ["c"])
    q.mark_started(store, "dead-worker", q.claim(store, "dead-worker", 30, 5, batch_ids=[b3]))
    assert ops.pause(store, b3)
    q.extend_leases(store, "dead-worker", -1.0)
    q.reap_expired(store, max_claims=1)
    assert ops.get_batch(store, b3).state == "finished" and finished_rows(store, b3) == [f"batch {b3} finished"]
    assert not ops.resume(store, b3) and len(finished_rows(store, b3)) == 1


# --- pause --------------------------------------------------------------------------------------

def test_pause_is_seen_by_the_claim(store):
    batch_id = ops.create_batch(store, "b", ["a", "b", "c"])
    assert len(q.claim(store, "w", 30, 1)) == 1
    assert ops.pause(store, batch_id, "operator")
    # even a caller that still believes the batch runs gets nothing: the claim re-checks it
    assert q.claim(store, "w", 30, 10, batch_ids=[batch_id]) == []
    assert ops.resume(store, batch_id)
    assert len(q.claim(store, "w", 30, 10, batch_ids=[batch_id])) == 2


def test_pause_from_another_connection_stops_the_next_claim(db_url):
    """The pause commits on one connection (another console), the claim runs on another."""
    store = open_store(db_url, pool_size=4)
    try:
        batch_id = ops.create_batch(store, "b", [f"u{i}" for i in range(50)])
        paused = threading.Event()

        def operator() -> None:
            ops.pause(store, batch_id, "from elsewhere")
            store.db.close()
            paused.set()

        t = threading.Thread(target=operator)
        t.start()
        paused.wait(10)
        t.join()
        assert q.claim(store, "w", 30, 50, batch_ids=[batch_id]) == []
    finally:
        store.close()


def test_cancel_during_claims_keeps_counters(store):
    batch_id = ops.create_batch(store, "b", [f"u{i}" for i in range(10)])
    held = q.claim(store, "w", 30, 4)
    assert ops.cancel(store, batch_id) == 6
    assert q.claim(store, "w", 30, 10) == []
    q.finish(store, "w", [ok(c) for c in held])
    b = ops.get_batch(store, batch_id)
    assert (b.completed, b.cancelled) == (4, 6)
    assert_counters_match_rows(store, batch_id)


# --- indexes ------------------------------------------------------------------------------------

def test_claim_reads_an_index_of_pending_jobs(store):
    """With many finished jobs the claim seeks the pending jobs of its batch through an index
    (the partial index on pending jobs, or on SQLite also (batch_id, state), which yields them
    in id order): never a scan of the whole job table."""
    if store.dialect.name == "postgresql":
        indexdef = store.db.execute_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'job_pending'").fetchone()
    else:
        indexdef = store.db.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'job_pending'").fetchone()
    assert indexdef and "WHERE" in indexdef[0] and "'pending'" in indexdef[0], indexdef

    batch_id = ops.create_batch(store, "big", [f"u{i}" for i in range(20_000)])
    p = store.dialect.param
    mod = "%%" if p == "%s" else "%"
    with store.db.atomic():
        store.db.execute_sql(f"UPDATE job SET state = 'succeeded' WHERE batch_id = {p} AND id {mod} 100 != 0",
                             (batch_id,))
    store.db.execute_sql("ANALYZE")
    sql = store.dialect.claim_sql()
    params = store.dialect.claim_params("w", 30, batch_id, 10)
    if store.dialect.name == "postgresql":
        plan = "\n".join(r[0] for r in store.db.execute_sql("EXPLAIN " + sql, params).fetchall())  # not run
        assert "Seq Scan on job" not in plan, plan
        assert "using job_pending on job j" in plan or "using job_batch_state on job j" in plan, plan
    else:
        plan = "\n".join(str(r) for r in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert ("USING INDEX job_pending" in plan or "job_batch_state (batch_id=? AND state=?)" in plan), plan
        assert "TEMP B-TREE" not in plan and "SCAN j" not in plan, plan
    started = time.perf_counter()
    assert len(q.claim(store, "w", 30, 10)) == 10
    assert time.perf_counter() - started < 1.0


# --- one store per process, the batch-log sink it was given --------------------------------------

def test_a_second_store_in_one_process_is_refused_not_silently_switched_to(store, tmp_path):
    """The models are bound to the open store: opening another is one clear error, and the
    first store keeps its models; once closed, a query fails instead of reconnecting."""
    ops.create_batch(store, "mine", ["a"])
    with pytest.raises(DatabaseError) as err:
        open_store(str(tmp_path / "other.db"))
    assert "already open in this process" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "other.db").exists()  # refused before anything was created
    assert [b.name for b in ops.list_batches(store)] == ["mine"]  # still the first database
    store.close()
    with pytest.raises(Exception, match="uninitialized"):
        Job.select().count()
    other = open_store(str(tmp_path / "other.db"))  # closed: another may be opened
    try:
        assert ops.list_batches(other) == []
    finally:
        other.close()


def test_batch_operations_store_their_records_through_the_sink_they_were_given(db_url, tmp_path):
    """No hidden logging global: a store opened without a sink stores no batch records (they
    still reach the log file); one opened with the caller's sink stores them."""
    from storycheck_tui import logs

    logs.reset_logging()
    setup = logs.setup_logging(tmp_path / "logs")
    try:
        s = open_store(db_url)
        try:
            ops.create_batch(s, "unsunk", ["a"])
            assert BatchLog.select().where(BatchLog.event == logs.BATCH_CREATED).count() == 0
        finally:
            s.close()
        setup.sink.drain()
        s = open_store(db_url, log_sink=setup.sink)
        try:
            batch_id = ops.create_batch(s, "sunk", ["a"])
            ops.pause(s, batch_id)
            rows = [(r.batch, r.event) for r in BatchLog.select().order_by(BatchLog.id)]
            assert rows == [(batch_id, logs.BATCH_CREATED), (batch_id, logs.BATCH_PAUSED)]
        finally:
            s.close()
    finally:
        logs.reset_logging()


# --- schema: creation, upgrades, version check --------------------------------------------------

def test_schema_version_is_recorded(store):
    assert Meta_.get(Meta_.key == "schema_version").value == str(dbmod.SCHEMA_VERSION)


def _set_version(url: str, version: int) -> None:
    s = open_store(url)
    try:
        p = s.dialect.param
        with s.db.atomic():
            s.db.execute_sql(f"UPDATE storycheck_meta SET value = {p} WHERE key = 'schema_version'", (str(version),))
    finally:
        s.close()


def test_newer_schema_is_refused_with_one_clear_line(db_url):
    _set_version(db_url, dbmod.SCHEMA_VERSION + 5)
    with pytest.raises(DatabaseError) as err:
        open_store(db_url)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"schema is version {dbmod.SCHEMA_VERSION + 5}" in msg
    assert f"only up to version {dbmod.SCHEMA_VERSION}" in msg and "upgrade storycheck" in msg
    # the same from the command line: exit 3, one line on stderr, nothing touched
    proc = subprocess.run([sys.executable, "-m", "storycheck_tui", "batches", "--db", db_url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "upgrade storycheck" in lines[0], proc.stderr


def test_older_schema_is_upgraded_in_place(db_url, monkeypatch):
    """A newer storycheck (schema v+1, one upgrade step) upgrades the database on open;
    the older storycheck then refuses it with the newer-schema message."""
    from playhouse.migrate import SchemaMigrator, migrate
    from peewee import IntegerField

    old = dbmod.SCHEMA_VERSION
    s = open_store(db_url)
    batch_id = ops.create_batch(s, "kept", ["a", "b"])
    s.close()

    def add_column(store):
        migrate(SchemaMigrator.from_database(store.db).add_column("batch", "upgrade_marker", IntegerField(default=7)))

    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", old + 1)
    monkeypatch.setitem(dbmod.UPGRADES, old + 1, add_column)
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == str(old + 1)
        assert s.db.execute_sql("SELECT upgrade_marker FROM batch").fetchall() == [(7,)]
        assert ops.get_batch(s, batch_id).total == 2  # data survives the upgrade
    finally:
        s.close()
    s = open_store(db_url)  # opening again is a no-op, not a second upgrade
    s.close()

    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", old)
    with pytest.raises(DatabaseError, match=rf"schema is version {old + 1}.*upgrade storycheck"):
        open_store(db_url)


def test_a_version_1_database_gets_the_proxy_validation_column(db_url):
    """Schema 1 (storycheck before proxy.validate_requested_at) is upgraded to 2 (then 3) on open,
    proxies and their state kept."""
    from playhouse.migrate import SchemaMigrator, migrate

    s = open_store(db_url)
    ops.add_proxies(s, [parse_proxy_line("http://10.0.0.1:8080")])
    assert ops.set_proxy_disabled(s, 1, True)
    migrate(SchemaMigrator.from_database(s.db).drop_column("proxy", "validate_requested_at"))
    Meta_.update(value="1").where(Meta_.key == "schema_version").execute()
    s.close()
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == str(dbmod.SCHEMA_VERSION) == "8"
        assert [(p.id, p.disabled, p.validate_requested_at) for p in Proxy.select()] == [(1, True, None)]
        assert ops.request_validation(s, 1) is not None
    finally:
        s.close()


def test_a_version_2_database_gets_the_watch_tables(db_url):
    """Schema 2 (storycheck before monitoring) is upgraded (to 4, through 3) on open: batch.watch_id and the
    watch tables appear, batches are kept and read as batches of no watch."""
    from playhouse.migrate import SchemaMigrator, migrate

    from storycheck_tui.store import watches

    s = open_store(db_url)
    batch_id = ops.create_batch(s, "kept", ["a"])
    for table in ("event", "profile_change", "watch_story", "watch_profile", "watch"):
        s.db.execute_sql(f"DROP TABLE {table}")
    migrate(SchemaMigrator.from_database(s.db).drop_column("batch", "watch_id"))
    Meta_.update(value="2").where(Meta_.key == "schema_version").execute()
    s.close()
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == str(dbmod.SCHEMA_VERSION) == "8"
        assert ops.get_batch(s, batch_id).watch is None
        watches.add_watch(s, "w", ["a"], every=60.0)
        assert [r.watch for r in watches.start_due_rounds(s)] == ["w"]
    finally:
        s.close()


def test_a_version_4_database_gets_the_check_started_column_and_keeps_its_jobs(db_url):
    """Schema 4 (before job.check_started_at) is upgraded to 5 on open; a running job stays
    running and counts as not started."""
    from playhouse.migrate import SchemaMigrator, migrate

    s = open_store(db_url)
    bid = ops.create_batch(s, "b", ["a", "b"])
    [held] = q.claim(s, "w", 30, 1)
    migrate(SchemaMigrator.from_database(s.db).drop_column("job", "check_started_at"))
    Meta_.update(value="4").where(Meta_.key == "schema_version").execute()
    s.close()
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == str(dbmod.SCHEMA_VERSION) == "8"
        assert [(j.username, j.state, j.check_started_at) for j in Job.select().order_by(Job.id)] == \
            [("a", "running", None), ("b", "pending", None)]
        assert q.mark_started(s, "w", [held]) == 1 and Job.get_by_id(held.id).check_started_at is not None
        assert ops.get_batch(s, bid).total == 2
    finally:
        s.close()


def test_schema_creation_race_between_processes(backend, request, tmp_path):
    """Six processes open one EMPTY database at once: one creates, the others wait and use it."""
    url = _empty_url(request, tmp_path)
    code = ("import sys; from storycheck_tui.store.db import open_store; "
            "s = open_store(sys.argv[1]); s.close(); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    s = open_store(url)
    try:
        assert Meta_.select().where(Meta_.key == "schema_version").count() == 1
    finally:
        s.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


def _empty_url(request, tmp_path) -> str:
    if request.getfixturevalue("backend") == "sqlite":
        return str(tmp_path / "empty.db")
    return request.getfixturevalue("pg_url")


# --- secrets ------------------------------------------------------------------------------------

SECRET = "Wr0ng-S3cret-pw"


def _pg_url_with_password(pg_url: str, password: str, *, port: int | None = None) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(pg_url)
    return f"postgresql://storycheck_pw:{password}@{parts.hostname}:{port or parts.port}{parts.path}"


def test_wrong_password_never_appears_in_errors(pg_url):
    url = _pg_url_with_password(pg_url, SECRET)
    with pytest.raises(DatabaseError) as err:
        open_store(url)
    msg = str(err.value)
    assert SECRET not in msg and "***" in msg and "\n" not in msg
    assert "storycheck_pw" in msg  # says who could not log in
    for argv in (["batches", "--db", url], ["worker", "--until-idle", "--db", url]):
        proc = subprocess.run([sys.executable, "-m", "storycheck_tui", *argv], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "STORYCHECK_DB": ""})
        assert proc.returncode in (2, 3), proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
    # through the environment variable too
    proc = subprocess.run([sys.executable, "-m", "storycheck_tui", "batches"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "STORYCHECK_DB": url})
    assert proc.returncode == 3 and SECRET not in proc.stdout + proc.stderr and "***" in proc.stderr


def test_unreachable_server_error_is_masked(pg_url):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    url = _pg_url_with_password(pg_url, SECRET, port=free)
    with pytest.raises(DatabaseError) as err:
        open_store(url)
    assert SECRET not in str(err.value) and "***" in str(err.value)
    assert "\n" not in str(err.value) and "Connection refused" in str(err.value)


def test_libpq_options_in_the_url_pass_through(pg_url):
    s = open_store(pg_url + "?application_name=sc-options-test&sslmode=disable")
    try:
        assert s.db.execute_sql("SHOW application_name").fetchone()[0] == "sc-options-test"
    finally:
        s.close()


def _with_query(url: str, query: str, *, path: str | None = None, netloc: str | None = None) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, netloc if netloc is not None else parts.netloc,
                       path if path is not None else parts.path, query, ""))


def test_credential_options_in_the_url_are_masked_in_errors_and_the_display_name(pg_url):
    """?sslpassword= (and ?password=) are libpq credentials like the userinfo password: never in
    "cannot open database", never in the name the worker prints on its start line."""
    ssl_secret, pw_secret = "Ssl-S3cret-xyzzy", "Pw-S3cret-plugh"
    missing = _with_query(pg_url, f"sslmode=disable&sslpassword={ssl_secret}&password={pw_secret}",
                          path="/no_such_database_here")
    with pytest.raises(DatabaseError) as err:
        open_store(missing)
    msg = str(err.value)
    assert "cannot open database" in msg and "\n" not in msg
    assert ssl_secret not in msg and pw_secret not in msg and "sslpassword=***" in msg, msg
    s = open_store(_with_query(pg_url, f"sslmode=disable&sslpassword={ssl_secret}&application_name=sc-x"))
    try:
        assert ssl_secret not in s.display and "sslpassword=***" in s.display and "application_name=sc-x" in s.display
    finally:
        s.close()


def test_user_and_password_as_url_options_work_or_fail_in_one_line(pg_url):
    """libpq accepts ?user= and ?password=; storycheck used to crash on them with a TypeError."""
    from urllib.parse import urlsplit

    parts = urlsplit(pg_url)
    bare = f"{parts.hostname}:{parts.port}"
    s = open_store(_with_query(pg_url, f"user={parts.username}&password=unused-by-trust", netloc=bare))
    try:
        assert s.db.execute_sql("SELECT current_user").fetchone()[0] == parts.username
        assert "unused-by-trust" not in s.display and "password=***" in s.display
    finally:
        s.close()
    for query in (f"user={parts.username}", "password=twice"):
        netloc = f"{parts.username}:given@{bare}" if query.startswith("password") else parts.netloc
        with pytest.raises(DatabaseError) as err:
            open_store(_with_query(pg_url, query, netloc=netloc))
        msg = str(err.value)
        assert "given twice" in msg and "\n" not in msg and "twice=" not in msg and "given@" not in msg, msg


# --- PostgreSQL row locks: no waits that can close a deadlock cycle -------------------------------

class _OtherSession:
    """A second PostgreSQL session (another worker or console) holding row locks in an open
    transaction."""

    def __init__(self, url: str):
        import psycopg2

        self.conn = psycopg2.connect(url)
        self.conn.autocommit = False

    def run(self, sql: str, params: tuple = ()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _waiting_on_a_lock(store) -> int:
    return store.db.execute_sql(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


def _in_thread(fn):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, box


@pytest.fixture
def pg_store(pg_url):
    s = open_store(pg_url, pool_size=4)
    yield s
    s.close()


def test_heartbeat_never_waits_on_a_locked_job_row(pg_store, pg_url):
    """The writer (or a reaper) may hold some of this worker's job rows while the keeper
    extends its leases: the extension skips those rows instead of waiting on them (a wait
    there, in another row order, is half of a deadlock)."""
    store = pg_store
    ops.create_batch(store, "b", [f"u{i}" for i in range(6)])
    wk.register_worker(store, "h:1:aa", 2)
    held = q.claim(store, "h:1:aa", 30, 6)
    other = _OtherSession(pg_url)
    try:
        other.run("UPDATE job SET tries = tries WHERE id = %s", (held[3].id,))  # row lock, left open
        t, box = _in_thread(lambda: wk.heartbeat(store, "h:1:aa", checks=0, rate=0.0, lease_seconds=300))
        t.join(3.0)
        assert not t.is_alive(), "heartbeat waits on a row another transaction holds"
        assert "error" not in box, box
    finally:
        other.close()
        t.join(5)
        store.db.close()
    extended = [j.id for j in Job.select().where(Job.lease_until > q.now(store) + 200)]
    assert sorted(extended) == sorted(c.id for c in held if c.id != held[3].id)


def test_finish_locks_jobs_in_id_order(pg_store, pg_url):
    """A late group commit and a reaper touch the same expired jobs: both go in id order, so
    one waits for the other instead of deadlocking (finish got its results in any order)."""
    store = pg_store
    batch_id = ops.create_batch(store, "b", ["a", "b", "c"])
    held = q.claim(store, "w", 30, 3)
    reaper = _OtherSession(pg_url)  # locks job 2, then (once the finisher waits) job 3
    try:
        reaper.run("UPDATE job SET tries = tries WHERE id = %s", (held[1].id,))
        t, box = _in_thread(lambda: q.finish(store, "w", [ok(held[2]), ok(held[1]), ok(held[0])]))
        wait_for(lambda: _waiting_on_a_lock(store) >= 1, 5, "a transaction waiting on a row lock")
        store.db.close()
        reaper.run("SET lock_timeout = '3s'")
        reaper.run("UPDATE job SET tries = tries WHERE id = %s", (held[2].id,))  # must not wait on the finisher
        reaper.commit()
    finally:
        reaper.close()
    t.join(10)
    assert "error" not in box, box
    assert len(box["value"].applied) == 3
    assert_counters_match_rows(store, batch_id)


def test_claim_and_cancel_of_a_queued_batch_do_not_deadlock(pg_store, pg_url):
    """cancel locks the batch row, then its pending jobs; the first claim of a queued batch
    must take the batch row before any job row, or the two wait on each other."""
    store = pg_store
    batch_id = ops.create_batch(store, "b", [f"u{i}" for i in range(10)])
    console = _OtherSession(pg_url)
    try:
        console.run("UPDATE batch SET state = 'cancelled' WHERE id = %s", (batch_id,))
        t, box = _in_thread(lambda: q.claim(store, "w", 30, 4))
        wait_for(lambda: _waiting_on_a_lock(store) >= 1, 5, "a transaction waiting on a row lock")
        console.run("SET lock_timeout = '3s'")
        n = console.run("UPDATE job SET state = 'cancelled' WHERE batch_id = %s AND state = 'pending'", (batch_id,))
        console.run("UPDATE batch SET cancelled_profiles = cancelled_profiles + %s WHERE id = %s", (n, batch_id))
        console.commit()
    finally:
        console.close()
    t.join(10)
    assert "error" not in box, box
    assert box["value"] == [] and n == 10
    assert_counters_match_rows(store, batch_id)


def test_open_jobs_counts_what_is_left_to_claim_or_finish(store):
    """Runner.idle's question: jobs pending or running in claimable batches, optionally of some batches."""
    a = ops.create_batch(store, "a", ["x", "y"])
    b = ops.create_batch(store, "b", ["z"])
    assert q.open_jobs(store) == 3 and q.open_jobs(store, [b]) == 1 and q.open_jobs(store, []) == 0
    held = q.claim(store, "w1", 30, 1, [a])
    assert q.open_jobs(store, [a]) == 2  # one running, one pending
    ops.pause(store, b)
    assert q.open_jobs(store) == 2  # a paused batch waits for the operator, not for a worker
    q.finish(store, "w1", [ok(c) for c in held])
    assert q.open_jobs(store, [a]) == 1


# --- the SQLite file: no planted symlink followed, no loose mode kept ----------------------------

@pytest.mark.parametrize("planted", ["", "-wal", "-shm", "-journal"])
def test_a_symlink_planted_as_the_sqlite_file_or_its_companions_is_refused(tmp_path, planted):
    """A link named like the database (or its WAL/shared-memory/journal file) in a writable
    directory would make storycheck create or write the file it points to."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    db = shared / "storycheck.db"
    os.symlink(victim, str(db) + planted)  # dangling: the old code created the victim file
    with pytest.raises(DatabaseError) as err:
        open_store(str(db))
    msg = str(err.value)
    assert "symbolic link" in msg and "\n" not in msg, msg
    assert not victim.exists()
    if planted:
        assert not db.exists() or db.stat().st_size == 0  # nothing written through the link either


def test_loose_permissions_of_the_sqlite_directory_and_file_are_tightened_with_a_warning(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    db = loose / "storycheck.db"
    s = open_store(str(db))
    s.close()
    os.chmod(db, 0o666)
    s = open_store(str(db))
    try:
        assert (loose.stat().st_mode & 0o777) == 0o755
        assert (db.stat().st_mode & 0o777) == 0o600
        assert any("was readable or writable by other users" in n for n in s.notices), s.notices
        ops.create_batch(s, "b", ["a"])
        for companion in ("-wal", "-shm"):
            f = tmp_path / "loose" / ("storycheck.db" + companion)
            assert not f.exists() or (f.stat().st_mode & 0o077) == 0, companion
    finally:
        s.close()


def test_a_new_sqlite_file_is_created_private(tmp_path):
    s = open_store(str(tmp_path / "new.db"))
    try:
        assert ((tmp_path / "new.db").stat().st_mode & 0o777) == 0o600 and s.notices == []
    finally:
        s.close()


def test_a_shared_sticky_directory_is_left_as_it_is(tmp_path):
    """/tmp-like directories (world-writable, sticky) are shared by design: never tightened."""
    shared = tmp_path / "tmp-like"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    s = open_store(str(shared / "s.db"))
    try:
        assert (shared.stat().st_mode & 0o7777) == 0o1777 and s.notices == []
    finally:
        s.close()


def test_the_command_line_warns_when_it_tightens_the_database_file(tmp_path):
    db = tmp_path / "loose.db"
    open_store(str(db)).close()
    os.chmod(db, 0o666)
    proc = subprocess.run([sys.executable, "-m", "storycheck_tui", "batches", "--db", str(db)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "STORYCHECK_DB": ""})
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert line.startswith("storycheck: warning: ") and "now 600" in line
    assert (db.stat().st_mode & 0o777) == 0o600
