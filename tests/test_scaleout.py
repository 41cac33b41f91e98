"""Scale-out: several `storycheck worker` processes sharing one database.

* four worker processes on PostgreSQL, one killed with ``kill -9`` mid-run: every job is
  recorded exactly once and the counters equal the rows;
* pause/resume and proxy disable/enable from the CLI reach every running worker within two
  seconds (SQLite and PostgreSQL);
* the jobs of a worker on another machine that stopped heartbeating come back when their
  lease expires; a watch-only runner (the console) sees the workers;
* proxy news written by one worker is adopted by the others even when its transaction
  commits after their last read.

The simulator runs in the test process; workers are real subprocesses (``python -m
storycheck_tui worker``) polled through the database, never with blind sleeps.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (  # noqa: F401  (logsetup is a fixture)
    assert_counters_match_rows, cli_subprocess, fast_settings, logsetup, sim_source, stays, wait_for,
)
from storycheck_tui.engine import proxies as P
from storycheck_tui.engine.proxysync import ProxySync, build_pool
from storycheck_tui.engine.wiring import build_runner
from storycheck_tui.masking import proxy_label
from storycheck_tui.sim import Simulator
from storycheck_tui.states import JobState
from storycheck_tui.store import batches as ops
from storycheck_tui.store import queue as q
from storycheck_tui.store import reads
from storycheck_tui.store import workers as wk
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import BatchLog, Job, Proxy, Worker


class _Spec:
    def __init__(self, url: str):
        self.url, self.label = url, proxy_label(url)


def write_config(path: Path, sim: Simulator, *, threads: int, lease: float = 3.0) -> Path:
    path.write_text(sim.config_snippet() + f"""
[proxies]
rate = 200
burst = 20
cooldown = 0.5
validate_every = 0.5

[retry]
base_wait = 0.05
max_wait = 0.5

