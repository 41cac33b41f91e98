"""One test per defect of the original system (seed/000_a108e1ff2188ddb9.txt, items 1-9).

Each test runs the real engine (build_runner: claimer, check threads, group-commit writer,
keeper, validator) against a real server on 127.0.0.1 (the simulator, or a loopback story
API whose answers the test decides) with a real SQLite file, and asserts on the database
(job rows, batch counters, batch_log rows) and on the log file and ring. Each fails if its
defect comes back.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections import Counter

from helpers import (  # noqa: F401  (fixtures)
    Engine, Reply, assert_counters_match_rows, fast_settings, log_text, logsetup, ring_events, sim_source,
    stories_body, story_server, wait_for,
)
from storycheck_tui import logs
from storycheck_tui.sim import SimConfig, Simulator
from storycheck_tui.store.models import Story

USER_IN_LINE = re.compile(r"\busername=([^ )]+)")


def _file_events(text: str, event: str) -> list[str]:
    """Usernames of the log-file lines of ``event``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == event:
            m = USER_IN_LINE.search(line)
            out.append(m.group(1) if m else "")
    return out


def _mixed(u: str, n: int) -> Reply:
    """good* valid, bad* malformed JSON, err* 503, shape* wrong shape, html* an HTML page."""
    if u.startswith("bad"):
        return Reply(200, b'{"items": [{"pk": "1", "taken_')
    if u.startswith("err"):
        return Reply(503, {"error": "backend down"})
    if u.startswith("shape"):
        return Reply(200, {"items": {"pk": "1"}})
    if u.startswith("html"):
        return Reply(200, b"<html><body>Please log in</body></html>")
    return Reply(200, stories_body(2, u))


GOOD = [f"good{i}" for i in range(6)]
BAD = ["bad1", "bad2", "err1", "err2", "shape1", "html1"]


def test_success_is_logged_only_for_a_verified_success(tmp_path, logsetup, story_server):
    """Seed defect 1: STORY_CHECK_SUCCESS was logged right after calling check_story, without
    verifying that the check succeeded. Now: exactly one success record per succeeded job,
    none for a job whose answer was malformed JSON, a 5xx, a wrong shape or HTML."""
    srv = story_server(_mixed)
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 2}), GOOD + BAD) as eng:
        eng.done()
        jobs = eng.jobs()
        succeeded = {j.username for j in jobs if j.state == "succeeded"}
        assert succeeded == set(GOOD)
        assert {j.username for j in jobs if j.state == "failed"} == set(BAD)
        per_job = Counter(r.job for r in eng.logs(logs.STORY_CHECK_SUCCESS))
        for j in jobs:
            assert per_job[j.id] == (1 if j.state == "succeeded" else 0), (j.username, j.state, per_job[j.id])
        # the rows name the user, and the user's record in the log file agrees
        assert {r.username for r in eng.logs(logs.STORY_CHECK_SUCCESS)} == set(GOOD)
    in_file = Counter(_file_events(log_text(logsetup), logs.STORY_CHECK_SUCCESS))
    assert in_file == Counter(GOOD)
    assert {e.username for e in ring_events(logsetup, logs.STORY_CHECK_SUCCESS)} == set(GOOD)


