"""The engine end to end: typed errors through the runner into job rows, deadlines, proxies
(none usable, none at all, real SOCKS5), the queue's claim/fence invariants under 16
threads, dead-worker rescue, pause, cancel and retry-failed. Real servers on 127.0.0.1 and
real SQLite files; no mocks.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections import Counter

from helpers import (  # noqa: F401  (fixtures)
    Engine, Reply, assert_counters_match_rows, counts_by_state, fast_settings, free_port, log_text, logsetup,
    ring_events, sim_source, sqlite_store, start_pproxy, stays, stop_process, stories_body, story_server, wait_for,
)
from storycheck_tui import logs
from storycheck_tui.engine.wiring import build_runner
from storycheck_tui.masking import secrets
from storycheck_tui.sim import SimConfig, Simulator
from storycheck_tui.sources.base import Outcome
from storycheck_tui.store import batches as ops
from storycheck_tui.store import queue as q
from storycheck_tui.store import workers as wk
from storycheck_tui.store.models import FAILED, SUCCEEDED, BatchLog, Job, Worker


# ------------------------------------------------------------------------------------------
# typed errors through the runner
# ------------------------------------------------------------------------------------------


def test_source_unavailable_after_max_attempts_of_5xx(tmp_path, logsetup, story_server):
    srv = story_server(lambda u, n: Reply(500, {"error": "boom"}) if u.startswith("down") else Reply())
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 4}), ["down1", "down2", "up"]) as eng:
        eng.done()
        j = {x.username: x for x in eng.jobs()}
        for u in ("down1", "down2"):
            assert (j[u].state, j[u].error_kind, j[u].http_status, j[u].tries) == ("failed", "source_unavailable", 500, 4)
            assert srv.count(u) == 4
        assert j["up"].state == "succeeded" and j["up"].outcome == "no_stories"


def test_bad_response_for_malformed_json_and_wrong_shape(tmp_path, logsetup, story_server):
    # malformed JSON from the simulator itself (truncated JSON or an HTML error page) ...
    with Simulator(SimConfig(rate=0, malformed_rate=1.0)) as sim:
        settings = fast_settings(sim_source(sim), retry={"max_attempts": 2})
        with Engine(tmp_path / "sim", settings, ["stories_a", "nostories_b", "stories_c"]) as eng:
            eng.done()
            for job in eng.jobs():
                assert (job.state, job.error_kind, job.http_status) == ("failed", "bad_response", 200)
                assert "not valid JSON" in job.error_message
    # ... and valid JSON of the wrong shape from a loopback API
    srv = story_server(lambda u, n: Reply(200, {"items": [{"pk": "1", "taken_at": "soon"}]} if u == "badtime"
                                          else {"stories": []}))
    with Engine(tmp_path / "shape", fast_settings(srv.source(), retry={"max_attempts": 2}), ["badtime", "nokey"]) as eng:
        eng.done()
        j = {x.username: x for x in eng.jobs()}
        assert j["badtime"].error_kind == "bad_response" and "taken_at" in j["badtime"].error_message
        assert j["nokey"].error_kind == "bad_response" and "expected a list at 'items'" in j["nokey"].error_message


def test_rate_limited_does_not_fail_a_job(tmp_path, logsetup):
    # the simulator allows 10 requests/s with a burst of 2; the engine is allowed far more
    with Simulator(SimConfig(rate=10, burst=2, retry_after=0.2)) as sim:
        users = [f"user{i}" for i in range(12)]
        settings = fast_settings(sim_source(sim), retry={"max_attempts": 1})
        with Engine(tmp_path, settings, users) as eng:
            eng.done(timeout=30)
            assert all(j.state == "succeeded" for j in eng.jobs())
            assert sim.stats()["total"]["rate_limited"] > 0
            assert eng.logs(logs.RATE_LIMITED)
            assert_counters_match_rows(eng.store, eng.batch_id)


def test_a_huge_retry_after_is_capped_at_max_cooldown_with_default_settings():
    from storycheck_tui.config import ProxySettings
    from storycheck_tui.engine.proxies import ProxyPool
    from storycheck_tui.sources.base import DIRECT

    settings = ProxySettings()
    pool = ProxyPool([], settings)  # direct: one route for every profile
    assert pool.rate_limited(DIRECT.key, 1e12).blocked_for == settings.max_cooldown
    assert pool.next_ready_in() <= settings.max_cooldown


def test_one_hostile_retry_after_in_direct_mode_does_not_block_the_other_profiles(tmp_path, logsetup, story_server):
    # [proxies] max_cooldown 1 s (the fast settings) so the test waits for the cap, not for 300 s
    srv = story_server(lambda u, n: Reply(429, {}, headers={"Retry-After": "1000000000000"}) if u == "hostile"
                       else Reply())
    users = ["hostile"] + [f"u{i}" for i in range(6)]
    with Engine(tmp_path, fast_settings(srv.source()), users) as eng:
        wait_for(lambda: all(eng.job(u).state == "succeeded" for u in users[1:]), 15,
                 lambda: f"the other profiles to be checked: {[(j.username, j.state) for j in eng.jobs()]}")
    capped = [e for e in ring_events(logsetup, logs.RATE_LIMITED) if "capped" in e.message]
    assert capped and "retry after 1000000000000.0 s, capped at 1 s" in capped[0].message


def test_auth_failed_pauses_the_batch_and_leaves_profiles_pending(tmp_path, logsetup):
    secrets.add("wrong-key-4567")
    with Simulator(SimConfig(rate=0, api_key="right-key-1234")) as sim:
        src = sim_source(sim, headers={"x-access-key": "wrong-key-4567"})
        users = [f"user{i}" for i in range(10)]
        with Engine(tmp_path, fast_settings(src), users) as eng:
            wait_for(lambda: eng.batch().state == "paused", 10, "the batch to pause")
            wait_for(lambda: counts_by_state(eng.store, eng.batch_id) == {"pending": 10}, 10,
                     "every profile back to pending")
            b = eng.batch()
            assert (b.completed_profiles, b.failed_checks) == (0, 0)
            assert "refused the credentials" in b.state_reason and "401" in b.state_reason
            paused = wait_for(lambda: eng.logs(logs.BATCH_PAUSED), 5, "BATCH_PAUSED")
            assert paused[0].level == "ERROR" and "HTTP 401" in paused[0].message
            assert "fix the API key" in paused[0].message
            assert sim.stats()["total"]["rejected"] <= eng.settings.engine.workers * 2  # no hammering
            assert all(j.attempts == 0 for j in eng.jobs())  # a release gives the claim back
            # the operator fixes the key and resumes: the same profiles are checked
            sim.update(api_key="wrong-key-4567")
            eng.runner.resume(eng.batch_id)
            eng.done()
            assert all(j.state == "succeeded" for j in eng.jobs())


def test_total_deadline_bounds_a_check(tmp_path, logsetup, story_server):
    def respond(u: str, n: int) -> Reply:
        if u == "down":
            return Reply(503)
        if u == "limited":
            return Reply(429, headers={"Retry-After": "0.1"})
        return Reply(200, stories_body(1, u), delay=3.0)  # hangs longer than the read timeout

    srv = story_server(respond)
    retry = {"max_attempts": 1000, "base_wait": 0.1, "max_wait": 0.2, "deadline": 1.0}
    with Engine(tmp_path, fast_settings(srv.source(timeout=0.2), retry=retry), ["down", "limited", "hangs"]) as eng:
        eng.done(timeout=15)
        j = {x.username: x for x in eng.jobs()}
        assert j["down"].error_kind == "source_unavailable" and srv.count("down") < 30
        assert j["limited"].error_kind == "rate_limited" and srv.count("limited") < 30
        assert j["hangs"].error_kind == "source_unavailable" and "timeout" in j["hangs"].error_message
        for job in j.values():
            took = job.finished_at - job.started_at
            # deadline 1 s, plus one request still in flight (read timeout 0.2 s), the group commit and
            # a loaded machine's scheduling; without the deadline it would be 1000 tries
            assert took < 3.0, (job.username, took)


# ------------------------------------------------------------------------------------------
# proxies: none usable, none at all, real SOCKS5
# ------------------------------------------------------------------------------------------


def test_no_usable_proxy_batch_waits_then_resumes_by_itself(tmp_path, logsetup):
    with Simulator(SimConfig(proxies=1, rate=0, faults={0: "dead"})) as sim:
        [url] = sim.proxy_urls
        settings = fast_settings(sim_source(sim, timeout=1.0), engine={"workers": 2},
                                 proxies={"dead_after": 1, "validate_every": 0.2})
        users = [f"user{i}" for i in range(6)]
        with Engine(tmp_path, settings, users, proxies=[url]) as eng:
            wait_for(lambda: ring_events(logsetup, logs.NO_PROXY), 10, "NO_PROXY")
            assert "no usable proxy" in ring_events(logsetup, logs.NO_PROXY)[0].message
            # the batch waits: its profiles are back in the queue, none failed
            wait_for(lambda: counts_by_state(eng.store, eng.batch_id) == {"pending": 6}, 5,
                     "every profile pending while no proxy is usable")
            assert eng.runner.snapshot().waiting_for_proxy
            stays(lambda: counts_by_state(eng.store, eng.batch_id) == {"pending": 6}, 0.5, "nothing is claimed")
            assert eng.batch().state in ("queued", "running")
            sim.set_fault(0, "healthy")
            eng.done(timeout=15)
            assert all(j.state == "succeeded" and j.proxy == url for j in eng.jobs())
            assert_counters_match_rows(eng.store, eng.batch_id)


def test_direct_mode_logs_that_it_runs_direct(tmp_path, logsetup):
    with Simulator(SimConfig(rate=0)) as sim:
        with Engine(tmp_path, fast_settings(sim_source(sim)), ["a1", "b2", "c3"]) as eng:
            eng.done()
            assert all(j.state == "succeeded" and j.proxy == "direct" for j in eng.jobs())
            assert sim.stats()["identities"]["direct"]["ok"] == 3
    warned = ring_events(logsetup, logs.NO_PROXY)
    assert warned and "requests go direct" in warned[0].message and warned[0].level == "WARNING"
    assert "direct (no proxies)" in ring_events(logsetup, logs.WORKER_STARTED)[0].message
    assert "requests go direct" in log_text(logsetup)


def test_socks5_proxy_end_to_end_with_and_without_credentials(tmp_path, logsetup):
    password = "S0cksPass-93ac"
    open_port, auth_port = free_port(), free_port()
    procs = [start_pproxy(f"socks5://127.0.0.1:{open_port}"),
             start_pproxy(f"socks5://127.0.0.1:{auth_port}#user:{password}", "--auth", "0")]
    try:
        with Simulator(SimConfig(rate=0)) as sim:
            plain = f"socks5://127.0.0.1:{open_port}"
            authed = f"socks5://user:{password}@127.0.0.1:{auth_port}"
            wrong = f"socks5://user:Wr0ngSocks-11@127.0.0.1:{auth_port}"
            settings = fast_settings(sim_source(sim), proxies={"dead_after": 1})
            users = [f"user{i}" for i in range(8)]
            with Engine(tmp_path, settings, users, proxies=[plain, authed, wrong]) as eng:
                eng.done(timeout=20)
                jobs = eng.jobs()
                assert all(j.state == "succeeded" for j in jobs)
                labels = {j.proxy for j in jobs}
                assert labels == {plain, f"socks5://user@127.0.0.1:{auth_port}"}, labels
                assert sim.stats()["identities"]["direct"]["ok"] == 8  # pproxy reached the API itself
                # the wrong password failed over, named by its secret-free label
                failovers = eng.logs(logs.PROXY_FAILOVER)
                assert failovers and {r.proxy for r in failovers} == {f"socks5://user@127.0.0.1:{auth_port}"}
                stored = " ".join(f"{r.message} {r.proxy} {r.details}" for r in BatchLog.select())
            for secret in (password, "Wr0ngSocks-11"):
                assert secret not in stored and secret not in log_text(logsetup)
    finally:
        for p in procs:
            stop_process(p)


# ------------------------------------------------------------------------------------------
# the queue: claim, lease, fence
# ------------------------------------------------------------------------------------------


def _result(c: q.Claimed, owner: str, ok: bool) -> q.JobResult:
    mark = f"{owner}/{c.lease_seq}"
    if ok:
        return q.JobResult(job=c, state=SUCCEEDED, outcome=Outcome("no_stories"), proxy=mark, tries=1)
    return q.JobResult(job=c, state=FAILED, error_kind="source_unavailable", error_message="HTTP 503", proxy=mark,
                       tries=1)


def test_claim_and_fence_invariants_under_16_threads(tmp_path):
    store = sqlite_store(tmp_path)
    try:
        n_jobs = 240
        bid = ops.create_batch(store, "race", [f"u{i}" for i in range(n_jobs)])
        lock = threading.Lock()
        held: dict[int, str] = {}  # job -> owner holding a valid lease, as the threads see it
        violations: list[tuple] = []
        applied: dict[int, list[str]] = {}
        stale: list[tuple[int, str]] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def reaper() -> None:
            while not done.is_set():
                with lock:  # a reaped job is no longer held by its old owner
                    # a fencing stress test, not a test of max_claims: with leases this short every job is
                    # reaped again and again, and must stay claimable so the race goes on to the end
                    for r in q.reap_expired(store, max_claims=10_000):
                        if held.get(r.job_id) == r.owner:
                            del held[r.job_id]
                time.sleep(0.02)

        first_claims: list[int] = []  # slow owners that hold their first claim

        def reaped_from(owner: str, claimed: list) -> bool:
            with lock:
                return all(held.get(c.id) != owner for c in claimed)

        def worker(n: int) -> None:
            owner = f"host:{1000 + n}:w{n}"
            rng = random.Random(n)
            slow = n % 4 == 0  # these outlive their 50 ms leases: the reaper takes their jobs back
            try:
                while True:
                    claimed = q.claim(store, owner, 0.05 if slow else 30.0, rng.randint(1, 4), [bid])
                    if slow and n not in first_claims:
                        first_claims.append(n)
                    if not claimed:
                        c = counts_by_state(store, bid)
                        if not c.get("pending") and not c.get("running"):
                            return
                        time.sleep(0.005)
                        continue
                    with lock:
                        for c in claimed:
                            if c.id in held:
                                violations.append((c.id, held[c.id], owner))
                            held[c.id] = owner
                    if slow:  # finish late: only once the reaper has taken this claim back
                        wait_for(lambda: reaped_from(owner, claimed), 30, f"the reaper to take back {owner}'s jobs")
                    back = [c for c in claimed if rng.random() < 0.1]
                    keep = [c for c in claimed if c not in back]
                    with lock:
                        for c in claimed:
                            if held.get(c.id) == owner:
                                del held[c.id]
                    q.release(store, owner, back)
                    report = q.finish(store, owner, [_result(c, owner, rng.random() < 0.7) for c in keep])
                    with lock:
                        for r in report.applied:
                            applied.setdefault(r.job.id, []).append(f"{owner}/{r.job.lease_seq}")
                        stale.extend((r.job.id, f"{owner}/{r.job.lease_seq}") for r in report.stale)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        rt = threading.Thread(target=reaper)
        rt.start()
        # The slow owners claim first, so each holds jobs however the threads are scheduled:
        # the fence is exercised on every run, not only when a slow owner wins a claim.
        slow_threads = [t for n, t in enumerate(threads) if n % 4 == 0]
        for t in slow_threads:
            t.start()
        wait_for(lambda: len(first_claims) == len(slow_threads) or errors, 30, "the slow owners' first claims")
        for t in threads:
            if t not in slow_threads:
                t.start()
        for t in threads:
            t.join(60)
        done.set()
        rt.join(5)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        assert not violations, violations[:5]
        # every job finished exactly once, by the lease that held it last
        assert sorted(applied) == sorted(j.id for j in Job.select().where(Job.batch == bid))
        assert all(len(v) == 1 for v in applied.values()), {k: v for k, v in applied.items() if len(v) > 1}
        rows = {j.id: j for j in Job.select().where(Job.batch == bid)}
        assert all(rows[jid].proxy == marks[0] for jid, marks in applied.items())
        # late finishes by former owners happened and changed nothing
        assert stale, "no lease expired under a slow owner: the fence was not exercised"
        for jid, mark in stale:
            assert applied[jid] != [mark]
        c = assert_counters_match_rows(store, bid)
        assert c.get("succeeded", 0) + c.get("failed", 0) == n_jobs
    finally:
        store.close()


def test_a_death_counts_only_against_checks_that_were_in_flight(store):
    """Seen with kill storms: every claimed job, even one only waiting in the dead worker's
    inbox, counted a death against max_claims, and healthy profiles ended lease_expired."""
    bid = ops.create_batch(store, "storm", ["waiting", "checking"])
    for death in range(6):  # six deaths of the worker that holds them
        owner = f"w{death}"
        held = {c.username: c for c in q.claim(store, owner, 30.0, 2, [bid])}
        assert set(held) == ({"waiting", "checking"} if death < 3 else {"waiting"})
        if "checking" in held:
            q.mark_started(store, owner, [held["checking"]])
        q.extend_leases(store, owner, -1.0)  # found dead
        reaped = {r.username: r for r in q.reap_expired(store, max_claims=3)}
        assert set(reaped) == set(held)
        assert not reaped["waiting"].failed and Job.get(Job.username == "waiting").attempts == 0
        if "checking" in reaped:
            assert reaped["checking"].failed == (death == 2)  # its third death in flight
    job = Job.get(Job.username == "checking")
    assert (job.state, job.error_kind) == ("failed", "lease_expired")
    assert Job.get(Job.username == "waiting").state == "pending"


def test_late_finish_by_a_former_owner_changes_nothing(store):
    """On SQLite and PostgreSQL (conftest's ``store`` fixture)."""
    bid = ops.create_batch(store, "fence", ["only"])
    [a] = q.claim(store, "A", 0.01, 1, [bid])
    reaped = wait_for(lambda: q.reap_expired(store, max_claims=5), 5, "A's lease to expire and be reaped")
    assert [r.owner for r in reaped] == ["A"]
    [b] = q.claim(store, "B", 30.0, 1, [bid])
    assert b.id == a.id and b.lease_seq == a.lease_seq + 1
    late = q.finish(store, "A", [_result(a, "A", ok=False)])
    assert late.stale and not late.applied
    job = Job.get_by_id(a.id)
    assert (job.state, job.lease_owner, job.error_kind) == ("running", "B", None)
    assert ops.get_batch(store, bid).completed == 0
    assert not q.release(store, "A", [a])  # a former owner cannot hand it back either
    assert q.finish(store, "B", [_result(b, "B", ok=True)]).applied
    job = Job.get_by_id(a.id)
    assert (job.state, job.proxy) == ("succeeded", f"B/{b.lease_seq}")
    assert_counters_match_rows(store, bid)
    assert ops.get_batch(store, bid).state == "finished"


def test_a_batch_ends_when_its_last_check_does_not_at_the_next_commit_tick(tmp_path, logsetup, story_server):
    """With nothing left to check, the writer commits the last results at once, wait_done
    sees them at that commit and stop wakes every thread: `storycheck run` ends when its
    checks do. commit_every is raised to 5 s (default 0.25 s) so that a run which waits for
    the tick (or a stop which waits out the writer's sleep) cannot pass."""
    srv = story_server()
    settings = fast_settings(srv.source(), engine={"commit_every": 5.0})
    with Engine(tmp_path, settings, ["end1", "end2", "end3"], start=False) as eng:
        t0 = time.monotonic()
        eng.runner.start()
        assert eng.runner.wait_done([eng.batch_id], timeout=15)
        took = time.monotonic() - t0
        assert eng.batch().state == "finished" and eng.batch().successful_checks == 3
        assert took < 2.5, f"the batch's end waited for the commit tick: {took:.2f} s"
        t1 = time.monotonic()
        eng.runner.stop(1.0)
        stopped = time.monotonic() - t1
    assert stopped < 1.5, f"stop waited out the writer's tick: {stopped:.2f} s"


def test_at_a_high_rate_a_claim_takes_more_than_claim_size_jobs(tmp_path, logsetup, story_server):
    """A claim's commit costs as much as a dozen claimed rows: at a high rate of checks a claim
    takes about claimer.PIECE_SECONDS' worth of them (a few here, the test's server answers a
    few hundred a second), not claim_size (1 here) at a time."""
    sizes: list[int] = []

    class Claims(queue.SimpleQueue):  # the writer's queue of claims, counted as they come
        def put(self, jobs, block=True, timeout=None):
            sizes.append(len(jobs))
            super().put(jobs, block, timeout)

    srv = story_server()
    settings = fast_settings(srv.source(), engine={"workers": 8, "claim_size": 1})
    with Engine(tmp_path, settings, [f"fast{i:04d}" for i in range(1500)], start=False) as eng:
        eng.runner.writer.claims = Claims()
        eng.runner.start()
        assert eng.done(timeout=60).successful_checks == 1500
    assert sum(sizes) == 1500
    assert max(sizes) >= 2, f"claims of at most {max(sizes)} jobs"


def test_restarted_worker_takes_back_jobs_of_a_dead_local_worker_at_once(tmp_path, logsetup):
    with Simulator(SimConfig(rate=0)) as sim:
        store = sqlite_store(tmp_path)
        bid = ops.create_batch(store, "orphans", [f"user{i}" for i in range(8)])
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        def worker_id(pid: int) -> str:  # an id as a worker on this machine makes it, with that pid
            host, _pid, tail = wk.new_worker_id().split(":")
            return f"{host}:{pid}:{tail}"

        dead_worker = worker_id(gone.pid)
        live_worker = worker_id(os.getpid())  # another live process on this machine (this one)
        wk.register_worker(store, dead_worker, 4)
        wk.register_worker(store, live_worker, 1)
        orphans = q.claim(store, dead_worker, 3600.0, 5, [bid])  # an hour-long lease
        [kept] = q.claim(store, live_worker, 3600.0, 1, [bid])
        with Engine(tmp_path, fast_settings(sim_source(sim)), store=store) as eng:
            ids = [o.id for o in orphans]
            wait_for(lambda: all(Job.get_by_id(i).state == "succeeded" for i in ids), 10,
                     lambda: f"the dead worker's jobs to be checked again: "
                             f"{[(j.id, j.state, j.lease_owner, j.attempts) for j in Job.select()]}")
            wait_for(lambda: counts_by_state(store, bid) == {"succeeded": 7, "running": 1}, 10, "the rest")
            assert Job.get_by_id(kept.id).lease_owner == live_worker  # a live worker keeps its jobs
            assert Worker.get_by_id(dead_worker).state == "stopped"
            assert Worker.get_by_id(live_worker).state == "running"
            expired = wait_for(lambda: eng.logs(logs.LEASE_EXPIRED), 5, "LEASE_EXPIRED rows")
            assert sorted(r.job for r in expired) == sorted(ids)
            assert all(dead_worker in r.message for r in expired)


# ------------------------------------------------------------------------------------------
# operator commands: pause, cancel, retry-failed
# ------------------------------------------------------------------------------------------


def test_pause_stops_new_claims_and_resume_continues(tmp_path, logsetup):
    with Simulator(SimConfig(rate=0, latency=0.03)) as sim:
        users = [f"user{i}" for i in range(40)]
        with Engine(tmp_path, fast_settings(sim_source(sim), engine={"workers": 2}), users) as eng:
            wait_for(lambda: eng.batch().completed_profiles >= 3, 10, "a few checks")
            assert ops.pause(eng.store, eng.batch_id, "operator pause")  # as another process would
            wait_for(lambda: "running" not in counts_by_state(eng.store, eng.batch_id), 5, "in-flight checks to end")
            done = eng.batch().completed_profiles
            requests = sim.stats()["total"]["requests"]
            assert done < 40
            assert q.claim(eng.store, "probe", 30.0, 10, [eng.batch_id]) == []
            stays(lambda: eng.batch().completed_profiles == done and sim.stats()["total"]["requests"] == requests,
                  0.6, "no check while paused")
            assert_counters_match_rows(eng.store, eng.batch_id)
            assert eng.logs(logs.BATCH_PAUSED)
            assert ops.resume(eng.store, eng.batch_id)
            eng.done()
            assert all(j.state == "succeeded" for j in eng.jobs())
            assert assert_counters_match_rows(eng.store, eng.batch_id) == {"succeeded": 40}


def test_cancel_drops_unchecked_profiles_and_keeps_counters(tmp_path, logsetup):
    with Simulator(SimConfig(rate=0, latency=0.03)) as sim:
        users = [f"user{i}" for i in range(40)]
        with Engine(tmp_path, fast_settings(sim_source(sim), engine={"workers": 2}), users) as eng:
            wait_for(lambda: eng.batch().completed_profiles >= 3, 10, "a few checks")
            assert eng.runner.cancel(eng.batch_id) > 0
            wait_for(lambda: set(counts_by_state(eng.store, eng.batch_id)) <= {"succeeded", "cancelled"}, 5,
                     lambda: f"in-flight checks to end, nothing pending: {counts_by_state(eng.store, eng.batch_id)}")
            b = eng.batch()
            c = assert_counters_match_rows(eng.store, eng.batch_id)
            assert b.state == "cancelled" and c["cancelled"] > 0
            assert b.completed_profiles + b.cancelled_profiles == 40
            requests = sim.stats()["total"]["requests"]
            stays(lambda: sim.stats()["total"]["requests"] == requests, 0.5, "no check after cancel")
            assert eng.logs(logs.BATCH_CANCELLED)


def test_jobs_handed_back_to_a_cancelled_batch_are_cancelled(store):
    """A worker that held jobs when the batch was cancelled hands them back (release), or dies
    and the reaper takes them back: either way they end cancelled, not pending for ever.
    (On SQLite and PostgreSQL: conftest's ``store`` fixture.)"""
    bid = ops.create_batch(store, "c", [f"u{i}" for i in range(6)])
    held = q.claim(store, "A", 30.0, 2, [bid])
    assert len(q.claim(store, "B", 0.01, 2, [bid])) == 2
    assert ops.cancel(store, bid) == 2
    assert q.release(store, "A", held) == 2
    wait_for(lambda: q.reap_expired(store, max_claims=5), 5, "B's leases to be reaped")
    assert counts_by_state(store, bid) == {"cancelled": 6}
    b = ops.get_batch(store, bid)
    assert (b.state, b.cancelled, b.completed, b.remaining) == ("cancelled", 6, 0, 0)
    assert_counters_match_rows(store, bid)


def test_retry_failed_puts_failed_back_and_fixes_counters(tmp_path, logsetup, story_server):
    fixed = threading.Event()
    srv = story_server(lambda u, n: Reply(503) if u.startswith("flaky") and not fixed.is_set() else Reply())
    users = [f"ok{i}" for i in range(5)] + [f"flaky{i}" for i in range(3)]
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 2}), users) as eng:
        b = eng.done()
        assert (b.successful_checks, b.failed_checks, b.completed_profiles) == (5, 3, 8)
        fixed.set()
        assert ops.retry_failed(eng.store, eng.batch_id) == 3  # as `storycheck retry-failed` does
        b = eng.batch()
        # counters changed in the same transaction as the rows
        assert b.failed_checks == 0 and b.completed_profiles == 5 and b.state == "running"
        b = eng.done()
        assert (b.successful_checks, b.failed_checks, b.completed_profiles) == (8, 0, 8)
        assert assert_counters_match_rows(eng.store, eng.batch_id) == {"succeeded": 8}
        assert eng.logs(logs.BATCH_RETRY)
        assert ops.retry_failed(eng.store, eng.batch_id) == 0


def test_the_rate_of_a_worker_that_just_started_is_over_the_time_it_ran(tmp_path, logsetup):
    """The rate (progress line, `batches`, the console) counted the checks of the last 10 s over
    10 s, also in a worker's first seconds: 7 checks in the first half second said 0.7/s, and
    `storycheck run` printed an ETA of 47 minutes for a run of 6 s."""
    import dataclasses

    from storycheck_tui.config import Settings
    from storycheck_tui.engine.writer import RATE_WINDOW

    with Simulator(SimConfig(rate=0)) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        with Engine(tmp_path, settings, [f"rate.user{i:04d}" for i in range(2000)], start=False) as eng:
            started = time.monotonic()
            eng.runner.start()
            wait_for(lambda: eng.runner.writer.finished >= 40, 10, "40 checks")
            rate, finished, ran = eng.runner.snapshot().rate, eng.runner.writer.finished, time.monotonic() - started
            assert ran < RATE_WINDOW / 2, ran
            assert rate >= 0.5 * finished / ran, (rate, finished, ran)
