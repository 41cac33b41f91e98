"""Reliability: faults of the proxies, through the real engine.

Real proxies on 127.0.0.1: the simulator's proxy ports (healthy, dead, revived), raw-socket
proxies that answer 407 or close the connection, a dead port, and pproxy as a real SOCKS5
proxy with a password. The engine must fail over, mark the bad proxies, never burn a
profile on a proxy's fault, wait when every proxy is down and resume by itself.
"""

from __future__ import annotations

import json
import time

import pytest

from servers import RawServer, answer, close_now, free_port, start_pproxy, wait_for
from servers.harness import check_invariants, engine_run, fast_settings, scalar
from storycheck_tui.config import SourceSettings
from storycheck_tui.sim import SimConfig, Simulator

SOCKS_USER = "sockuser"
SOCKS_PW = "S0cks-Passw0rd-71e4"
WRONG_PW = "Wr0ng-S0cks-pw-0c2d"


def sim_source(sim: Simulator, **kw) -> SourceSettings:
    kw.setdefault("timeout", 1.0)
    return SourceSettings(url=sim.stories_url_template, items="items", story_id="pk", taken_at="taken_at",
                          expires_at="expiring_at", health_url=sim.health_url, **kw)


def proxy_states(run) -> dict[str, str]:
    return {v.label: v.state for v in run.runner.pool.views()}


@pytest.fixture
def socks():
    port = free_port()
    proc = start_pproxy(f"socks5://127.0.0.1:{port}#{SOCKS_USER}:{SOCKS_PW}", "--auth", "0")
    yield port
    proc.terminate()
    proc.wait(5)


def test_broken_proxies_fail_over_and_no_profile_is_burned(tmp_path, socks):
    """A dead port, a 407, a proxy that closes the connection and a SOCKS5 proxy refusing the
    password, next to one good SOCKS5 proxy: every profile succeeds through the good one, each
    broken proxy is taken out of rotation, with the reason in the log."""
    four07 = RawServer(lambda req, n: answer(407, b"", [("Proxy-Authenticate", 'Basic realm="x"')]))
    closer = RawServer(lambda req, n: close_now)
    dead_port = free_port()
    with Simulator(SimConfig(seed=21, rate=0)) as sim, four07, closer:
        proxies = {
            "dead": f"http://127.0.0.1:{dead_port}",
            "407": f"http://127.0.0.1:{four07.port}",
            "closes": f"http://127.0.0.1:{closer.port}",
            "socks-auth": f"socks5://{SOCKS_USER}:{WRONG_PW}@127.0.0.1:{socks}",
            "good": f"socks5://{SOCKS_USER}:{SOCKS_PW}@127.0.0.1:{socks}",
        }
        expected = {
            "dead": "proxy connection failed",
            "407": "proxy authentication required (407)",
            "closes": "the proxy closed the connection before any response",
            "socks-auth": "Invalid username/password",
        }
        settings = fast_settings(sim_source(sim), proxies={"dead_after": 2, "cooldown": 5.0, "validate_every": 30.0},
                                 engine={"workers": 6})
        names = [f"proxy.user{i:02d}" for i in range(30)]
        with engine_run(tmp_path, settings, names, proxy_urls=list(proxies.values())) as run:
            run.wait_done(30)
            states = proxy_states(run)
            rejected = [v for v in run.runner.pool.views() if v.state == "auth_rejected"]
            failovers = run.records(event="PROXY_FAILOVER")
            said = wait_for(lambda: [ln for ln in run.log_text().splitlines() if "PROXY_AUTH_REJECTED" in ln]
                            if run.log_text().count("PROXY_AUTH_REJECTED") >= 2 else None, 5, "two PROXY_AUTH_REJECTED")
            log_text = run.log_text()
            jobs = [run.job(n) for n in names]
        figures = check_invariants(run.db, run.batch_id, log_file=run.log_file, expected_outcome=sim.outcome_for)
        assert figures.succeeded == 30 and figures.failed == 0
        good_label = f"socks5://{SOCKS_USER}@127.0.0.1:{socks}"
        assert {j["proxy"] for j in jobs} == {good_label}, {j["proxy"] for j in jobs}
        for name, detail in expected.items():
            mine = [r for r in failovers if detail in r["message"]]
            assert mine, f"{name}: no PROXY_FAILOVER record saying {detail!r}"
            kind = "ProxyAuthRejected" if name in ("407", "socks-auth") else "ProxyFailed"
            assert all(json.loads(r["details"])["error_type"] == kind for r in mine)
        for label, state in states.items():
            if str(dead_port) in label or str(closer.port) in label:
                assert state in ("cooling", "dead"), (label, state)
        # the two whose credentials were refused, at their first failure (no cooling on the way)
        assert sorted(v.label for v in rejected) == sorted([f"http://127.0.0.1:{four07.port}", good_label])
        assert len(said) == 2 and WRONG_PW not in log_text and SOCKS_PW not in log_text, said
        for line in log_text.splitlines():
            if "PROXY_COOLING" in line or "PROXY_DEAD" in line:
                assert f":{four07.port}" not in line and f":{socks}" not in line, line