def test_failures_are_logged_and_reported(tmp_path, logsetup, story_server, capsys):
    """Seed defect 2: failures inside check_story were not logged nor reported to the batch
    processor, so every check looked successful. Now: each failed job has its error kind and
    message, one CHECK_FAILED batch_log row at ERROR, a line in the log file, and the run's
    summary reports the failures by kind (exit code 1)."""
    from storycheck_tui.cli.run import print_summary

    srv = story_server(_mixed)
    users = GOOD[:3] + ["err1", "err2", "bad1"]
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 2}), users) as eng:
        b = eng.done()
        failed = {j.username: j for j in eng.jobs() if j.state == "failed"}
        assert set(failed) == {"err1", "err2", "bad1"}
        assert failed["err1"].error_kind == "source_unavailable" and "HTTP 503" in failed["err1"].error_message
        assert failed["bad1"].error_kind == "bad_response" and "not valid JSON" in failed["bad1"].error_message
        rows = eng.logs(logs.CHECK_FAILED)
        assert Counter(r.username for r in rows) == Counter(list(failed))
        for r in rows:
            job = failed[r.username]
            assert r.level == "ERROR" and r.job == job.id and r.batch == b.id
            assert job.error_kind in r.message and job.error_message in r.message
            assert json.loads(r.details)["error_kind"] == job.error_kind
        # a retry was logged for each transient failure before it was given up
        retried = Counter(r.username for r in eng.logs(logs.RETRY_SCHEDULED))
        assert retried["err1"] == 1 and retried["err2"] == 1 and retried["bad1"] == 1
        assert b.failed_checks == 3
        capsys.readouterr()
        code = print_summary(eng.store, [b.id], 1.0)
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"3 succeeded, 3 failed", out)
    assert re.search(r"error source_unavailable\s+2", out) and re.search(r"error bad_response\s+1", out)
    assert Counter(_file_events(log_text(logsetup), logs.CHECK_FAILED)) == Counter(list(failed))


def test_batch_counters_count_failures_too(tmp_path, logsetup, story_server):
    """Seed defect 3: completed_profiles counted successes only and failed_checks was not kept.
    Now: completed == succeeded + failed == job rows, failed_checks counts failures, and the
    invariant holds at every moment of the run (read in one statement while it runs)."""
    srv = story_server(lambda u, n: Reply(503) if u.startswith("err") else Reply(200, stories_body(1, u), delay=0.02))
    users = [f"ok{i}" for i in range(24)] + [f"err{i}" for i in range(8)]
    settings = fast_settings(srv.source(), retry={"max_attempts": 2}, engine={"workers": 3})
    snapshot_sql = (
        "SELECT b.completed_profiles, b.successful_checks, b.failed_checks, "
        "(SELECT COUNT(*) FROM job WHERE batch_id = b.id AND state = 'succeeded'), "
        "(SELECT COUNT(*) FROM job WHERE batch_id = b.id AND state = 'failed'), b.state FROM batch b WHERE b.id = ?")
    with Engine(tmp_path, settings, users) as eng:
        seen = []

        def consistent_until_finished() -> bool:
            done, ok, failed, ok_rows, failed_rows, state = eng.store.db.execute_sql(snapshot_sql,
                                                                                    (eng.batch_id,)).fetchone()
            assert (done, ok, failed) == (ok_rows + failed_rows, ok_rows, failed_rows), (done, ok, failed, ok_rows,
                                                                                         failed_rows)
            seen.append(done)
            return state == "finished"

        wait_for(consistent_until_finished, 30, "the batch to finish", interval=0.01)
        assert seen[0] < 32 and len(set(seen)) >= 2  # observed mid-run, not only at the end
        b = eng.batch()
        assert (b.completed_profiles, b.successful_checks, b.failed_checks) == (32, 24, 8)
        assert_counters_match_rows(eng.store, eng.batch_id)
        finished = wait_for(lambda: eng.logs(logs.BATCH_FINISHED), 5, "the BATCH_FINISHED row")
        assert len(finished) == 1 and finished[0].batch == eng.batch_id