[engine]
workers = {threads}
lease_seconds = {lease}
claim_size = 8
commit_every = 0.1
heartbeat_every = 0.5
grace_seconds = 3
""")
    return path


def start_worker(url: str, config: Path, log_dir: Path, *extra: str) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"worker-{time.monotonic_ns()}.err", "w+")
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(log_dir), "STORYCHECK_DB": ""}
    proc = subprocess.Popen([sys.executable, "-m", "storycheck_tui", "worker", "--db", url, "--config", str(config),
                             *extra], stdout=subprocess.DEVNULL, stderr=out, env=env)
    proc.stderr_file = out  # type: ignore[attr-defined]
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    f = proc.stderr_file  # type: ignore[attr-defined]
    f.flush()
    f.seek(0)
    return f.read()


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        p.stderr_file.close()  # type: ignore[attr-defined]


def scalar(store, sql: str, *params):
    return store.db.execute_sql(sql.replace("?", store.dialect.param), params).fetchone()[0]


# --- four processes, one killed -----------------------------------------------------------------

def test_four_workers_one_killed_every_job_recorded_once(pg_url, tmp_path):
    n_profiles = 1500
    with Simulator(proxies=8, rate=10_000, burst=10_000, latency=0.02, seed=7) as sim:
        store = open_store(pg_url)
        try:
            ops.add_proxies(store, [_Spec(u) for u in sim.proxy_urls])
            batch_id = ops.create_batch(store, "scale", [f"user{i:05d}" for i in range(n_profiles)])
            config = write_config(tmp_path / "worker.toml", sim, threads=4)
            # the victim starts first and gets going before the other three join: four workers
            # started at once share the key's learned pace unevenly, and a victim that got few
            # checks could see the batch end before it was killed
            victim = start_worker(pg_url, config, tmp_path / "logs", "--until-idle")
            procs = [victim]
            try:
                wait_for(lambda: (Worker.get_or_none(Worker.pid == victim.pid) or Worker(checks=0)).checks >= 10, 40,
                         lambda: "the victim's first checks: " + stderr_of(victim)[-2000:])
                procs += [start_worker(pg_url, config, tmp_path / "logs", "--until-idle") for _ in range(3)]

                def victim_busy():
                    row = Worker.get_or_none(Worker.pid == victim.pid)
                    if row is None or row.checks < 40:
                        return None
                    held = [j.id for j in Job.select(Job.id).where((Job.state == "running") & (Job.lease_owner == row.id))]
                    return (row.id, held) if held else None

                victim_id, held = wait_for(victim_busy, 40, lambda: "the victim to finish 40 checks and hold more: "
                                           + stderr_of(victim)[-2000:])
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                done_at_kill = ops.get_batch(store, batch_id).completed
                assert done_at_kill < n_profiles, "the batch ended before the kill: make it bigger or slower"

                survivors = [p for p in procs if p is not victim]
                deadline = time.monotonic() + 60
                for p in survivors:
                    try:
                        p.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        pytest.fail(f"worker {p.pid} did not finish: {stderr_of(p)[-3000:]}")
                assert [p.returncode for p in survivors] == [0, 0, 0], [stderr_of(p)[-2000:] for p in survivors]
            finally:
                stop_all(procs)

            b = ops.get_batch(store, batch_id)
            assert b.state == "finished", b
            states = {s: int(n) for s, n in store.db.execute_sql(
                "SELECT state, COUNT(*) FROM job WHERE batch_id = %s GROUP BY state", (batch_id,)).fetchall()}
            assert set(states) <= {"succeeded", "failed"} and sum(states.values()) == n_profiles, states
            # counters == rows
            assert (b.completed, b.succeeded, b.failed) == (n_profiles, states.get("succeeded", 0),
                                                            states.get("failed", 0))
            # every job recorded exactly once: one result record per job, in the finishing transaction
            per_job = collections.Counter(r.job for r in BatchLog.select(BatchLog.job).where(
                (BatchLog.batch == batch_id) & BatchLog.event.in_(["STORY_CHECK_SUCCESS", "CHECK_FAILED"])))
            assert len(per_job) == n_profiles and set(per_job.values()) == {1}, per_job.most_common(3)
            # every success record belongs to a succeeded job
            assert scalar(store, "SELECT COUNT(*) FROM batch_log l JOIN job j ON j.id = l.job "
                                 "WHERE l.event = 'STORY_CHECK_SUCCESS' AND j.state != 'succeeded'") == 0
            # no story recorded twice
            assert scalar(store, "SELECT COUNT(*) FROM (SELECT username, story_id FROM story "
                                 "GROUP BY username, story_id HAVING COUNT(*) > 1) d") == 0
            assert scalar(store, "SELECT COUNT(*) FROM story") > 0
            # what the victim held when it died came back (the reaper's records name it) and was
            # finished by the others. Not the jobs it held at the last poll before the kill: it may
            # have finished every one of them before the signal landed (a slow test process)
            reaped = {r.job for r in BatchLog.select(BatchLog.job).where(
                (BatchLog.event == "LEASE_EXPIRED") & BatchLog.message.contains(f"lease of worker {victim_id} expired"))}
            assert reaped, f"nothing the victim held when it died was taken back (it held {held} just before)"
            assert Job.select().where(Job.id.in_(list(reaped)) & Job.state.in_(["succeeded", "failed"])).count() \
                == len(reaped)
            assert Worker.get_by_id(victim_id).state == "stopped"  # seen dead by a worker on its host
            assert {w.state for w in Worker.select().where(Worker.id != victim_id)} == {"stopped"}
        finally:
            store.close()


# --- commands reach every worker within two seconds --------------------------------------------

def test_pause_resume_and_proxy_toggle_reach_every_worker_within_two_seconds(db_url, tmp_path):
    with Simulator(proxies=3, rate=10_000, burst=10_000, latency=0.03, seed=3) as sim:
        store = open_store(db_url)
        try:
            ops.add_proxies(store, [_Spec(u) for u in sim.proxy_urls])
            batch_id = ops.create_batch(store, "long", [f"u{i:05d}" for i in range(20_000)])
            config = write_config(tmp_path / "worker.toml", sim, threads=3, lease=30)
            procs = [start_worker(db_url, config, tmp_path / "logs") for _ in range(2)]
            try:
                def running() -> int:
                    return scalar(store, "SELECT COUNT(*) FROM job WHERE batch_id = ? AND state = 'running'", batch_id)

                def done() -> int:
                    return ops.get_batch(store, batch_id).completed

                wait_for(lambda: Worker.select().where((Worker.state == "running") & (Worker.checks > 0)).count() == 2,
                         30, lambda: "both workers to check: " + " | ".join(stderr_of(p)[-800:] for p in procs))

                # pause from the CLI: within 2 s nothing runs, and nothing starts afterwards
                assert cli_subprocess("pause", str(batch_id), "--db", db_url).code == 0
                t0 = time.monotonic()
                wait_for(lambda: running() == 0, 2.0, "no running job of the paused batch")
                settled = done()
                # an observation window: a worker that missed the pause would claim now
                stays(lambda: running() == 0 and done() == settled, 0.6, "nothing claimed while paused")

                # resume: within 2 s both workers check again
                before = {w.id: w.checks for w in Worker.select()}
                assert cli_subprocess("resume", str(batch_id), "--db", db_url).code == 0
                wait_for(lambda: running() > 0, 2.0, "work to start again after resume")
                wait_for(lambda: all(w.checks > before.get(w.id, 0) for w in Worker.select()
                                     .where(Worker.state == "running")), 4.0, "both workers to check again")

                # disable proxy 1 from the CLI: within 2 s no worker sends through it any more
                first = Proxy.select().order_by(Proxy.id).first()
                port0 = "proxy-0"
                assert cli_subprocess("proxies", "disable", str(first.id), "--db", db_url).code == 0
                t0 = time.monotonic()

                def requests_via(identity: str) -> int:
                    return sim.stats()["identities"][identity]["requests"]

                def quiet() -> bool:
                    a = requests_via(port0)
                    time.sleep(0.3)
                    return requests_via(port0) == a
                wait_for(quiet, 2.0, "proxy-0 to get no more requests")
                assert time.monotonic() - t0 < 2.3
                a = requests_via(port0)
                stays(lambda: requests_via(port0) == a, 0.6, "no request through the disabled proxy")
                assert requests_via("proxy-1") > 0

                # enable it again: within 2 s it carries traffic again
                assert cli_subprocess("proxies", "enable", str(first.id), "--db", db_url).code == 0
                a = requests_via(port0)
                wait_for(lambda: requests_via(port0) > a, 2.0, "proxy-0 to be used again")
                assert all(p.poll() is None for p in procs), [stderr_of(p)[-2000:] for p in procs]
            finally:
                stop_all(procs)
            assert all(p.returncode == 0 for p in procs), [stderr_of(p)[-2000:] for p in procs]
            assert_counters_match_rows(store, batch_id)
        finally:
            store.close()


# --- another machine's worker stops heartbeating -------------------------------------------------

def test_jobs_of_a_silent_remote_worker_come_back_when_its_lease_expires(db_url, logsetup):
    """A worker on another host (its pid means nothing here) claimed jobs and went silent:
    they are taken back when the lease expires, never earlier; the console sees the workers."""
    with Simulator(proxies=2, rate=10_000, burst=10_000, seed=5) as sim:
        store = open_store(db_url)
        try:
            ops.add_proxies(store, [_Spec(u) for u in sim.proxy_urls])
            batch_id = ops.create_batch(store, "b", [f"u{i}" for i in range(40)])
            remote = "far-away-host:4242:abcdef"
            wk.register_worker(store, remote, 4)
            held = q.claim(store, remote, 2.5, 5)
            settings = fast_settings(sim_source(sim), engine={"lease_seconds": 3.0})
            runner = build_runner(store, settings)
            watcher = build_runner(store, settings, workers=0)  # what the console runs
            runner.start()
            watcher.start()
            try:
                started = time.monotonic()
                wait_for(lambda: ops.get_batch(store, batch_id).completed == 35, 20, "the other 35 jobs")
                assert {j.state for j in Job.select().where(Job.id.in_([c.id for c in held]))} == {"running"}
                assert time.monotonic() - started < 2.4  # the lease has not expired: nobody took them
                wait_for(lambda: ops.get_batch(store, batch_id).state == "finished", 20, "the batch to finish")
                expired = BatchLog.select().where(BatchLog.event == "LEASE_EXPIRED")
                assert {r.job for r in expired} == {c.id for c in held}
                assert q.finish(store, remote, [q.JobResult(job=c, state=JobState.SUCCEEDED) for c in held]).stale
                workers = wait_for(lambda: {w.id: w for w in reads.workers(store)}
                                   if runner.worker_id in {w.id for w in reads.workers(store)} else None, 5)
                assert remote in workers and workers[runner.worker_id].state == "running"
                wall = reads.database_now(store)
                assert wall - workers[runner.worker_id].heartbeat_at < 3
                assert wall - workers[remote].heartbeat_at > 2  # silent
            finally:
                runner.stop(1.0)
                watcher.stop(1.0)
            assert_counters_match_rows(store, batch_id)
        finally:
            store.close()


# --- proxy news that commits after another worker's read ------------------------------------------

def test_proxy_change_committed_after_a_workers_read_is_still_adopted(pg_url):
    """A proxy change stamped before another worker's sync but committed after it (PostgreSQL
    runs both at once) must still reach that worker at its next sync."""
    import psycopg2

    store = open_store(pg_url)
    try:
        ops.add_proxies(store, [_Spec("http://127.0.0.1:9"), _Spec("http://127.0.0.1:10")])
        from storycheck_tui.config import ProxySettings
        pool = build_pool(store, ProxySettings())
        sync = ProxySync(store, pool)
        sync.adopt_all()
        other = psycopg2.connect(pg_url)  # another console: its transaction stays open a while
        try:
            with other.cursor() as cur:
                cur.execute("UPDATE proxy SET disabled = true, state = 'disabled', "
                            "updated_at = extract(epoch from clock_timestamp()) WHERE id = 1")
            time.sleep(0.05)
            sync.sync()  # reads before the other commit: sees nothing yet
            assert pool.state_of("1") != P.DISABLED
            other.commit()
        finally:
            other.close()
        sync.sync()
        assert pool.state_of("1") == P.DISABLED
        assert pool.state_of("2") != P.DISABLED
    finally:
        store.close()


# --- the database connection is cut mid-run ----------------------------------------------------

def test_worker_survives_its_database_connections_being_cut(pg_url, tmp_path):
    """Every connection of the worker is terminated by the server, twice (what a PostgreSQL
    restart, a failover or a proxy in between does): the worker reconnects and finishes."""
    with Simulator(proxies=4, rate=10_000, burst=10_000, latency=0.02, seed=11) as sim:
        store = open_store(pg_url)
        try:
            ops.add_proxies(store, [_Spec(u) for u in sim.proxy_urls])
            n = 400  # the two cuts come about 60 and 125 results in: most of the batch runs after them
            batch_id = ops.create_batch(store, "cut", [f"c{i:04d}" for i in range(n)])
            config = write_config(tmp_path / "worker.toml", sim, threads=4, lease=5)
            proc = start_worker(pg_url, config, tmp_path / "logs", "--until-idle")
            try:
                for cut in range(2):
                    seen = ops.get_batch(store, batch_id).completed
                    wait_for(lambda: ops.get_batch(store, batch_id).completed > seen + 50, 30,
                             lambda: "progress: " + stderr_of(proc)[-2000:])
                    killed = scalar(store, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                           "WHERE datname = current_database() AND pid != pg_backend_pid() "
                                           "AND application_name = 'storycheck'")
                    assert killed >= 2
                    assert ops.get_batch(store, batch_id).completed < n, "the batch ended before the cut"
                proc.wait(60)
            finally:
                stop_all([proc])
            assert proc.returncode == 0, stderr_of(proc)[-3000:]
            log = (tmp_path / "logs" / "storycheck.log").read_text()
            assert "ENGINE_CRASH" not in log
            b = ops.get_batch(store, batch_id)
            assert (b.state, b.completed) == ("finished", n)
            assert_counters_match_rows(store, batch_id)
        finally:
            store.close()


# --- one worker's discovery spares the others ------------------------------------------------------

def test_a_proxy_one_worker_found_failing_is_not_tried_by_the_next(db_url, tmp_path):
    """Worker A finds proxy 0 failing (it answers 407 to every check) and cools it down;
    worker B, started later on the same database, adopts that and never sends a check
    through it."""
    from storycheck_tui.sim import ProxyFault

    with Simulator(proxies=3, rate=10_000, burst=10_000, seed=4, faults={0: ProxyFault("auth")}) as sim:
        store = open_store(db_url)
        try:
            ops.add_proxies(store, [_Spec(u.replace("user:pass@", "")) for u in sim.proxy_urls])
            cfg = tmp_path / "w.toml"
            cfg.write_text(sim.config_snippet() + "\n[proxies]\nrate = 500\nburst = 50\ndead_after = 2\n"
                           "cooldown = 60\nvalidate_every = 60\n[engine]\nworkers = 4\nheartbeat_every = 0.5\n")
            first = ops.create_batch(store, "a", [f"a{i}" for i in range(60)])
            run_a = cli_subprocess("worker", "--until-idle", "--batch", str(first), "--db", db_url, "--config", str(cfg),
                                   env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs"), "STORYCHECK_DB": ""})
            assert run_a.code == 0, run_a.err
            assert Proxy.get_by_id(1).state == "auth_rejected"  # its 407 marked it at once; no one retries it
            tried_by_a = sim.stats()["identities"]["proxy-0"]["requests"]
            assert tried_by_a >= 1

            second = ops.create_batch(store, "b", [f"b{i}" for i in range(60)])
            run_b = cli_subprocess("worker", "--until-idle", "--batch", str(second), "--db", db_url, "--config",
                                   str(cfg), env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs"), "STORYCHECK_DB": ""})
            assert run_b.code == 0, run_b.err
            assert ops.get_batch(store, second).succeeded == 60
            assert sim.stats()["identities"]["proxy-0"]["requests"] == tried_by_a  # B never tried it
        finally:
            store.close()


def test_a_validation_asked_for_in_a_watch_only_console_reaches_the_workers(db_url, logsetup):
    """The console of `storycheck worker`s runs no checks: its `r` asks the workers, through
    the database, to validate a proxy now, and a worker does it at its next sync (a dead
    proxy otherwise waits for validate_every, here 60 s)."""
    from storycheck_tui.sim import ProxyFault

    with Simulator(proxies=2, rate=10_000, burst=10_000, seed=6, faults={0: ProxyFault("dead")}) as sim:
        store = open_store(db_url)
        worker = watcher = None
        try:
            ops.add_proxies(store, [_Spec(u) for u in sim.proxy_urls])
            key = str(Proxy.select().order_by(Proxy.id).first().id)
            batch_id = ops.create_batch(store, "b", [f"u{i:04d}" for i in range(5_000)])
            settings = fast_settings(sim_source(sim), proxies={"rate": 200.0, "burst": 20.0, "dead_after": 1,
                                                                "cooldown": 60.0, "validate_every": 60.0},
                                     engine={"workers": 2})
            worker = build_runner(store, settings, batch_ids=[batch_id]).start()
            wait_for(lambda: worker.pool.state_of(key) == P.DEAD, 10, "proxy 0 to be found dead")
            sim.set_fault(0, ProxyFault("healthy"))
            watcher = build_runner(store, settings, workers=0).start()
            watcher.retry_proxy(key)
            wait_for(lambda: worker.pool.state_of(key) == P.HEALTHY, 5,
                     lambda: f"the worker to validate proxy 0 (it is {worker.pool.state_of(key)})")
        finally:
            for r in (watcher, worker):
                if r is not None:
                    r.stop(0.5)
            store.close()


def test_a_dead_pid_is_judged_only_for_workers_of_this_machine(store):
    """A worker row with this hostname but another machine's (or container's) process table
    keeps its leases though its pid is not running here; a dead local worker loses them."""
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead_pid = proc.pid
    host = socket.gethostname()
    here = f"{host}:{dead_pid}:{wk.node()}beef"
    twin = f"{host}:{dead_pid}:{'0' * 6 if wk.node() != '0' * 6 else '1' * 6}beef"  # same name, other machine
    ops.create_batch(store, "b", [f"u{i}" for i in range(4)])
    for wid in (here, twin):
        wk.register_worker(store, wid, 2)
        assert len(q.claim(store, wid, 300, 2)) == 2
    assert wk.expire_dead_local_workers(store, wk.new_worker_id()) == [here]
    reaped = {r.owner for r in q.reap_expired(store, max_claims=5)}
    assert reaped == {here}
    assert Job.select().where((Job.lease_owner == twin) & (Job.state == "running")).count() == 2
    assert {w.id: w.state for w in Worker.select()} == {here: "stopped", twin: "running"}
