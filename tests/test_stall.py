"""A run that cannot progress says why and does not hang (issue 12, item 5).

Real parts: the simulator's HTTP proxy ports (one answers 407 to a wrong password), pproxy as
a real SOCKS5 server with a user and password, SQLite files, `storycheck` in a subprocess
where exit codes and stderr matter. A proxy that refuses its credentials is ``auth_rejected``
at once; while nothing can be sent the progress line, the engine's snapshot and the worker
say why; `run` ends at once when no proxy can come back by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import (
    REPO, Engine, Reply, cli, cli_subprocess, fast_settings, free_port, logsetup, sim_source, start_pproxy, stays,
    stop_process, story_server, wait_for,
)
from storycheck_tui.inputs.proxies import parse_proxy_line
from storycheck_tui.sim import ProxyFault, SimConfig, Simulator
from storycheck_tui.states import BatchState
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import BatchLog, Job, Proxy

SOCKS_USER = "sockuser"
SOCKS_PW = "S0cks-Right-pw-5a1f"
WRONG_PW = "Wr0ng-S0cks-pw-93be"


@pytest.fixture
def socks():
    """A real SOCKS5 proxy that wants SOCKS_USER / SOCKS_PW."""
    port = free_port()
    proc = start_pproxy(f"socks5://127.0.0.1:{port}#{SOCKS_USER}:{SOCKS_PW}", "--auth", "0")
    yield port
    stop_process(proc)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(db: Path) -> tuple[list[Job], list[Proxy], list[BatchLog]]:
    store = open_store(str(db))
    try:
        return (list(Job.select().order_by(Job.id)), list(Proxy.select().order_by(Proxy.id)),
                list(BatchLog.select().order_by(BatchLog.id)))
    finally:
        store.close()


def log_files(log_dir: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(log_dir.glob("*.log*")))


def test_run_with_one_socks5_proxy_whose_password_is_wrong_ends_at_once_with_the_reason(tmp_path, socks, capsys):
    """The issue's repro, with default settings: before, `run` printed `progress: 0/60 (0%) …
    [running]` forever (until the 300 s stall limit, since it landed). Now the proxy is
    auth_rejected at its first refusal, nothing else can come back, and `run` ends at once:
    exit 1, one line with the reason, the 60 jobs pending with no attempt spent."""
    with Simulator(SimConfig(rate=0)) as sim:
        cfg = write(tmp_path / "c.toml", sim.config_snippet())
        plist = write(tmp_path / "p.txt", "".join(f"user{i:02d}\n" for i in range(60)))
        proxies = write(tmp_path / "proxies.txt", f"socks5://{SOCKS_USER}:{WRONG_PW}@127.0.0.1:{socks}\n")
        db, log_dir = tmp_path / "s.db", tmp_path / "logs"
        started = time.monotonic()
        r = cli_subprocess("run", plist, "--config", cfg, "--db", db, "--proxies", proxies,
                           env={"STORYCHECK_LOG_DIR": str(log_dir)}, timeout=60)
        took = time.monotonic() - started
        assert sim.stats()["identities"]["direct"]["requests"] == 0  # nothing got through pproxy
    label = f"socks5://{SOCKS_USER}@127.0.0.1:{socks}"
    lines = [ln for ln in r.err.splitlines() if ln.startswith("storycheck: ")]
    assert r.code == 1 and len(lines) == 1, r.err[-3000:]
    assert lines[0].startswith(f"storycheck: no proxy can come back by itself: no usable proxy: {label} "
                               "auth_rejected (SOCKS5 proxy authentication failed: Invalid username/password)"), lines[0]
    assert "storycheck proxies enable" in lines[0] and "storycheck worker --batch 1" in lines[0]
    assert took < 30, f"took {took:.1f} s: it waited instead of ending at once"
    progress = [ln for ln in r.err.splitlines() if ln.startswith("progress: ")]
    assert progress and f"blocked: no usable proxy: {label} auth_rejected" in progress[-1], progress
    jobs, proxy_rows, records = rows(db)
    assert {(j.state, j.attempts) for j in jobs} == {("pending", 0)} and len(jobs) == 60  # handed back, no attempt
    assert [(p.label, p.state) for p in proxy_rows] == [(label, "auth_rejected")]
    log = log_files(log_dir)
    said = [ln for ln in log.splitlines() if "PROXY_AUTH_REJECTED" in ln]
    assert len(said) == 1 and label in said[0] and "Invalid username/password" in said[0], said
    stored = " ".join(f"{x.message} {x.proxy} {x.details}" for x in records)
    for text in (r.out, r.err, log, stored):
        assert WRONG_PW not in text and SOCKS_PW not in text

    # shown where proxies are shown, and the operator's enable gives it another try
    listed = cli(capsys, "proxies", "list", "--db", db)
    assert "auth_rejected" in listed.out and "SOCKS5 proxy authentication failed" in listed.out, listed.out
    [row] = [json.loads(ln) for ln in cli(capsys, "proxies", "list", "--json", "--db", db).out.splitlines()]
    assert (row["label"], row["state"]) == (label, "auth_rejected")
    enabled = cli(capsys, "proxies", "enable", "1", "--db", db)
    assert enabled.code == 0 and f"proxy 1 {label} enabled" in enabled.out, enabled.out
    assert [p.state for p in rows(db)[1]] == ["unchecked"]


def test_run_waiting_for_a_cooling_proxy_says_why_on_its_progress_line_then_ends_at_the_stall_limit(tmp_path):
    """A proxy that refuses connections may come back (it cools down, then is validated):
    `run` waits, its progress line saying why, up to [engine] stall_limit, then ends the same
    way, its jobs handed back. stall_limit = 1 s (default 300 s) so the test waits seconds, and
    grace_seconds = 0.5 s (default 10 s): checks waiting for the cooling proxy hold the stop that long."""
    with Simulator(SimConfig(rate=0)) as sim:
        cfg = write(tmp_path / "c.toml", sim.config_snippet() + "\n[engine]\nstall_limit = 1.0\ngrace_seconds = 0.5\n")
        plist = write(tmp_path / "p.txt", "a.one\nb.two\nc.three\n")
        dead = f"http://127.0.0.1:{free_port()}"  # nobody listens there
        proxies = write(tmp_path / "proxies.txt", dead + "\n")
        r = cli_subprocess("run", plist, "--config", cfg, "--db", tmp_path / "s.db", "--proxies", proxies,
                           env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs")}, timeout=60)
    lines = [ln for ln in r.err.splitlines() if ln.startswith("storycheck: ")]
    assert r.code == 1 and len(lines) == 1, r.err[-3000:]
    assert lines[0].startswith(f"storycheck: no progress for 1 s ([engine] stall_limit): no usable proxy: {dead} ")
    progress = [ln for ln in r.err.splitlines() if ln.startswith("progress: ")]
    assert progress and f"blocked: no usable proxy: {dead} " in progress[-1], progress
    assert "Connection refused" in progress[-1]
    jobs = rows(tmp_path / "s.db")[0]
    assert {(j.state, j.attempts) for j in jobs} == {("pending", 0)}


def test_an_http_proxy_refusing_its_password_waits_for_new_credentials_and_then_serves(tmp_path, logsetup):
    """The simulator's proxy port answers 407 to a wrong password: auth_rejected at once, the
    engine's snapshot says why nothing is sent, and no request is sent through it again;
    importing it with the right password (same proxy, new credentials) brings it back."""
    right = ProxyFault(kind="auth", username="user", password="R1ght-http-pw-77")
    with Simulator(SimConfig(rate=0, proxies=1, faults={0: right})) as sim:
        good_url = sim.proxy_urls[0]
        wrong_url = good_url.replace("R1ght-http-pw-77", "Wr0ng-http-pw-41")
        # fast_settings: 4 check threads and short waits (defaults would slow the stop, not change the rule)
        with Engine(tmp_path, fast_settings(sim_source(sim)), [f"u{i}" for i in range(20)],
                    proxies=[wrong_url]) as eng:
            label = eng.runner.pool.views()[0].label
            snap = wait_for(lambda: (s := eng.runner.snapshot()).blocked_reason and s, 10, "a blocked reason")
            assert snap.blocked_reason == (f"no usable proxy: {label} auth_rejected "
                                           "(proxy authentication required (407))"), snap.blocked_reason
            assert [v.state for v in snap.proxies] == ["auth_rejected"]
            wait_for(lambda: eng.proxy_row(label).state == "auth_rejected", 5, "the row to say auth_rejected")
            tried = sim.stats()["identities"]["proxy-0"]["rejected"]
            assert tried >= 1
            assert ops.add_proxies(eng.store, [parse_proxy_line(good_url)]) == ops.ProxiesAdded(0, 1)  # same proxy
            eng.done(timeout=20)
            assert sim.stats()["identities"]["proxy-0"]["ok"] >= 20
            assert [p.id for p in Proxy.select()] == [1]
            wait_for(lambda: eng.proxy_row(label).state == "healthy", 5, "the row to say healthy")
            assert eng.runner.snapshot().blocked_reason is None


def test_the_consoles_recheck_validates_an_auth_rejected_proxy_and_brings_it_back(tmp_path, logsetup):
    """The provider fixes the account (the proxy now takes the password it refused): nothing
    retries an auth_rejected proxy by itself, and the console's r (Runner.retry_proxy)
    validates it once, now: healthy, and the batch finishes."""
    with Simulator(SimConfig(rate=0, proxies=1, faults={0: ProxyFault("auth", "user", password="0ld-pw-1")})) as sim:
        given = sim.proxy_urls[0].replace("0ld-pw-1", "N3w-pw-2")  # the password the operator has
        with Engine(tmp_path, fast_settings(sim_source(sim)), [f"r{i}" for i in range(5)], proxies=[given]) as eng:
            key = eng.runner.pool.views()[0].key
            wait_for(lambda: eng.runner.pool.state_of(key) == "auth_rejected", 10, "the proxy to be auth_rejected")
            sim.set_fault(0, ProxyFault("auth", "user", password="N3w-pw-2"))  # the account is fixed
            assert eng.runner.pool.due_for_validation() == []  # nothing would validate it by itself
            eng.runner.retry_proxy(key)
            eng.done(timeout=20)
            assert eng.runner.pool.state_of(key) == "healthy"


def test_the_snapshot_says_when_every_route_waits_out_a_retry_after(tmp_path, logsetup, story_server):
    """Direct, every answer a 429 with Retry-After: 30: nothing can be sent for 30 s, and the
    engine's snapshot (what the console shows) says so. max_cooldown stays at its default 300 s
    (the tests' 1 s would cap the block)."""
    srv = story_server(lambda u, n: Reply(429, {}, headers={"Retry-After": "30"}))
    settings = fast_settings(srv.source(), proxies={"max_cooldown": 300.0})
    with Engine(tmp_path, settings, ["a.one", "b.two"]) as eng:
        reason = wait_for(lambda: eng.runner.snapshot().blocked_reason, 10, "a blocked reason")
        assert reason in ("waiting for Retry-After: 30 s left", "waiting for Retry-After: 29 s left"), reason


def _worker(tmp_path: Path, db: Path, cfg: Path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    """`storycheck worker` in a subprocess; its stderr lines gathered as they come."""
    proc = subprocess.Popen([sys.executable, "-m", "storycheck_tui", "worker", "--db", str(db), "--config", str(cfg),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "STORYCHECK_LOG_DIR": str(tmp_path / "logs")})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    return proc, lines


def test_a_serving_worker_says_no_proxy_can_come_back_stays_and_resumes_on_new_credentials(tmp_path, socks, capsys):
    """A `storycheck worker` serves many batches: when every proxy refuses its credentials it
    says so (one line, one record) and keeps running; the proxies imported again with the
    right password reach it within a second, with no restart."""
    with Simulator(SimConfig(rate=0)) as sim:
        cfg = write(tmp_path / "c.toml", sim.config_snippet())
        db = tmp_path / "s.db"
        store = open_store(str(db))
        try:
            ops.add_proxies(store, [parse_proxy_line(f"socks5://{SOCKS_USER}:{WRONG_PW}@127.0.0.1:{socks}")])
            batch = ops.create_batch(store, "b", [f"w{i:02d}" for i in range(10)])
        finally:
            store.close()
        proc, lines = _worker(tmp_path, db, cfg)
        try:
            said = wait_for(lambda: [ln for ln in lines if "no proxy can come back by itself" in ln], 20,
                            lambda: f"the worker to say so; it said {lines}")
            assert "auth_rejected (SOCKS5 proxy authentication failed: Invalid username/password)" in said[0]
            assert proc.poll() is None  # still serving
            r = cli(capsys, "proxies", "add", write(tmp_path / "right.txt",
                                                    f"socks5://{SOCKS_USER}:{SOCKS_PW}@127.0.0.1:{socks}\n"), "--db", db)
            assert r.code == 0, r.err

            def finished() -> bool:
                store = open_store(str(db))
                try:
                    return ops.get_batch(store, batch).state == BatchState.FINISHED
                finally:
                    store.close()
            wait_for(finished, 20, lambda: f"the batch to finish; the worker said {lines}" + log_files(tmp_path / "logs")[-5000:])
            wait_for(lambda: any("checks resume" in ln for ln in lines), 5, "the worker to say it resumed")
        finally:
            proc.terminate()
            proc.wait(15)
        assert proc.returncode == 0
        assert sim.stats()["identities"]["direct"]["ok"] == 10
    text = "".join(lines) + log_files(tmp_path / "logs")
    assert WRONG_PW not in text and SOCKS_PW not in text
    assert [p.state for p in rows(db)[1]] == ["healthy"]


def test_worker_until_idle_ends_like_run_when_no_proxy_can_come_back(tmp_path, socks):
    """`worker --until-idle` is what a script waits for: it must not wait forever either."""
    with Simulator(SimConfig(rate=0)) as sim:
        cfg = write(tmp_path / "c.toml", sim.config_snippet())
        db = tmp_path / "s.db"
        proxies = write(tmp_path / "proxies.txt", f"socks5://{SOCKS_USER}:{WRONG_PW}@127.0.0.1:{socks}\n")
        store = open_store(str(db))
        try:
            ops.create_batch(store, "b", ["x.one", "y.two"])
        finally:
            store.close()
        r = cli_subprocess("worker", "--until-idle", "--db", db, "--config", cfg, "--proxies", proxies,
                           env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs")}, timeout=60)
    lines = [ln for ln in r.err.splitlines() if ln.startswith("storycheck: ")]
    assert r.code == 1 and len(lines) == 1, r.err[-3000:]
    assert lines[0].startswith("storycheck: no proxy can come back by itself: no usable proxy: ") and \
        "auth_rejected" in lines[0] and "storycheck worker --batch" not in lines[0], lines[0]
    assert {(j.state, j.attempts) for j in rows(db)[0]} == {("pending", 0)}


def test_the_consoles_proxies_pane_shows_an_auth_rejected_proxy_uncut_and_red():
    """The pane's state column has 11 cells: auth_rejected is shown as "rejected" in red (the
    line under the table spells it out for the selected proxy)."""
    from storycheck_tui.ui.panes.proxies import render_proxy

    cells = ("socks5://bob@10.0.0.7:1080", ("auth_rejected", False, None), 0, 3, None, (),
             "SOCKS5 proxy authentication failed: Invalid username/password")
    state, error = render_proxy(cells)[1], render_proxy(cells)[-1]
    assert state.plain == "rejected" and "red" in str(state.style), (state.plain, state.style)
    assert error.plain.startswith("SOCKS5 proxy authentication failed") and "red" in str(error.style)


def test_run_without_proxies_whose_source_answers_407_pauses_at_once_and_says_why(tmp_path, story_server):
    """A 407 to a request sent direct is no proxy's refusal: the direct route was marked
    auth_rejected, never tried again, and nothing said why, so `run` hung forever (its stall
    watch saw no reason). Now it is the source's auth failure, like a 401: the batch pauses
    with the reason and `run` ends at once, exit 1. Default settings."""
    srv = story_server(lambda u, n: Reply(407, {"error": "proxy auth"}))
    cfg = write(tmp_path / "c.toml", "[source]\nkind = \"http\"\n"
                f"url = \"{srv.base}/stories?u={{username}}\"\nitems = \"items\"\nstory_id = \"pk\"\n"
                f"taken_at = \"taken_at\"\nhealth_url = \"{srv.base}/health\"\n")
    plist = write(tmp_path / "p.txt", "a.one\nb.two\nc.three\n")
    db = tmp_path / "s.db"
    r = cli_subprocess("run", plist, "--config", cfg, "--db", db, env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs")},
                       timeout=30)
    assert r.code == 1, r.err[-3000:]
    assert "paused: the story source refused the credentials (HTTP 407)" in r.out, r.out
    assert "with no proxy configured" in r.out and "3 profiles not checked yet (batch is paused)" in r.out, r.out
    log = log_files(tmp_path / "logs")
    assert "PROXY_AUTH_REJECTED" not in log and "proxies add" not in log + r.err
    jobs, proxy_rows, _ = rows(db)
    assert {(j.state, j.attempts) for j in jobs} == {("pending", 0)} and proxy_rows == []


def test_the_blocked_reason_names_the_direct_route_when_it_cannot_be_used():
    """Without proxies, a direct route cooling or dead (a ``proxy_blocked`` rule's failures)
    was never named: blocked_reason said None, and `run`'s stall limit restarted every tick."""
    from storycheck_tui.config import ProxySettings
    from storycheck_tui.engine import blocked
    from storycheck_tui.engine.proxies import ProxyPool

    pool = ProxyPool([], ProxySettings(dead_after=2))
    assert pool.direct
    assert pool.failure("direct", "proxy authentication required (407)", auth=True) == "cooling"  # not auth_rejected
    reason = blocked.blocked_reason(pool.views(), direct=True, waiting_for_proxy=True, circuit=None, retry_after=0.0)
    assert reason == "cannot send direct (no proxies): direct cooling (proxy authentication required (407))", reason
    pool.retry("direct")
    pool.failure("direct", "the proxy is blocked (HTTP 403)")
    assert pool.state_of("direct") == "dead"
    assert blocked.blocked_reason(pool.views(), direct=True, waiting_for_proxy=False, circuit=None,
                                  retry_after=0.0) == "cannot send direct (no proxies): direct dead (the proxy is blocked (HTTP 403))"


def test_a_retry_of_an_auth_rejected_proxy_that_is_down_keeps_it_auth_rejected(tmp_path, logsetup):
    """The console's r on a proxy whose credentials were refused, while the proxy is down
    (connection refused): the validation fails for another reason, and the proxy went to
    cooling, so checks were sent through it with the same refused credentials. Its credentials
    were never accepted: it stays auth_rejected, its error still the refusal."""
    port = free_port()
    proc = start_pproxy(f"socks5://127.0.0.1:{port}#{SOCKS_USER}:{SOCKS_PW}", "--auth", "0")
    try:
        with Simulator(SimConfig(rate=0)) as sim:
            with Engine(tmp_path, fast_settings(sim_source(sim)), ["d.one", "d.two"],
                        proxies=[f"socks5://{SOCKS_USER}:{WRONG_PW}@127.0.0.1:{port}"]) as eng:
                pool = eng.runner.pool
                key = pool.views()[0].key
                wait_for(lambda: pool.state_of(key) == "auth_rejected", 10, "the proxy to be auth_rejected")
                stop_process(proc)  # the proxy is down now
                before = pool.views()[0].failures
                eng.runner.retry_proxy(key)
                wait_for(lambda: pool.views()[0].failures > before, 10, "the validation to fail")
                view = pool.views()[0]
                assert view.state == "auth_rejected", view
                assert "Invalid username/password" in view.last_error, view.last_error
                # not handed out, and no later validation or failure moves it (cooldowns are 0.2 s here)
                stays(lambda: pool.state_of(key) == "auth_rejected" and pool.acquire() is None, 0.6,
                      "the proxy to stay auth_rejected and out of rotation")
            assert sim.stats()["identities"]["direct"]["requests"] == 0
    finally:
        stop_process(proc)