def test_transient_errors_are_retried_then_reported(tmp_path, logsetup, story_server):
    """Seed defect 4: check_story exited early on rate limits and API errors without checking
    the profile and without retrying. Now: 5xx, timeouts and 429 are retried within one
    claim until a valid answer; a source that stays down is reported after max_attempts."""

    def respond(u: str, n: int) -> Reply:
        if u == "flaky" and n <= 2:
            return Reply(503, {"error": "try again"})
        if u == "slowfirst" and n == 1:
            return Reply(200, stories_body(1, u), delay=1.0)  # longer than the source timeout
        if u == "limited" and n == 1:
            return Reply(429, {"error": "slow down"}, headers={"Retry-After": "0"})
        if u == "down":
            return Reply(502, {"error": "bad gateway"})
        return Reply(200, stories_body(1, u))

    srv = story_server(respond)
    settings = fast_settings(srv.source(timeout=0.3), retry={"max_attempts": 3})
    with Engine(tmp_path, settings, ["flaky", "slowfirst", "limited", "down", "fine"]) as eng:
        eng.done()
        j = {x.username: x for x in eng.jobs()}
        assert j["flaky"].state == "succeeded" and j["flaky"].tries == 3 and srv.count("flaky") == 3
        assert j["slowfirst"].state == "succeeded" and srv.count("slowfirst") == 2
        assert j["limited"].state == "succeeded" and srv.count("limited") == 2
        assert j["fine"].state == "succeeded" and srv.count("fine") == 1
        # retried inside one claim: the job was never handed back to the queue
        assert all(x.attempts == 1 for x in j.values())
        # given up after exactly max_attempts requests, and reported
        assert j["down"].state == "failed" and j["down"].error_kind == "source_unavailable"
        assert srv.count("down") == 3 and j["down"].tries == 3 and j["down"].http_status == 502
        retries = Counter(r.username for r in eng.logs(logs.RETRY_SCHEDULED))
        assert retries == Counter({"flaky": 2, "slowfirst": 1, "down": 2})
        assert [r.username for r in eng.logs(logs.RATE_LIMITED)] == ["limited"]
        assert [r.username for r in eng.logs(logs.CHECK_FAILED)] == ["down"]
        assert "read timeout" in eng.logs(logs.RETRY_SCHEDULED, username="slowfirst")[0].message


def test_checker_and_batch_share_one_log(tmp_path, logsetup, story_server):
    """Seed defect 5: the checker logged to its own file (story_checking.log), invisible in the
    batch logs. Now: one logger tree with one set of handlers; the checker's retry records, the
    batch operations' records and the results land in the same file, ring and batch_log."""
    root_handlers = list(logging.getLogger().handlers)
    again = logs.setup_logging(tmp_path / "elsewhere")  # a second setup adds nothing
    assert again is logsetup and len(logs.log.handlers) == 3
    srv = story_server(lambda u, n: Reply(503) if (u == "flaky" and n == 1) or u == "down" else Reply())
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 2}), ["flaky", "down", "ok"]) as eng:
        eng.done()
        wait_for(lambda: eng.logs(logs.BATCH_FINISHED), 5, "the BATCH_FINISHED row")
        rows = eng.logs(batch_id=eng.batch_id)
    wanted = {logs.BATCH_CREATED, logs.RETRY_SCHEDULED, logs.STORY_CHECK_SUCCESS, logs.CHECK_FAILED,
              logs.BATCH_FINISHED}
    assert wanted <= {r.event for r in rows}
    text = log_text(logsetup)
    ring = ring_events(logsetup)
    # every batch_log row is also in the file and in the ring (same event, same user)
    for r in rows:
        assert any(e.event == r.event and e.username == r.username and e.batch_id == r.batch for e in ring), r.message
        assert any(r.event in line and (r.username is None or f"username={r.username}" in line)
                   for line in text.splitlines()), r.message
    # one file, one logger with handlers; nothing added to the root logger
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["storycheck.log"]
    assert not (tmp_path / "elsewhere").exists()
    assert logging.getLogger().handlers == root_handlers
    for name, lg in logging.Logger.manager.loggerDict.items():
        if name.startswith("storycheck.") and isinstance(lg, logging.Logger):
            assert lg.handlers == [] and lg.propagate, name