def test_all_proxies_dead_the_batch_waits_then_resumes_by_itself(tmp_path):
    with Simulator(SimConfig(seed=22, rate=0, proxies=2, latency=0.02)) as sim:
        sim.set_fault(0, "dead")
        sim.set_fault(1, "dead")
        settings = fast_settings(sim_source(sim), proxies={"dead_after": 2, "cooldown": 0.2, "validate_every": 0.3},
                                 engine={"workers": 4})
        names = [f"wait.user{i:02d}" for i in range(20)]
        with engine_run(tmp_path, settings, names, proxy_urls=sim.proxy_urls) as run:
            wait_for(lambda: set(proxy_states(run).values()) == {"dead"}, 15, "both proxies to be marked dead")
            wait_for(lambda: run.runner.snapshot().waiting_for_proxy, 10, "the batch to wait for a proxy")
            assert run.records(event="NO_PROXY") or "no usable proxy" in run.log_text()
            # waiting, not failing: nothing was checked and nothing was burned
            waited = run.counts()
            assert "failed" not in waited and "succeeded" not in waited, waited
            sim.set_fault(1, "healthy")
            run.wait_done(30)
            assert run.counts() == {"succeeded": 20}, run.counts()
            assert "PROXY_RECOVERED" in run.log_text()
        check_invariants(run.db, run.batch_id, expected_outcome=sim.outcome_for)


def test_every_proxy_dies_mid_run_then_one_comes_back_and_nothing_is_lost(tmp_path):
    with Simulator(SimConfig(seed=23, rate=0, proxies=2, latency=0.1)) as sim:
        settings = fast_settings(sim_source(sim), retry={"deadline": 3.0},
                                 proxies={"dead_after": 2, "cooldown": 0.2, "max_cooldown": 0.5,
                                          "validate_every": 0.3},
                                 engine={"workers": 6})
        names = [f"midrun.user{i:02d}" for i in range(60)]
        with engine_run(tmp_path, settings, names, proxy_urls=sim.proxy_urls) as run:
            wait_for(lambda: run.counts().get("succeeded", 0) >= 5, 15, "some progress")
            sim.set_fault(0, "dead")
            sim.set_fault(1, "dead")
            wait_for(lambda: run.runner.snapshot().waiting_for_proxy, 15, "the batch to wait for a proxy")
            stalled = run.counts().get("succeeded", 0)
            # longer than the check deadline (3 s): jobs in flight must go back, not fail
            wait_for(lambda: run.records(event="NO_PROXY") or "no usable proxy" in run.log_text(), 10, "NO_PROXY")
            time.sleep(4.0)  # the outage itself (not a wait for a condition): it outlasts the 3 s check deadline
            assert "failed" not in run.counts(), f"a profile was burned while every proxy was down: {run.counts()}"
            sim.set_fault(0, "healthy")
            run.wait_done(40)
            assert run.counts() == {"succeeded": 60}, run.counts()
            assert stalled < 60
        check_invariants(run.db, run.batch_id, expected_outcome=sim.outcome_for)


def test_a_proxy_marked_dead_comes_back_and_serves_again(tmp_path):
    with Simulator(SimConfig(seed=24, rate=0, proxies=2, latency=0.05)) as sim:
        sim.set_fault(0, "dead")
        settings = fast_settings(sim_source(sim), proxies={"dead_after": 2, "cooldown": 0.2, "validate_every": 0.3},
                                 engine={"workers": 3})
        names = [f"back.user{i:03d}" for i in range(80)]
        label0 = sim.proxy_urls[0]
        with engine_run(tmp_path, settings, names, proxy_urls=sim.proxy_urls) as run:
            wait_for(lambda: proxy_states(run).get(label0) == "dead", 15, "proxy 0 to be marked dead")
            assert run.records(event="PROXY_FAILOVER")
            served_before = sim.stats()["identities"]["proxy-0"]["ok"]
            sim.set_fault(0, "healthy")
            wait_for(lambda: proxy_states(run).get(label0) == "healthy", 10, "proxy 0 to come back")
            wait_for(lambda: sim.stats()["identities"]["proxy-0"]["ok"] > served_before, 10,
                     "proxy 0 to serve checks again")
            run.wait_done(30)
            assert run.counts() == {"succeeded": 80}
            # the record is logged at the keeper's next pass and written by the log file's own thread
            wait_for(lambda: [ln for ln in run.log_text().splitlines() if "PROXY_RECOVERED" in ln and label0 in ln],
                     5, "a PROXY_RECOVERED record for the proxy that came back")
            # and the database (what other workers and the console see) says so within a sync or two
            wait_for(lambda: scalar(run.db, "SELECT state FROM proxy WHERE label = ?", label0) == "healthy", 5,
                     "the proxy row to say healthy")
