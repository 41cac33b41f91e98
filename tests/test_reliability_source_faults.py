"""Reliability: faults of the story source, through the real engine.

The real Runner (claimer, check threads, group-commit writer) on a real SQLite file, against
real loopback servers: the simulator, and a raw-socket server that misbehaves on purpose.
Every fault is tried twice: once as a passing hiccup (the profile must still succeed, and the
retry is in the log with its detail), once for good (the profile ends in the right error
kind, with its detail in the job row, in batch_log and in the log file).
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass

import pytest

from servers import (
    Backlog, RawServer, answer, drip, hang, huge, json_answer, redirect, reset_mid_body, wait_for,
)
from servers.harness import check_log_file, engine_run, fast_settings
from storycheck_tui.config import SourceSettings
from storycheck_tui.sim import SimConfig, Simulator

OK_BODY = {"user": {"username": "x"}, "items": [{"pk": "s1", "taken_at": 1_700_000_000}]}
TIMEOUT = 0.4  # seconds per socket operation; the per-request wall deadline is 3x this
DEADLINE = 3 * TIMEOUT


@dataclass(frozen=True)
class Fault:
    behaviour: object
    kind: str  # the job's error_kind when the fault never goes away
    detail: str  # what the message must say
    hiccup: int = 1  # requests that fault before the source recovers (once.*)


def _faults(self_url) -> dict[str, Fault]:
    return {
        "e500": Fault(answer(500, "internal error [bold]x[/bold]"), "source_unavailable", "source error HTTP 500"),
        "e502": Fault(answer(502, "<html>bad gateway</html>"), "source_unavailable", "source error HTTP 502"),
        "e503": Fault(answer(503, "maintenance"), "source_unavailable", "source error HTTP 503: maintenance"),
        "readtimeout": Fault(hang, "source_unavailable", f"read timeout ({TIMEOUT:g}s)"),
        "reset": Fault(reset_mid_body(), "source_unavailable", "connection reset mid-body"),
        "closed": Fault(lambda s, r, srv: None, "source_unavailable",
                        "the source closed the connection before any response"),
        "badjson": Fault(answer(200, '{"items": [{"pk": 1,'), "bad_response", "response is not valid JSON"),
        "html": Fault(answer(200, "<html><body>502 Bad Gateway</body></html>"), "bad_response",
                      "response is not valid JSON"),
        "shape": Fault(json_answer({"items": {"pk": "1"}}), "bad_response", "expected a list at 'items', found dict"),
        "noitems": Fault(json_answer({"data": []}), "bad_response", "found dict without key 'items'"),
        "itemshape": Fault(json_answer({"items": [{"taken_at": 1}]}), "bad_response", "item 0: field 'pk' is missing"),
        "huge": Fault(huge(5_000_000), "bad_response", "response body over 10000 bytes (Content-Length 5000000)"),
        "hugechunked": Fault(huge(5_000_000, chunked=True), "bad_response", "response body over 10000 bytes"),
        "drip": Fault(drip(0.1), "source_unavailable", f"read deadline exceeded ({DEADLINE:g}s)"),
        "dripheaders": Fault(drip(0.1, headers_too=True), "source_unavailable",
                             f"read deadline exceeded ({DEADLINE:g}s)"),
        "redirectloop": Fault(None, "bad_response", "too many redirects", hiccup=6),
    }


def _script(faults: dict[str, Fault]):
    def script(req, n):
        user = req.username or ""
        mode, _, name = user.partition(".")
        fault = faults.get(name)
        if fault is None or (mode == "once" and n > fault.hiccup):
            return json_answer(OK_BODY)
        if name == "redirectloop":
            return redirect(f"/v1/stories?username={user}")
        return fault.behaviour
    return script


def test_every_source_fault_ends_in_the_right_outcome_with_its_detail_logged(tmp_path):
    faults = _faults(None)
    with RawServer(_script(faults)) as srv:
        src = SourceSettings(url=srv.stories_url(), items="items", timeout=TIMEOUT, max_body_bytes=10_000)
        settings = fast_settings(src, retry={"max_attempts": 2}, engine={"workers": 12})
        names = [f"{mode}.{f}" for f in faults for mode in ("once", "always")]
        started = time.monotonic()
        with engine_run(tmp_path, settings, names) as run:
            run.wait_done(60)
            took = time.monotonic() - started
            text = run.log_text()
            for name, fault in faults.items():
                ok = run.job(f"once.{name}")
                assert ok["state"] == "succeeded" and ok["outcome"] == "has_stories", (name, ok)
                retries = run.records(f"once.{name}", "RETRY_SCHEDULED")
                assert retries and fault.detail in retries[0]["message"], (name, retries)
                assert json.loads(retries[0]["details"])["error_type"] in ("SourceUnavailable", "BadResponse")

                bad = run.job(f"always.{name}")
                assert bad["state"] == "failed", (name, bad)
                assert bad["error_kind"] == fault.kind, (name, bad["error_kind"], bad["error_message"])
                assert fault.detail in bad["error_message"], (name, bad["error_message"])
                assert "\n" not in bad["error_message"] and "\x1b" not in bad["error_message"]
                assert bad["tries"] == 2, (name, bad["tries"])  # max_attempts, no more
                failed = run.records(f"always.{name}", "CHECK_FAILED")
                assert len(failed) == 1 and fault.detail in failed[0]["message"], (name, failed)
                assert failed[0]["level"] == "ERROR"
                assert any(fault.detail in line and f"username=always.{name}" in line
                           for line in text.splitlines() if "CHECK_FAILED" in line), name
            check_log_file(run.log_file)
        # the drip and the hang were cut by the deadline and the read timeout, not waited out
        assert took < 15, f"the faults took {took:.1f}s"
        assert not [n for n in srv.notes if "huge body" in n], "a too-large body was read to its end"
    assert len(faults) >= 15


def test_a_dripping_source_cannot_hold_a_check_past_its_deadline(tmp_path):
    with RawServer(lambda req, n: drip(0.05)) as srv:
        src = SourceSettings(url=srv.stories_url(), items="items", timeout=TIMEOUT)
        settings = fast_settings(src, retry={"max_attempts": 3, "base_wait": 0.01, "max_wait": 0.01})
        with engine_run(tmp_path, settings, ["drip.only"]) as run:
            run.wait_done(30)
            job = run.job("drip.only")
        hits = srv.hits("drip.only")
        assert job["state"] == "failed" and job["error_kind"] == "source_unavailable"
        assert len(hits) == 3
        # each request ended at its wall deadline (3 x timeout), although a byte came every 50 ms
        gaps = [b.received - a.received for a, b in zip(hits, hits[1:])]
        assert all(DEADLINE - 0.1 <= g <= DEADLINE + 1.0 for g in gaps), gaps


def test_connect_timeout_to_the_source(tmp_path):
    backlog = Backlog()
    try:
        src = SourceSettings(url=f"http://127.0.0.1:{backlog.port}/v1/stories?username={{username}}", items="items",
                             timeout=0.3)
        settings = fast_settings(src, retry={"max_attempts": 2})
        started = time.monotonic()
        with engine_run(tmp_path, settings, ["connect.timeout"]) as run:
            run.wait_done(20)
            job = run.job("connect.timeout")
            records = run.records("connect.timeout")
        assert time.monotonic() - started < 10
        assert job["state"] == "failed" and job["error_kind"] == "source_unavailable", job
        assert "timed out connecting to the source (0.3s)" in job["error_message"]
        assert any(r["event"] == "RETRY_SCHEDULED" and "timed out connecting" in r["message"] for r in records)
    finally:
        backlog.close()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_retry_after_is_honoured_then_the_check_succeeds(tmp_path, form):
    def script(req, n):
        if n <= 2:
            value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
            return answer(429, '{"error": "slow down"}', [("Retry-After", value)])
        return json_answer(OK_BODY)

    with RawServer(script) as srv:
        src = SourceSettings(url=srv.stories_url(), items="items", timeout=2.0)
        settings = fast_settings(src, engine={"workers": 2})
        with engine_run(tmp_path, settings, ["limited.user"]) as run:
            run.wait_done(20)
            job = run.job("limited.user")
            limited = run.records("limited.user", "RATE_LIMITED")
        hits = srv.hits("limited.user")
    assert job["state"] == "succeeded" and job["outcome"] == "has_stories", job
    assert job["attempts"] == 1  # a 429 is not the profile's fault: no attempt was spent
    assert len(hits) == 3 and len(limited) == 2
    assert all("retry after" in r["message"] and json.loads(r["details"])["status"] == 429 for r in limited)
    gaps = [b.received - a.received for a, b in zip(hits, hits[1:])]
    assert all(g >= 0.95 for g in gaps), f"Retry-After not honoured: next tries after {gaps}"


def test_a_rate_limiting_simulator_slows_the_batch_but_every_profile_succeeds(tmp_path):
    with Simulator(SimConfig(seed=11, rate=20.0, burst=2.0, retry_after=1)) as sim:
        src = SourceSettings(url=sim.stories_url_template, items="items", story_id="pk", taken_at="taken_at",
                             expires_at="expiring_at", health_url=sim.health_url, timeout=2.0)
        # paced a little above what the source allows, so it answers 429 now and then
        settings = fast_settings(src, engine={"workers": 6}, proxies={"rate": 40.0, "burst": 4.0})
        names = [f"sim.limited{i:02d}" for i in range(20)]
        with engine_run(tmp_path, settings, names) as run:
            run.wait_done(40)
            counts = run.counts()
            limited = run.records(event="RATE_LIMITED")
            wrong = [n for n in names if run.job(n)["outcome"] != sim.outcome_for(n)]
        assert counts == {"succeeded": 20}, counts
        assert not wrong
        assert sim.stats()["total"]["rate_limited"] > 0 and limited


def test_401_pauses_the_batch_with_a_clear_record_and_burns_nothing(tmp_path):
    with Simulator(SimConfig(seed=2, rate=0, api_key="the-right-key-1234", latency=0.05)) as sim:
        src = SourceSettings(url=sim.stories_url_template, items="items", story_id="pk", taken_at="taken_at",
                             health_url=sim.health_url, headers={"x-access-key": "a-wrong-key-5678"}, timeout=2.0)
        settings = fast_settings(src, engine={"workers": 4, "claim_size": 8})
        names = [f"auth.user{i:02d}" for i in range(40)]
        with engine_run(tmp_path, settings, names) as run:
            wait_for(lambda: run.runner.snapshot().batches and run.runner.snapshot().batches[0].state == "paused",
                     15, "the batch to pause")
            wait_for(lambda: run.counts() == {"pending": 40}, 10, "every claimed job to be handed back")
            assert sim.stats()["total"]["rejected"] <= 8 + 4, "the batch kept sending requests after a 401"
            paused = [r for r in run.records(event="BATCH_PAUSED") if r["level"] == "ERROR"]
            assert paused and "HTTP 401" in paused[0]["message"] and "API key" in paused[0]["message"]
            with __import__("sqlite3").connect(run.db) as con:
                state, reason, failed = con.execute(
                    "SELECT state, state_reason, failed_checks FROM batch WHERE id = ?", (run.batch_id,)).fetchone()
                attempts = con.execute("SELECT MAX(attempts) FROM job").fetchone()[0]
            assert state == "paused" and "HTTP 401" in reason and failed == 0
            assert attempts == 0, "a 401 spent an attempt"
            assert "HTTP 401" in run.log_text()

            # the operator fixes the key on the source side and resumes: nothing was lost
            sim.update(api_key="a-wrong-key-5678")
            run.runner.resume(run.batch_id)
            run.wait_done(30)
            assert run.counts() == {"succeeded": 40}