def test_success_needs_a_parsed_valid_answer(tmp_path, logsetup, story_server):
    """Seed defect 6: success could be recorded although no valid result was obtained. Now only
    a parsed, valid answer is a success: outcomes and story counts match what the source sent,
    and every answer that is not valid fails as bad_response with no story stored."""
    now = 1_700_000_000
    answers = {
        "two": Reply(200, {"items": [{"pk": "a", "taken_at": now}, {"pk": "b", "taken_at": now - 5}]}),
        "none": Reply(200, {"items": []}),
        "gone": Reply(404, {"error": "not found"}),
        "closed": Reply(403, {"error": "private"}),
        "truncated": Reply(200, b'{"items": [{"pk": "a", "tak'),
        "html": Reply(200, b"<!doctype html><title>Login</title>"),
        "notalist": Reply(200, {"items": "none today"}),
        "nokey": Reply(200, {"data": []}),
        "nopk": Reply(200, {"items": [{"taken_at": now}]}),
        "badtime": Reply(200, {"items": [{"pk": "a", "taken_at": "yesterday"}]}),
        "empty": Reply(200, b""),
        "toplist": Reply(200, [{"pk": "a", "taken_at": now}]),
    }
    srv = story_server(lambda u, n: answers[u])
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 2}), list(answers)) as eng:
        eng.done()
        j = {x.username: x for x in eng.jobs()}
        expected = {"two": ("has_stories", 2), "none": ("no_stories", 0), "gone": ("not_found", 0),
                    "closed": ("private", 0)}
        for user, (outcome, count) in expected.items():
            assert (j[user].state, j[user].outcome, j[user].story_count or 0) == ("succeeded", outcome, count), user
        assert j["two"].latest_story_at == now
        for user in set(answers) - set(expected):
            assert (j[user].state, j[user].error_kind, j[user].outcome) == ("failed", "bad_response", None), user
            assert srv.count(user) == 2  # a bad body is retried before it is given up
        assert sorted((s.username, s.story_id) for s in Story.select()) == [("two", "a"), ("two", "b")]
        assert {r.username for r in eng.logs(logs.STORY_CHECK_SUCCESS)} == set(expected)
        assert eng.batch().successful_checks == 4 and eng.batch().failed_checks == len(answers) - 4


def test_error_messages_name_user_proxy_status_and_cause(tmp_path, logsetup):
    """Seed defect 7: error messages were too generic to diagnose. Now every retry, failover and
    final failure record names the username, the (masked) proxy, the HTTP status and the
    cause with its exception type, in batch_log, in the job row and in the log file."""
    with Simulator(SimConfig(proxies=2, rate=0, error_rate=1.0, faults={0: "dead"})) as sim:
        dead, live = sim.proxy_urls
        settings = fast_settings(sim_source(sim), retry={"max_attempts": 2}, proxies={"dead_after": 10})
        with Engine(tmp_path, settings, ["alice.one", "bob_two"], proxies=[dead, live]) as eng:
            eng.done()
            for job in eng.jobs():
                assert job.state == "failed" and job.error_kind == "source_unavailable"
                assert job.proxy == live and job.http_status in (500, 502, 503)
                [row] = eng.logs(logs.CHECK_FAILED, username=job.username)
                assert row.proxy == live and row.job == job.id
                for part in (job.username, live, f"HTTP {job.http_status}", "source_unavailable",
                             f"source error HTTP {job.http_status}"):
                    assert part in row.message, (part, row.message)
                details = json.loads(row.details)
                assert details["status"] == job.http_status and details["error_kind"] == "source_unavailable"
                for r in eng.logs(logs.RETRY_SCHEDULED, username=job.username):
                    d = json.loads(r.details)
                    assert r.proxy == live and d["error_type"] == "SourceUnavailable" and d["status"] in (500, 502, 503)
                    assert job.username in r.message and "HTTP 50" in r.message
            failovers = eng.logs(logs.PROXY_FAILOVER)
            assert failovers, "the dead proxy was never tried"
            for r in failovers:
                assert r.proxy == dead and r.username in r.message and dead in r.message
                assert "proxy connection failed" in r.message and "ConnectError" in r.message
                assert json.loads(r.details)["error_type"] == "ProxyFailed"
    failed_lines = [ln for ln in log_text(logsetup).splitlines() if " CHECK_FAILED " in ln]
    assert len(failed_lines) == 2
    for line in failed_lines:
        assert f"proxy={live}" in line and "username=" in line and "status=5" in line
        assert "error_type=source_unavailable" in line


