"""Reliability: crashes and restarts.

Real `storycheck worker` subprocesses against a real simulator in this process, on real
SQLite files: kill -9 at many moments, SIGTERM/SIGINT with a grace period, another process
holding the database locked, and a database that cannot be opened for writing.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from servers import wait_for
from servers.harness import (
    check_invariants, finished_count, kill9, running_jobs_of, scalar, spawn_worker, sql, storycheck_cmd,
    subprocess_env, wait_exit, write_config,
)
from storycheck_tui.inputs.proxies import parse_proxy_line
from storycheck_tui.sim import SimConfig, Simulator
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import open_store
from storycheck_tui.store.workers import pid_alive

KILLS = 24

FAST_RETRY = {"max_attempts": 6, "base_wait": 0.05, "max_wait": 0.5, "deadline": 20.0}
FAST_PROXIES = {"rate": 50.0, "burst": 10.0, "cooldown": 0.2, "max_cooldown": 1.0, "dead_after": 5,
                "validate_every": 0.5}


def engine(**kw) -> dict:
    base = {"workers": 3, "lease_seconds": 2.0, "claim_size": 4, "commit_every": 0.1, "heartbeat_every": 0.5,
            "grace_seconds": 2.0}
    base.update(kw)
    return base


def make_batch(db: Path, names: list[str], proxy_urls: list[str] = ()) -> int:
    store = open_store(str(db))
    try:
        if proxy_urls:
            ops.add_proxies(store, [parse_proxy_line(u) for u in proxy_urls])
        return ops.create_batch(store, "reliability", names)
    finally:
        store.close()


def started_jobs_of(db: Path, pid: int) -> int:
    """Running jobs of worker ``pid`` whose check has started (its first request is out)."""
    return int(scalar(db, "SELECT COUNT(*) FROM job WHERE state = 'running' AND check_started_at IS NOT NULL "
                          "AND lease_owner LIKE ?", f"%:{pid}:%"))


def orphaned_leases(db: Path) -> list[tuple]:
    """Running jobs whose lease owner (host:pid:…) is a process that no longer exists."""
    with sql(db) as con:
        rows = con.execute("SELECT id, lease_owner FROM job WHERE state = 'running'").fetchall()
    return [r for r in rows if not pid_alive(int(r[1].split(":")[1]))]


# ------------------------------------------------------------------------------------------
# kill -9
# ------------------------------------------------------------------------------------------


def test_kill9_at_random_moments_then_restart_finishes_the_batch(tmp_path):
    """≥20 kill -9 of a worker at varied moments (during start-up, after the first result,
    after N results, while checks are in flight), then a restart that finishes the batch:
    one final result per profile, counters == job rows, no duplicate stories, no success
    record without a succeeded job, and every success agrees with the source."""
    rng = random.Random(20261128)
    cfg_sim = SimConfig(seed=3, proxies=3, rate=500.0, burst=100.0, latency=0.1, error_rate=0.05,
                        malformed_rate=0.03, timeout_rate=0.01, hang_seconds=1.5)
    with Simulator(cfg_sim) as sim:
        db = tmp_path / "kill.db"
        logs_dir = tmp_path / "logs"
        cfg = write_config(tmp_path / "kill.toml", sim.config_snippet(), source_extra={"timeout": 0.5},
                           retry=FAST_RETRY, proxies=FAST_PROXIES, engine=engine())
        # 150 profiles: the 24 kills leave about 40 finished (at most ~90: six kills wait for
        # up to 9 results each), each new worker claims the lowest pending ids, and the
        # restart still has most of the batch to finish
        names = [f"kill.user{i:03d}" for i in range(150)]
        bid = make_batch(db, names, sim.proxy_urls)
        kills: list[tuple[str, int, int]] = []  # (moment, results recorded by that worker, in flight at the kill)
        for i in range(KILLS):
            before = finished_count(db, bid)
            assert before < len(names) - 10, f"the batch ran out of work after {len(kills)} kills"
            proc = spawn_worker(db, cfg, logs_dir)
            mode = ("startup", "first result", "after n results", "in flight")[i % 4]
            try:
                if mode == "startup":
                    try:  # a deliberate moment, not a wait for a condition: anywhere in start-up
                        proc.wait(timeout=rng.uniform(0.05, 0.5))
                    except subprocess.TimeoutExpired:
                        pass
                elif mode == "first result":
                    wait_for(lambda: finished_count(db, bid) > before, 15, "a first result")
                elif mode == "after n results":
                    n = rng.randint(2, 9)
                    wait_for(lambda: finished_count(db, bid) >= before + n, 15, f"{n} results")
                else:
                    wait_for(lambda: running_jobs_of(db, proc.pid) > 0, 15, "checks in flight")
                    try:
                        proc.wait(timeout=rng.uniform(0.0, 0.15))
                    except subprocess.TimeoutExpired:
                        pass
                assert proc.poll() is None, f"worker exited by itself (rc {proc.returncode}) before kill {i}: " \
                                            f"{proc.stderr.read().decode(errors='replace')[-2000:]}"
                in_flight = running_jobs_of(db, proc.pid)
            finally:
                if proc.poll() is None:
                    kill9(proc)
                proc.stderr.close()
            kills.append((mode, finished_count(db, bid) - before, in_flight))
        assert len(kills) >= 20
        assert sum(1 for k in kills if k[2] > 0) >= 8, f"too few kills hit checks in flight: {kills}"
        left = len(names) - finished_count(db, bid)
        assert left > 0, "the kills left nothing for the restart to do"

        final = spawn_worker(db, cfg, logs_dir)
        rc = wait_exit(final, 90)
        err = final.stderr.read().decode(errors="replace")
        final.stderr.close()
        assert rc == 0, err
        assert "Traceback" not in err, err

        figures = check_invariants(db, bid, log_file=logs_dir / "storycheck.log", expected_outcome=sim.outcome_for)
        assert not orphaned_leases(db)
        assert scalar(db, "SELECT COUNT(*) FROM worker WHERE state != 'stopped'") == 0
        assert "lease_expired" not in figures.errors, figures.errors
        # the restart really finished what the kills interrupted: every kill left work in flight or queued
        print(f"\nkill -9 survived: {len(kills)} kills ({sum(1 for k in kills if k[2])} with checks in flight), "
              f"{left} profiles left for the restart; final: {figures}")


def test_a_kill_storm_with_default_settings_fails_no_healthy_profile(tmp_path):
    """20 kill -9 of `storycheck worker`, each soon after its first result (checks in flight,
    the inbox full), then a restart: with DEFAULT settings (nothing in the config but the
    source) every profile ends with its true outcome. Before, every claimed job (even one only
    waiting in the inbox) counted each death against max_claims = 3, and healthy profiles
    ended lease_expired. Since the default is 20, that old rule would rarely fail a profile in
    20 kills: what each dead worker held is read after its kill, and no profile may have more
    claims counted than the deaths it was in flight for, plus the claim that finished it."""
    rng = random.Random(20261130)
    # 200 profiles: the 20 short-lived workers finish about 40 between them (each starts at
    # the source's default pace, 5/s), and each claims the 32 (claim_size) lowest pending ids,
    # so every kill still hits the same profiles in flight and waiting in the inbox; the rest
    # is the restart's.
    with Simulator(SimConfig(seed=21, proxies=20, rate=0, latency=0.3)) as sim:
        db = tmp_path / "storm.db"
        logs_dir = tmp_path / "logs"
        cfg = tmp_path / "storm.toml"
        cfg.write_text(sim.config_snippet(), encoding="utf-8")
        names = [f"storm.user{i:03d}" for i in range(200)]
        bid = make_batch(db, names, sim.proxy_urls)
        in_flight_kills = 0
        in_flight: Counter[int] = Counter()  # job id -> deaths of a worker while its check was out
        waited = 0  # jobs a dead worker held only in its inbox
        for i in range(20):
            before = finished_count(db, bid)
            assert before < len(names), f"the batch ran out of work after {i} kills"
            proc = spawn_worker(db, cfg, logs_dir)
            try:
                wait_for(lambda: finished_count(db, bid) > before, 20, "a first result")
                try:  # a deliberate moment, not a wait for a condition: while checks are in flight
                    proc.wait(timeout=rng.uniform(0.0, 0.2))
                except subprocess.TimeoutExpired:
                    pass
                assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
            finally:
                if proc.poll() is None:
                    kill9(proc)
                proc.stderr.close()
            with sql(db) as con:  # as the dead worker left them (the next worker reaps them)
                held = con.execute("SELECT id, check_started_at IS NOT NULL FROM job WHERE state = 'running' "
                                   "AND lease_owner LIKE ?", (f"%:{proc.pid}:%",)).fetchall()
            in_flight.update(job_id for job_id, started in held if started)
            waited += sum(1 for _, started in held if not started)
            in_flight_kills += any(started for _, started in held)
        assert in_flight_kills >= 5, "too few kills hit checks in flight"
        assert waited > 0, "no kill found jobs waiting in an inbox"
        final = spawn_worker(db, cfg, logs_dir)
        rc = wait_exit(final, 120)
        err = final.stderr.read().decode(errors="replace")
        final.stderr.close()
        assert rc == 0 and "Traceback" not in err, err
        figures = check_invariants(db, bid, log_file=logs_dir / "storycheck.log", expected_outcome=sim.outcome_for)
        assert figures.failed == 0 and figures.succeeded == len(names), figures
        assert not orphaned_leases(db)
        with sql(db) as con:
            attempts = dict(con.execute("SELECT id, attempts FROM job WHERE batch_id = ?", (bid,)).fetchall())
        over = {j: (a, in_flight[j]) for j, a in attempts.items() if a > in_flight[j] + 1}
        assert not over, (f"{len(over)} jobs had claims counted for deaths while waiting "
                          f"(job: attempts, deaths in flight): {dict(list(over.items())[:10])}")


def test_a_frozen_worker_loses_its_jobs_and_its_late_results_are_fenced_out(tmp_path):
    """SIGSTOP a worker with checks in flight past its lease: another worker reaps and finishes
    its jobs. SIGCONT: its late results are dropped by the fence (LEASE_LOST), never counted
    twice, never a second success record."""
    # The source answers the frozen worker's checks 3 s after they are sent: when their start is
    # in the database their requests are out and no answer can have come back, however slow
    # the machine, so the freeze always holds checks in flight whose results come back late.
    with Simulator(SimConfig(seed=13, rate=0, latency=3.0)) as sim:
        db = tmp_path / "freeze.db"
        logs_dir = tmp_path / "logs"
        cfg = write_config(tmp_path / "c.toml", sim.config_snippet(), retry=FAST_RETRY, proxies=FAST_PROXIES,
                           engine=engine(lease_seconds=1.5, heartbeat_every=0.3))
        bid = make_batch(db, [f"freeze.user{i:02d}" for i in range(12)])
        frozen = spawn_worker(db, cfg, logs_dir)
        other = None
        try:
            wait_for(lambda: started_jobs_of(db, frozen.pid) >= 3, 15, "checks in flight")
            frozen.send_signal(signal.SIGSTOP)
            sim.update(latency=0.0)  # the other worker's checks: no need to wait
            taken = running_jobs_of(db, frozen.pid)
            other = spawn_worker(db, cfg, logs_dir)
            assert wait_exit(other, 60) == 0  # it reaped the frozen worker's jobs and finished the batch
            assert finished_count(db, bid) == 12 and running_jobs_of(db, frozen.pid) == 0
            frozen.send_signal(signal.SIGCONT)
            assert wait_exit(frozen, 30) == 0
        finally:
            for p in (frozen, other):
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGCONT)
                    kill9(p)
        for p in (frozen, other):
            err = p.stderr.read().decode(errors="replace")
            p.stderr.close()
            assert "Traceback" not in err, err
        figures = check_invariants(db, bid, log_file=logs_dir / "storycheck.log", expected_outcome=sim.outcome_for)
        assert figures.succeeded == 12
        lost = scalar(db, "SELECT COUNT(*) FROM batch_log WHERE event = 'LEASE_LOST'")
        expired = scalar(db, "SELECT COUNT(*) FROM batch_log WHERE event = 'LEASE_EXPIRED'")
        assert expired >= taken > 0, (expired, taken)
        assert lost >= 1, "the thawed worker's late results were not reported as dropped"


# ------------------------------------------------------------------------------------------
# SIGTERM / SIGINT and the grace period
# ------------------------------------------------------------------------------------------


def _running_ids(db: Path, pid: int) -> set[int]:
    with sql(db) as con:
        return {r[0] for r in con.execute("SELECT id FROM job WHERE state = 'running' AND lease_owner LIKE ?",
                                          (f"%:{pid}:%",))}


@pytest.fixture
def slow_sim():
    with Simulator(SimConfig(seed=5, rate=0, latency=0.6)) as sim:
        yield sim


def _started_ids(log_file: Path) -> set[int]:
    """Jobs whose check had begun (a STORY_CHECK_STARTED line in the log file: workers run with --debug)."""
    if not log_file.exists():
        return set()
    out = set()
    for line in log_file.read_text(encoding="utf-8").splitlines():
        if " STORY_CHECK_STARTED " in line:
            out.add(int(line.split("job_id=")[1].split()[0].rstrip(")")))
    return out


def test_sigterm_lets_in_flight_checks_finish_within_the_grace(tmp_path, slow_sim):
    db = tmp_path / "term.db"
    logs_dir = tmp_path / "logs"
    cfg = write_config(tmp_path / "c.toml", slow_sim.config_snippet(), retry=FAST_RETRY, proxies=FAST_PROXIES,
                       engine=engine(grace_seconds=5.0, lease_seconds=30.0))
    bid = make_batch(db, [f"term.user{i:02d}" for i in range(40)])
    proc = spawn_worker(db, cfg, logs_dir, "--debug")
    wait_for(lambda: _running_ids(db, proc.pid) & _started_ids(logs_dir / "storycheck.log"), 15, "checks in flight")
    claimed = _running_ids(db, proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    in_check = claimed & _started_ids(logs_dir / "storycheck.log")  # the rest only sat in the worker's inbox
    rc = wait_exit(proc, 5.0 + 5)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert rc == 0, err
    assert "Traceback" not in err, err
    assert took < 5.0 + 3, f"stopping took {took:.1f}s with a 5s grace"
    with sql(db) as con:
        rows = {r[0]: r[1:] for r in con.execute(
            f"SELECT id, state, attempts, lease_owner FROM job WHERE id IN ({','.join(map(str, claimed))})")}
        running = con.execute("SELECT COUNT(*) FROM job WHERE state = 'running'").fetchone()[0]
    # checks take 0.6 s, the grace is 5 s: every check in flight finished and was recorded
    assert in_check and all(rows[i][0] in ("succeeded", "failed") for i in in_check), (in_check, rows)
    # claimed but not started: handed back, no attempt spent
    assert all(r[0] in ("succeeded", "failed") or r == ("pending", 0, None) for r in rows.values()), rows
    assert running == 0
    assert not orphaned_leases(db)
    assert finished_count(db, bid) >= len(in_check)


def test_sigint_after_the_grace_releases_unfinished_checks_and_a_restart_finishes(tmp_path, slow_sim):
    slow_sim.update(latency=8.0)  # checks far longer than the grace
    db = tmp_path / "int.db"
    logs_dir = tmp_path / "logs"
    cfg = write_config(tmp_path / "c.toml", slow_sim.config_snippet(), source_extra={"timeout": 20.0},
                       retry=FAST_RETRY, proxies=FAST_PROXIES, engine=engine(grace_seconds=1.0, lease_seconds=30.0))
    names = [f"int.user{i:02d}" for i in range(12)]
    bid = make_batch(db, names)
    proc = spawn_worker(db, cfg, logs_dir)
    wait_for(lambda: running_jobs_of(db, proc.pid) >= 3, 15, "three checks in flight")
    in_flight = _running_ids(db, proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = wait_exit(proc, 1.0 + 6)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert took < 1.0 + 4, f"stopping took {took:.1f}s with a 1s grace"
    with sql(db) as con:
        rows = con.execute(f"SELECT state, attempts, lease_owner FROM job WHERE id IN "
                           f"({','.join(map(str, in_flight))})").fetchall()
        running = con.execute("SELECT COUNT(*) FROM job WHERE state = 'running'").fetchone()[0]
    assert running == 0, "a job is left running after the worker stopped"
    assert all(r == ("pending", 0, None) for r in rows), f"released jobs must be pending with no attempt spent: {rows}"
    assert not orphaned_leases(db)

    slow_sim.update(latency=0.0)
    again = spawn_worker(db, cfg, logs_dir)
    assert wait_exit(again, 60) == 0
    again.stderr.close()
    check_invariants(db, bid, log_file=logs_dir / "storycheck.log", expected_outcome=slow_sim.outcome_for)


def test_a_second_ctrl_c_cuts_the_grace_short_but_still_releases(tmp_path, slow_sim):
    """The second Ctrl-C means "stop waiting", not "leave leases behind"."""
    slow_sim.update(latency=8.0)
    db = tmp_path / "int2.db"
    cfg = write_config(tmp_path / "c.toml", slow_sim.config_snippet(), source_extra={"timeout": 20.0},
                       retry=FAST_RETRY, proxies=FAST_PROXIES, engine=engine(grace_seconds=30.0, lease_seconds=60.0))
    make_batch(db, [f"int2.user{i:02d}" for i in range(12)])
    proc = spawn_worker(db, cfg, tmp_path / "logs")
    wait_for(lambda: running_jobs_of(db, proc.pid) >= 3, 15, "three checks in flight")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: "stop" in scalar(db, "SELECT state FROM worker WHERE pid = ?", proc.pid), 10,
             "the worker to notice the first Ctrl-C")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = wait_exit(proc, 10)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert took < 5, f"a second Ctrl-C still waited {took:.1f}s"
    assert scalar(db, "SELECT COUNT(*) FROM job WHERE state = 'running'") == 0, \
        "a second Ctrl-C left jobs running with a lease held by a process that is gone"


# ------------------------------------------------------------------------------------------
# the database held locked by another process
# ------------------------------------------------------------------------------------------

LOCKER = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")  # the write lock: no other connection can write until COMMIT
print("locked", flush=True)
sys.stdin.readline()  # the test says when to let go
con.execute("COMMIT")
con.close()
print("released", flush=True)
"""