def _unpaced(eng: Engine) -> Engine:
    """The source's pace set far above what these tries need, before the runner starts.

    Why: the pace starts at 5 requests/s and only answers other than 5xx and 429 raise it, so
    an always-failing source keeps it there, and the tries of 16 profiles came seconds apart
    whatever the backoff (96 tries: 19 s), most gaps set by the pace, not by the waits under
    test. Unpaced, the gaps between tries are the backoff's and the Retry-After's own (a
    missing backoff sleep fails the test either way); the pace has its own tests (test_pace.py)."""
    eng.runner.pace.adopt(1000.0, "unpaced: the backoff alone spaces the tries")
    return eng


def test_backoff_grows_and_retry_after_is_honoured(tmp_path, logsetup, story_server):
    """Seed defect 8: little retry logic and no backoff. Now: waits between tries grow
    exponentially (full jitter, capped by max_wait); a 429's Retry-After blocks the identity
    (here the direct route) for that long; and 429s spend none of the profile's attempts."""
    # (a) growing waits: 16 profiles whose source is always down, 6 tries each
    srv = story_server(lambda u, n: Reply(503))
    users = [f"down{i}" for i in range(16)]
    retry = {"max_attempts": 6, "base_wait": 0.04, "max_wait": 0.32}
    with Engine(tmp_path / "a", fast_settings(srv.source(), retry=retry, engine={"workers": 8}), users,
                start=False) as eng:
        _unpaced(eng).runner.start()
        eng.done(timeout=30)
        assert all(j.state == "failed" and j.tries == 6 for j in eng.jobs())
        planned = {u: [json.loads(r.details)["wait_s"] for r in eng.logs(logs.RETRY_SCHEDULED, username=u)]
                   for u in users}
    caps = [min(0.32, 0.04 * 2 ** k) for k in range(5)]  # 0.04 0.08 0.16 0.32 0.32: doubling, capped
    for u in users:
        waits, t = planned[u], srv.times(u)
        assert len(waits) == 5 and len(t) == 6
        # each wait is drawn under its cap (full jitter), and the next try really came no sooner
        assert all(0.0 <= w <= c + 1e-9 for w, c in zip(waits, caps)), (u, waits)
        assert all(b - a >= w - 0.001 for a, b, w in zip(t, t[1:], waits)), (u, waits, t)
    # the caps really grow: some wait at each step exceeds the previous step's cap ...
    for k in (1, 2, 3):
        assert max(planned[u][k] for u in users) > caps[k - 1], k
    # ... and the late waits are much longer than the early ones
    early = statistics.mean(planned[u][0] + planned[u][1] for u in users)
    late = statistics.mean(planned[u][3] + planned[u][4] for u in users)
    assert late > 2.5 * early, (early, late)

    # (b) Retry-After 0.5 s on the direct route delays the next request by at least 0.5 s;
    # (c) a profile rate-limited 10 times still succeeds with max_attempts=2
    def respond(u: str, n: int) -> Reply:
        if u == "a_retry_after" and n <= 3:
            return Reply(429, headers={"Retry-After": "0.5"})
        if u == "b_limited" and n <= 10:
            return Reply(429, headers={"Retry-After": "0"})
        return Reply(200, stories_body(1, u))

    srv2 = story_server(respond)
    settings = fast_settings(srv2.source(), retry={"max_attempts": 2}, engine={"workers": 1})
    with Engine(tmp_path / "b", settings, ["a_retry_after", "b_limited"], start=False) as eng:
        _unpaced(eng).runner.start()
        eng.done(timeout=30)
        j = {x.username: x for x in eng.jobs()}
        assert j["a_retry_after"].state == "succeeded" and srv2.count("a_retry_after") == 4
        assert j["b_limited"].state == "succeeded" and srv2.count("b_limited") == 11
        assert j["b_limited"].tries == 11 and j["b_limited"].attempts == 1
        assert len(eng.logs(logs.RATE_LIMITED, username="b_limited")) == 10
        ra = eng.logs(logs.RATE_LIMITED, username="a_retry_after")
        assert len(ra) == 3 and all("retry after 0.5 s" in r.message for r in ra)
    arrivals = srv2.arrivals
    limited_429 = [i for i, a in enumerate(arrivals) if a.username == "a_retry_after"][:3]
    for i in limited_429:
        assert arrivals[i + 1].at - arrivals[i].at >= 0.5, [round(a.at - arrivals[0].at, 3) for a in arrivals]


def test_failed_proxies_fail_over_and_are_revalidated(tmp_path, logsetup):
    """Seed defect 9: proxies became disabled after failures with no validation and no failover.
    Now a dead proxy port makes the check fail over to another proxy (PROXY_FAILOVER) and the
    profile is still checked; the proxy goes cooling then dead; the validator re-checks it and,
    once the port is back, brings it back to healthy (PROXY_RECOVERED) and into service."""
    with Simulator(SimConfig(proxies=2, rate=0, faults={0: "dead"})) as sim:
        dead, live = sim.proxy_urls
        settings = fast_settings(sim_source(sim, timeout=1.0),
                                 proxies={"dead_after": 2, "cooldown": 0.1, "max_cooldown": 0.3, "validate_every": 0.2})
        users = [f"user{i}" for i in range(6)]
        with Engine(tmp_path, settings, users, proxies=[dead, live]) as eng:
            eng.done()
            jobs = {j.id: j for j in eng.jobs()}
            assert all(j.state == "succeeded" and j.proxy == live for j in jobs.values())
            failovers = eng.logs(logs.PROXY_FAILOVER)
            assert failovers and all(r.proxy == dead for r in failovers)
            assert all(jobs[r.job].state == "succeeded" for r in failovers)
            assert not eng.logs(logs.CHECK_FAILED)

            def state_of(label: str) -> str:
                return next(v.state for v in eng.runner.snapshot().proxies if v.label == label)

            wait_for(lambda: state_of(dead) == "dead", 10, "the dead port's proxy to be marked dead")
            wait_for(lambda: eng.proxy_row(dead).state == "dead", 10, "the dead state to reach the database")
            events = {e.event for e in ring_events(logsetup) if e.proxy == dead}
            assert {logs.PROXY_COOLING, logs.PROXY_DEAD} <= events
            health_before = sim.stats()["identities"]["proxy-0"]["health"]

            sim.set_fault(0, "healthy")
            wait_for(lambda: state_of(dead) == "healthy", 10, "the validator to bring the proxy back")
            wait_for(lambda: eng.proxy_row(dead).state == "healthy", 10, "the database to say healthy")
            assert sim.stats()["identities"]["proxy-0"]["health"] > health_before
            wait_for(lambda: any(e.proxy == dead for e in ring_events(logsetup, logs.PROXY_RECOVERED)), 5,
                     "PROXY_RECOVERED")
            # back in service: a new batch goes through it too
            from storycheck_tui.store import batches as ops

            b2 = ops.create_batch(eng.store, "second", [f"again{i}" for i in range(6)])
            eng.done(b2)
            assert {j.proxy for j in eng.jobs(b2)} == {dead, live}
            assert sim.stats()["identities"]["proxy-0"]["ok"] > 0
    assert any("PROXY_RECOVERED" in ln and dead in ln for ln in log_text(logsetup).splitlines())