class Locker:
    """Another process holding the SQLite write lock until told to let go."""

    def __init__(self, db: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        assert self.proc.wait(5) == 0


def _hold(proc: subprocess.Popen, seconds: float) -> None:
    """Keep the lock for ``seconds`` (the fault itself); returns early only if the worker dies."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass
    assert proc.poll() is None, "the worker died while the database was locked: " + \
        proc.stderr.read().decode(errors="replace")[-3000:]


@pytest.mark.parametrize("when", ["mid-run", "at start"])
def test_database_held_locked_by_another_process(tmp_path, when):
    """Another process holds the write lock for 3 s (twice mid-run, or while the worker starts):
    the worker waits, does not crash, loses nothing, and finishes."""
    with Simulator(SimConfig(seed=9, rate=0, latency=0.05)) as sim:
        db = tmp_path / "locked.db"
        logs_dir = tmp_path / "logs"
        cfg = write_config(tmp_path / "c.toml", sim.config_snippet(), retry=FAST_RETRY, proxies=FAST_PROXIES,
                           engine=engine(lease_seconds=30.0))
        # mid-run: enough that the batch outlasts two locks; at start: the lock comes first
        names = [f"lock.user{i:03d}" for i in range(150 if when == "mid-run" else 30)]
        bid = make_batch(db, names)
        proc = None
        try:
            if when == "at start":
                locker = Locker(db)
                proc = spawn_worker(db, cfg, logs_dir)
                _hold(proc, 3)
                assert finished_count(db, bid) == 0 and scalar(db, "SELECT COUNT(*) FROM worker") == 0
                locker.release()
            else:
                proc = spawn_worker(db, cfg, logs_dir)
                for _ in range(2):
                    seen = finished_count(db, bid)
                    wait_for(lambda: finished_count(db, bid) > seen, 15, "progress before the lock")
                    locker = Locker(db)
                    held_at = finished_count(db, bid)
                    _hold(proc, 3)
                    assert finished_count(db, bid) == held_at  # nothing got through the lock...
                    locker.release()
                    wait_for(lambda: finished_count(db, bid) > held_at, 15, "progress after the lock")  # ...then it did
                    assert finished_count(db, bid) < len(names), "the batch ended before the lock could bite"
            rc = wait_exit(proc, 60)
        finally:
            if proc is not None and proc.poll() is None:
                kill9(proc)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        assert rc == 0, err
        assert "Traceback" not in err, err
        check_invariants(db, bid, log_file=logs_dir / "storycheck.log", expected_outcome=sim.outcome_for)


# ------------------------------------------------------------------------------------------
# a database that cannot be opened for writing: one clear line
# ------------------------------------------------------------------------------------------

CAPSH = shutil.which("capsh")
IS_ROOT = os.geteuid() == 0


def _as_unprivileged(cmd: list[str]) -> list[str]:
    """Root ignores file modes; drop the capabilities that let it, so modes bind again."""
    if not IS_ROOT:
        return cmd
    if not CAPSH:
        pytest.skip("running as root without capsh: cannot make a file unwritable for this process")
    import shlex
    return [CAPSH, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", shlex.join(cmd)]


def _one_clear_line(tmp_path, db_arg: str, *, unprivileged: bool = False, expect_in: str) -> str:
    with Simulator(SimConfig(seed=1)) as sim:
        cfg = write_config(tmp_path / "c.toml", sim.config_snippet(), engine=engine())
        for command in (["worker", "--until-idle"], ["batches"]):
            cmd = storycheck_cmd(*command, "--db", db_arg, "--config", str(cfg))
            if unprivileged:
                cmd = _as_unprivileged(cmd)
            res = subprocess.run(cmd, env=subprocess_env(tmp_path / "logs"), capture_output=True, text=True,
                                 timeout=30)
            lines = res.stderr.strip().splitlines()
            assert res.returncode == 3, (res.returncode, res.stderr)
            assert len(lines) == 1, res.stderr
            assert lines[0].startswith("storycheck: ") and expect_in in lines[0], lines[0]
            assert "Traceback" not in res.stderr and res.stdout == ""
    return lines[0]


def test_database_directory_missing_is_one_clear_line(tmp_path):
    line = _one_clear_line(tmp_path, str(tmp_path / "nowhere" / "x.db"), expect_in="does not exist")
    assert str(tmp_path / "nowhere") in line
    assert not (tmp_path / "nowhere").exists()


def test_database_path_under_a_file_is_one_clear_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    _one_clear_line(tmp_path, str(tmp_path / "afile" / "x.db"), expect_in="x.db")


def test_database_file_read_only_is_one_clear_line(tmp_path):
    db = tmp_path / "ro.db"
    make_batch(db, ["someone"])
    db.chmod(0o400)
    line = _one_clear_line(tmp_path, str(db), unprivileged=True, expect_in="not readable and writable")
    assert str(db) in line


def test_database_directory_not_writable_is_one_clear_line(tmp_path):
    d = tmp_path / "rodir"
    d.mkdir()
    d.chmod(0o500)
    _one_clear_line(tmp_path, str(d / "x.db"), unprivileged=True, expect_in="Permission denied")


def test_database_file_that_is_not_a_database_is_one_clear_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite\n" * 100)
    _one_clear_line(tmp_path, str(junk), expect_in="not a database")
