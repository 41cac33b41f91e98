"""The `storycheck` command: exit codes, one-line input errors, summaries, exports, logs,
batch and proxy commands, the headless demo, and secrets kept out of every output.

Commands run in-process through ``storycheck_tui.cli.main(argv)`` (stdout/stderr captured with
capsys, each call with its own logging setup like a fresh process), or as a subprocess where
the real exit code of a process matters. Real simulator / loopback servers, real SQLite files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from helpers import (  # noqa: F401  (fixtures)
    Reply, cli, cli_subprocess, stories_body, story_server,
)
from storycheck_tui import logs
from storycheck_tui.sim import ProxyFault, SimConfig, Simulator
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import Batch, BatchLog, Job, Proxy

FAST = """
[retry]
max_attempts = 2
base_wait = 0.01
max_wait = 0.05
deadline = 20.0

[proxies]
rate = 200.0
burst = 20.0
cooldown = 0.2
max_cooldown = 1.0
validate_every = 0.2

[engine]
workers = 4
commit_every = 0.05
heartbeat_every = 0.5
grace_seconds = 2.0
"""


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYCHECK_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("STORYCHECK_DB", raising=False)


@pytest.fixture
def sim():
    with Simulator(SimConfig(rate=0)) as s:
        yield s


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sim_config(tmp_path: Path, sim: Simulator, extra: str = "") -> Path:
    return write(tmp_path / "storycheck.toml", f'[source]\nkind = "sim"\nurl = "{sim.api_url}"\ntimeout = 2.0\n{extra}\n{FAST}')


def http_config(tmp_path: Path, base: str) -> Path:
    return write(tmp_path / "storycheck.toml", f"""[source]
url = "{base}/stories?u={{username}}"
items = "items"
health_url = "{base}/health"
timeout = 2.0
{FAST}""")


def profiles(tmp_path: Path, names: list[str], name: str = "profiles.txt") -> Path:
    return write(tmp_path / name, "\n".join(names) + "\n")


def db_rows(db: Path):
    """(batches, jobs, log rows) read from the database file."""
    store = open_store(str(db))
    try:
        return list(Batch.select().order_by(Batch.id)), list(Job.select().order_by(Job.id)), \
            list(BatchLog.select().order_by(BatchLog.id))
    finally:
        store.close()


def make_empty_db(db: Path) -> None:
    open_store(str(db)).close()


# ------------------------------------------------------------------------------------------
# run: exit codes and summaries
# ------------------------------------------------------------------------------------------


def test_run_exits_0_when_every_profile_is_checked(tmp_path, sim, capsys):
    names = ["stories_ann", "stories_bob", "nostories_cat", "private_dan", "missing_eve", "@Stories_Fay"]
    db = tmp_path / "sc.db"
    r = cli(capsys, "run", profiles(tmp_path, names), "--config", sim_config(tmp_path, sim), "--db", db)
    assert r.code == 0, r.err
    [b], jobs, _ = db_rows(db)
    assert (b.state, b.total_profiles, b.successful_checks, b.failed_checks) == ("finished", 6, 6, 0)
    assert "stories_fay" in {j.username for j in jobs}  # normalised: no '@', lower case
    outcomes = Counter(j.outcome for j in jobs)
    assert outcomes == {"has_stories": 3, "no_stories": 1, "private": 1, "not_found": 1}
    assert "6/6 checked" in r.out and "6 succeeded, 0 failed" in r.out
    for outcome, n in outcomes.items():
        assert re.search(rf"^\s+{outcome}\s+{n}$", r.out, re.M), r.out
    assert "error" not in r.out
    assert re.search(r"batch 1 'profiles': 6 profiles", r.err)
    assert f"log: {tmp_path / 'logs' / 'storycheck.log'}" in r.out


def test_run_gives_back_the_signal_handlers_it_installed(tmp_path, sim, capsys):
    from storycheck_tui.cli import main

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    args = ["run", profiles(tmp_path, ["stories_ann"]), "--config", sim_config(tmp_path, sim), "--db", tmp_path / "sc.db"]
    logs.reset_logging()
    try:  # not through cli(): that helper restores the handlers itself
        assert main([str(a) for a in args]) == 0, capsys.readouterr().err
        after = {sig: signal.getsignal(sig) for sig in before}
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        logs.reset_logging()
    assert after == before


def test_run_exits_1_when_some_failed_and_the_summary_lists_error_kinds(tmp_path, story_server, capsys):
    srv = story_server(lambda u, n: Reply(503) if u.startswith("down") else
                       Reply(200, b"{oops") if u.startswith("garbled") else Reply(200, stories_body(1, u)))
    names = ["fine1", "fine2", "down1", "down2", "garbled1"]
    db = tmp_path / "sc.db"
    r = cli(capsys, "run", profiles(tmp_path, names), "--config", http_config(tmp_path, srv.base), "--db", db)
    assert r.code == 1, r.err
    assert "5/5 checked" in r.out and "2 succeeded, 3 failed" in r.out
    assert re.search(r"^\s+error source_unavailable\s+2$", r.out, re.M), r.out
    assert re.search(r"^\s+error bad_response\s+1$", r.out, re.M), r.out
    assert re.search(r"^\s+has_stories\s+2$", r.out, re.M), r.out
    [b], jobs, logs = db_rows(db)
    assert (b.successful_checks, b.failed_checks, b.completed_profiles) == (2, 3, 5)
    assert Counter(r.username for r in logs if r.event == "CHECK_FAILED") == Counter(["down1", "down2", "garbled1"])


# ------------------------------------------------------------------------------------------
# bad input: FILE:LINE: reason, exit 2, nothing imported
# ------------------------------------------------------------------------------------------


BAD_PROFILES = ["good.one", "bad name!", "", "# a comment", "x" * 40, "good_two", "@", "https://example.com/"]


def test_run_refuses_a_profiles_file_with_bad_lines_and_imports_nothing(tmp_path, sim, capsys):
    db = tmp_path / "sc.db"
    make_empty_db(db)
    path = profiles(tmp_path, BAD_PROFILES)
    r = cli(capsys, "run", path, "--config", sim_config(tmp_path, sim), "--db", db)
    assert r.code == 2
    # every bad line, one line each, FILE:LINE: reason
    assert [ln.split(": ")[1] for ln in r.err_lines] == [f"{path}:2", f"{path}:5", f"{path}:7", f"{path}:8"], r.err
    assert all(ln.startswith(f"storycheck: {path}:") for ln in r.err_lines)
    assert "invalid character ' '" in r.err_lines[0] and "longer than 30" in r.err_lines[1]
    batches, jobs, logs = db_rows(db)
    assert batches == [] and jobs == [] and logs == []
    assert sim.stats()["total"]["requests"] == 0
    # `add` refuses the same file the same way
    r = cli(capsys, "add", path, "--db", db)
    assert r.code == 2 and len(r.err_lines) == 4 and db_rows(db)[0] == []


def test_skip_invalid_imports_the_valid_lines_and_names_the_skipped_ones(tmp_path, sim, capsys):
    db = tmp_path / "sc.db"
    path = profiles(tmp_path, BAD_PROFILES)
    r = cli(capsys, "run", path, "--skip-invalid", "--config", sim_config(tmp_path, sim), "--db", db)
    assert r.code == 0, r.err
    skipped = [ln for ln in r.err_lines if ln.startswith("storycheck: skipped ")]
    assert [ln.split(" ")[2].rstrip(":") for ln in skipped] == [f"{path}:{n}" for n in (2, 5, 7, 8)]
    assert "4 invalid lines skipped" in r.err
    [b], jobs, _ = db_rows(db)
    assert sorted(j.username for j in jobs) == ["good.one", "good_two"] and b.state == "finished"


def test_bad_proxies_file_is_refused_with_file_line_and_nothing_is_added(tmp_path, sim, capsys):
    db = tmp_path / "sc.db"
    make_empty_db(db)
    bad = write(tmp_path / "proxies.txt", "127.0.0.1:8080\n127.0.0.1:notaport\n\nftp://127.0.0.1:21\n")
    r = cli(capsys, "run", profiles(tmp_path, ["a.b"]), "--proxies", bad, "--config", sim_config(tmp_path, sim),
            "--db", db)
    assert r.code == 2
    assert [ln.split(": ")[1] for ln in r.err_lines] == [f"{bad}:2", f"{bad}:4"], r.err
    assert "scheme" in r.err_lines[1]
    batches, jobs, _ = db_rows(db)
    assert batches == [] and jobs == []
    r = cli(capsys, "proxies", "add", bad, "--db", db)
    assert r.code == 2 and len(r.err_lines) == 2
    store = open_store(str(db))
    try:
        assert Proxy.select().count() == 0
    finally:
        store.close()


@pytest.mark.parametrize("body, line, reason", [
    ('[retry]\nmax_attempts = 2\nmax_atempts = 3\n', 3, "[retry] unknown key 'max_atempts'"),
    ('[engine]\nworkers = "many"\n', 2, "[engine] workers: expected a number"),
    ('[source]\nkind = "sim"\n\n[sources]\nurl = "x"\n', 4, "unknown section [sources]"),
    ('[retry]\nbase_wait = 0.5\nmax_wait = = 3\n', 3, "not valid TOML"),
])
def test_bad_config_is_refused_with_file_line(tmp_path, capsys, body, line, reason):
    cfg = write(tmp_path / "bad.toml", body)
    r = cli(capsys, "run", profiles(tmp_path, ["a.b"]), "--config", cfg, "--db", tmp_path / "sc.db")
    assert r.code == 2
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith(f"storycheck: {cfg}:{line}: {reason}"), r.err
    assert not (tmp_path / "sc.db").exists()


def test_missing_env_var_in_config_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STORY_API_KEY_UNSET", raising=False)
    cfg = write(tmp_path / "c.toml", '[source]\nkind = "sim"\nurl = "http://127.0.0.1:9"\n'
                                     'headers = { "x-access-key" = "${STORY_API_KEY_UNSET}" }\n')
    r = cli(capsys, "run", profiles(tmp_path, ["a.b"]), "--config", cfg, "--db", tmp_path / "sc.db")
    assert r.code == 2 and r.err_lines == [f"storycheck: {cfg}:4: environment variable STORY_API_KEY_UNSET is not set"]


def test_missing_db_directory_is_one_clear_line(tmp_path, sim, capsys):
    db = tmp_path / "no" / "such" / "dir" / "sc.db"
    r = cli(capsys, "run", profiles(tmp_path, ["a.b"]), "--config", sim_config(tmp_path, sim), "--db", db)
    assert r.code == 3
    assert r.err_lines == [f"storycheck: {db}: cannot open database: directory {db.parent} does not exist"], r.err
    assert not db.parent.exists()
    r = cli(capsys, "batches", "--db", db)
    assert r.code == 3 and len(r.err_lines) == 1 and "does not exist" in r.err


# ------------------------------------------------------------------------------------------
# export, logs, batches
# ------------------------------------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path, story_server, capsys):
    """A finished batch with successes and failures; returns (db path, batch id)."""
    srv = story_server(lambda u, n: Reply(502, {"error": "=1+1"}) if u.startswith("down") else
                       Reply(200, stories_body(2 if u.startswith("two") else 0, u)))
    db = tmp_path / "sc.db"
    r = cli(capsys, "run", profiles(tmp_path, ["two.a", "none.b", "down.c", "two.d"]),
            "--config", http_config(tmp_path, srv.base), "--db", db)
    assert r.code == 1
    return db, 1


def _expected_rows(db: Path) -> list[dict]:
    _, jobs, _ = db_rows(db)
    return [{"username": j.username, "state": j.state, "outcome": j.outcome, "story_count": j.story_count,
             "error_kind": j.error_kind, "error_message": j.error_message, "proxy": j.proxy,
             "http_status": j.http_status, "attempts": j.attempts} for j in jobs]


def test_export_csv_and_jsonl_match_the_database(tmp_path, finished_run, capsys):
    db, bid = finished_run
    expected = _expected_rows(db)
    assert {e["state"] for e in expected} == {"succeeded", "failed"}

    r = cli(capsys, "export", bid, "--format", "jsonl", "-o", tmp_path / "out.jsonl", "--db", db)
    assert r.code == 0 and "4 rows of batch 1 written" in r.err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [{k: row[k] for k in expected[0]} for row in rows] == expected
    assert all(row["batch_id"] == bid for row in rows)
    assert all((row["latest_story_at"] is not None) == ((row["story_count"] or 0) > 0) for row in rows)

    r = cli(capsys, "export", "profiles", "--format", "csv", "-o", tmp_path / "out.csv", "--db", db)  # by name
    assert r.code == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        for k, v in want.items():
            if k == "error_message" and v:
                v = "'" + v if v[:1] in "=+-@" else v
            assert row[k] == ("" if v is None else str(v)), (k, row[k], v)

    r = cli(capsys, "export", bid, "--format", "jsonl", "--db", db)  # to stdout
    assert r.code == 0 and r.out == (tmp_path / "out.jsonl").read_text()


def test_logs_json_and_batches_json_match_the_database(finished_run, capsys):
    db, bid = finished_run
    batches, jobs, rows = db_rows(db)
    r = cli(capsys, "logs", "--json", "--limit", "0", "--level", "DEBUG", "--db", db)
    assert r.code == 0
    got = [json.loads(line) for line in r.out.splitlines()]
    assert [(g["event"], g["username"], g["message"], g["level"]) for g in got] == \
        [(x.event, x.username, x.message, x.level) for x in rows]
    events = Counter(g["event"] for g in got)
    assert events["STORY_CHECK_SUCCESS"] == 3 and events["CHECK_FAILED"] == 1 and events["BATCH_CREATED"] == 1
    assert all(g["details"] is None or isinstance(g["details"], dict) for g in got)

    r = cli(capsys, "logs", "--json", "--level", "ERROR", "--batch", bid, "--db", db)
    assert [json.loads(line)["event"] for line in r.out.splitlines()] == ["CHECK_FAILED"]

    r = cli(capsys, "batches", "--json", "--db", db)
    assert r.code == 0
    [one] = [json.loads(line) for line in r.out.splitlines()]
    b = batches[0]
    assert (one["id"], one["name"], one["state"], one["total"], one["completed"], one["succeeded"], one["failed"]) == \
        (b.id, b.name, b.state, 4, 4, 3, 1)
    r = cli(capsys, "batches", "--db", db)
    assert r.code == 0 and re.search(r"^\s+1\s+profiles\s+finished\s+4/4 100%\s+3\s+1\s", r.out, re.M), r.out


# ------------------------------------------------------------------------------------------
# batch commands and the worker
# ------------------------------------------------------------------------------------------


def test_pause_resume_cancel_commands(tmp_path, capsys):
    db = tmp_path / "sc.db"
    assert cli(capsys, "add", profiles(tmp_path, ["a.a", "b.b", "c.c"]), "--name", "later", "--db", db).code == 0

    def state() -> tuple:
        [b], _, _ = db_rows(db)
        return b.state, b.cancelled_profiles

    r = cli(capsys, "pause", "later", "--db", db)
    assert (r.code, r.out.strip(), state()) == (0, "batch 1 paused", ("paused", 0))
    r = cli(capsys, "pause", "1", "--db", db)
    assert r.code == 2 and "only queued or running batches can be paused" in r.err
    r = cli(capsys, "resume", "1", "--db", db)
    assert (r.code, r.out.strip(), state()) == (0, "batch 1 resumed", ("running", 0))
    r = cli(capsys, "resume", "1", "--db", db)
    assert r.code == 2 and "only paused batches can be resumed" in r.err
    r = cli(capsys, "cancel", "1", "--db", db)
    assert (r.code, r.out.strip(), state()) == (0, "batch 1 cancelled: 3 unchecked profiles dropped", ("cancelled", 3))
    r = cli(capsys, "cancel", "1", "--db", db)
    assert r.code == 2 and "already cancelled" in r.err
    r = cli(capsys, "pause", "nosuch", "--db", db)
    assert r.code == 2 and r.err_lines == ["storycheck: no batch with id or name 'nosuch'"]
    _, _, logs = db_rows(db)
    assert [x.event for x in logs] == ["BATCH_CREATED", "BATCH_PAUSED", "BATCH_RESUMED", "BATCH_CANCELLED"]


def test_retry_failed_command_then_a_worker_finishes_the_batch(tmp_path, story_server, capsys):
    broken = {"on": True}
    srv = story_server(lambda u, n: Reply(503) if broken["on"] and u.startswith("flaky") else Reply())
    db = tmp_path / "sc.db"
    cfg = http_config(tmp_path, srv.base)
    r = cli(capsys, "run", profiles(tmp_path, ["ok.a", "flaky.b", "flaky.c"]), "--config", cfg, "--db", db)
    assert r.code == 1 and "1 succeeded, 2 failed" in r.out
    broken["on"] = False
    r = cli(capsys, "retry-failed", "1", "--db", db)
    assert (r.code, r.out.strip()) == (0, "batch 1: 2 failed profiles queued again")
    [b], jobs, _ = db_rows(db)
    assert (b.state, b.completed_profiles, b.failed_checks) == ("running", 1, 0)
    assert Counter(j.state for j in jobs) == {"succeeded": 1, "pending": 2}
    r = cli(capsys, "worker", "--until-idle", "--batch", "1", "--config", cfg, "--db", db)
    assert r.code == 0, r.err
    [b], jobs, _ = db_rows(db)
    assert (b.state, b.successful_checks, b.failed_checks, b.completed_profiles) == ("finished", 3, 0, 3)
    r = cli(capsys, "retry-failed", "1", "--db", db)
    assert r.code == 0 and "0 failed profiles queued again (nothing failed)" in r.out


def test_proxies_add_list_disable_enable(tmp_path, capsys):
    db = tmp_path / "sc.db"
    f = write(tmp_path / "proxies.txt", "127.0.0.1:9001\nsocks5://ann:Secr3tPass-77@127.0.0.1:9002\n"
                                         "127.0.0.1:9003:bob:An0therPass-88\n# comment\n")
    r = cli(capsys, "proxies", "add", f, "--db", db)
    assert (r.code, r.out.strip()) == (0, "3 proxies added (3 in the pool)")
    r = cli(capsys, "proxies", "add", f, "--db", db)
    assert r.out.strip() == "0 proxies added (3 in the pool)"
    r = cli(capsys, "proxies", "list", "--json", "--db", db)
    listed = [json.loads(line) for line in r.out.splitlines()]
    assert [(p["id"], p["label"], p["state"]) for p in listed] == [
        (1, "http://127.0.0.1:9001", "unchecked"), (2, "socks5://ann@127.0.0.1:9002", "unchecked"),
        (3, "http://bob@127.0.0.1:9003", "unchecked")]
    r = cli(capsys, "proxies", "list", "--db", db)
    assert "socks5://ann@127.0.0.1:9002" in r.out
    assert "Secr3tPass-77" not in r.out + r.err and "An0therPass-88" not in r.out + r.err

    def states() -> list[tuple[str, bool]]:
        store = open_store(str(db))
        try:
            return [(p.state, p.disabled) for p in Proxy.select().order_by(Proxy.id)]
        finally:
            store.close()

    r = cli(capsys, "proxies", "disable", "2", "--db", db)
    assert r.code == 0 and r.out.strip() == "proxy 2 socks5://ann@127.0.0.1:9002 disabled"
    assert states()[1] == ("disabled", True)
    r = cli(capsys, "proxies", "disable", "http://bob@127.0.0.1:9003", "--db", db)  # by label
    assert r.code == 0 and states()[2] == ("disabled", True)
    r = cli(capsys, "proxies", "disable", "2", "--db", db)
    assert r.out.strip() == "proxy 2 socks5://ann@127.0.0.1:9002 was already disabled"
    r = cli(capsys, "proxies", "enable", "2", "--db", db)
    assert r.code == 0 and states() == [("unchecked", False), ("unchecked", False), ("disabled", True)]
    listed = [json.loads(line) for line in cli(capsys, "proxies", "list", "--json", "--db", db).out.splitlines()]
    assert [p["state"] for p in listed] == ["unchecked", "unchecked", "disabled"]
    r = cli(capsys, "proxies", "enable", "99", "--db", db)
    assert r.code == 2 and "no proxy with id or label '99'" in r.err


# ------------------------------------------------------------------------------------------
# real processes: exit codes as a shell or cron sees them; the headless demo
# ------------------------------------------------------------------------------------------


def test_exit_codes_of_a_real_process(tmp_path, sim):
    env = {"STORYCHECK_LOG_DIR": str(tmp_path / "logs")}
    cfg = sim_config(tmp_path, sim)
    db = tmp_path / "sc.db"
    r = cli_subprocess("run", profiles(tmp_path, ["stories_a", "nostories_b"]), "--config", cfg, "--db", db, env=env)
    assert r.code == 0 and "2/2 checked" in r.out, r.err
    bad = profiles(tmp_path, ["ok.name", "no good"], name="bad.txt")
    r = cli_subprocess("run", bad, "--config", cfg, "--db", db, env=env)
    assert r.code == 2 and r.err.strip() == f"storycheck: {bad}:2: invalid character ' ' in username \"no good\"", r.err
    r = cli_subprocess("batches", "--db", tmp_path / "missing" / "sc.db", env=env)
    assert r.code == 3 and len(r.err.strip().splitlines()) == 1 and "does not exist" in r.err
    assert "Traceback" not in r.err


def test_demo_headless_exits_0(tmp_path):
    r = cli_subprocess("demo", "--headless", "--profiles", "60", env={"STORYCHECK_LOG_DIR": str(tmp_path / "logs")},
                       timeout=60)
    assert r.code == 0, r.err
    assert re.search(r"batch 1 'demo': finished; 60/60 checked .*: 60 succeeded, 0 failed", r.out), r.out
    assert "2 slow, 1 flaky, 1 dead" in r.err


# ------------------------------------------------------------------------------------------
# secrets: never in any output
# ------------------------------------------------------------------------------------------


PROXY_PW = "Pr0xyS3cret-5be1"
WRONG_PW = "Wr0ngS3cret-0c77"
API_KEY = "ApiK3y-S3cret-9d24"


def _db_text(db: Path) -> str:
    """Every stored value except proxy.url (which holds the credentials by design)."""
    con = sqlite3.connect(db)
    try:
        out = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")') if not (table == "proxy" and c[1] == "url")]
            for row in con.execute(f'SELECT {", ".join(cols)} FROM "{table}"'):
                out.append(" ".join(map(str, row)))
        return "\n".join(out)
    finally:
        con.close()


def test_secrets_never_appear_in_output_logs_database_or_exports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STORY_API_KEY", API_KEY)
    faults = {0: ProxyFault(kind="auth", username="user", password=PROXY_PW),
              1: ProxyFault(kind="auth", username="user", password=PROXY_PW)}
    with Simulator(SimConfig(proxies=2, rate=0, api_key=API_KEY, error_rate=0.2, faults=faults)) as sim:
        good, other = sim.proxy_urls
        assert PROXY_PW in good
        wrong = other.replace(PROXY_PW, WRONG_PW)  # this one answers 407: failover, cooling, logs
        proxies = write(tmp_path / "proxies.txt", f"{good}\n{wrong}\n")
        cfg = sim_config(tmp_path, sim, 'headers = { "x-access-key" = "${STORY_API_KEY}" }')
        db = tmp_path / "sc.db"
        names = [f"user{i}" for i in range(12)]
        outputs = []
        r = cli(capsys, "-vv", "run", profiles(tmp_path, names), "--proxies", proxies, "--config", cfg, "--db", db)
        outputs.append(r.out + r.err)
        assert r.code in (0, 1), r.err
        assert sim.stats()["identities"]["proxy-0"]["ok"] > 0  # the key and the password did their job
        assert sim.stats()["identities"]["proxy-1"]["rejected"] > 0  # the wrong password was tried
        _, jobs, logs = db_rows(db)
        assert {j.state for j in jobs} <= {"succeeded", "failed"} and any(j.state == "succeeded" for j in jobs)
        assert any(x.event == "PROXY_FAILOVER" for x in logs) and "DEBUG" in r.err
        for args in (("export", "1", "--format", "csv", "-o", tmp_path / "out.csv"),
                     ("export", "1", "--format", "jsonl"),
                     ("logs", "--json", "--limit", "0", "--level", "DEBUG"),
                     ("logs", "--limit", "0"),
                     ("proxies", "list", "--json"), ("proxies", "list"), ("batches", "--json"),
                     ("proxies", "check", "--config", cfg)):
            r = cli(capsys, "-vv", *args, "--db", db)
            assert r.code in (0, 1), (args, r.err)
            outputs.append(r.out + r.err)
        # a failing command that names the proxy file and the config still shows no secret
        bad = write(tmp_path / "bad-proxies.txt", f"{good}\nuser:{PROXY_PW}:127.0.0.1:8080\n")
        r = cli(capsys, "proxies", "add", bad, "--db", db)
        assert r.code == 2
        outputs.append(r.out + r.err)
    texts = {
        "stdout/stderr": "\n".join(outputs),
        "log file": "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "logs").iterdir()),
        "database": _db_text(db),
        "csv export": (tmp_path / "out.csv").read_text(encoding="utf-8"),
    }
    assert "STORY_CHECK_SUCCESS" in texts["log file"] and "PROXY_FAILOVER" in texts["log file"]
    for where, text in texts.items():
        for secret in (PROXY_PW, WRONG_PW, API_KEY):
            assert secret not in text, f"{secret!r} leaked into the {where}"
            assert secret.lower() not in text.lower()
    # the Basic-auth form of the credentials is no secret-free label either
    import base64

    for pw in (PROXY_PW, WRONG_PW):
        token = base64.b64encode(f"user:{pw}".encode()).decode()
        assert all(token not in text for text in texts.values())


# ------------------------------------------------------------------------------------------
# hostile text in the database never reaches the terminal as control sequences (issue 15)
# ------------------------------------------------------------------------------------------

OSC8 = "\x1b]8;;http://127.0.0.1:9/x\x1b\\click\x1b]8;;\x1b\\"  # a terminal hyperlink
OSC52 = "\x1b]52;c;ZXZpbA==\x07"  # writes the clipboard
HOSTILE = f"a{OSC8}b{OSC52}c\u202ed\x9b31me\x85f"
ACTIVE = ("\x1b", "\x07", "\x9b", "\x85", "\u202e")


def _hostile_db(tmp_path: Path, capsys) -> Path:
    """A batch, a job, a proxy and a log row whose text holds escape sequences, C1 controls and
    U+202E, as a hostile source, proxy or shared database could leave them."""
    db = tmp_path / "sc.db"
    assert cli(capsys, "add", profiles(tmp_path, ["plain.user"]), "--name", "evil", "--db", db).code == 0
    assert cli(capsys, "proxies", "add", write(tmp_path / "px.txt", "127.0.0.1:9\n"), "--db", db).code == 0
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE batch SET name = ?, state_reason = ?", (HOSTILE, HOSTILE))
        con.execute("UPDATE job SET username = ?, state = 'failed', error_kind = ?, error_message = ?, proxy = ?",
                    (HOSTILE, HOSTILE, HOSTILE, HOSTILE))
        con.execute("UPDATE proxy SET label = ?, last_error = ?", (HOSTILE, HOSTILE))
        con.execute("UPDATE batch_log SET message = ?, event = ?, username = ?", (HOSTILE, HOSTILE, HOSTILE))
    con.close()
    return db


def test_database_text_reaches_the_terminal_escaped(tmp_path, capsys, story_server):
    db = _hostile_db(tmp_path, capsys)
    srv = story_server(lambda u, n: Reply())
    cfg = http_config(tmp_path, srv.base)
    for args in (("batches",), ("proxies", "list"), ("proxies", "check", "--config", cfg),
                 ("proxies", "disable", "1"), ("proxies", "enable", "1"), ("logs", "--limit", "0")):
        r = cli(capsys, *args, "--db", db)
        assert r.code in (0, 1), (args, r.err)
        for ch in ACTIVE:
            assert ch not in r.out + r.err, (args, ch, r.out)
        assert "\\x1b]8;;" in r.out or "\\x1b]8;;" in r.out.replace("\\\\", "\\"), (args, r.out)
    # --json keeps the value (a JSON reader gets the text back) but writes it inert
    for args, key in ((("batches", "--json"), "name"), (("proxies", "list", "--json"), "label"),
                      (("export", "1", "--format", "jsonl"), "username"), (("logs", "--json"), "username")):
        r = cli(capsys, *args, "--db", db)
        assert r.code == 0, (args, r.err)
        for ch in ACTIVE:
            assert ch not in r.out, (args, ch)
        rows = [json.loads(line) for line in r.out.splitlines()]
        assert rows and rows[0][key] == HOSTILE, (args, rows)


def _on_a_terminal(tmp_path: Path, *argv, columns: int = 120) -> str:
    """``storycheck ARGV`` with its stdout on a pseudo-terminal ``columns`` wide; what the
    terminal received."""
    import pty
    import subprocess
    import sys

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "storycheck_tui", *map(str, argv)], stdout=slave,
                                stderr=subprocess.PIPE, env={**os.environ, "STORYCHECK_LOG_DIR": str(tmp_path / "logs")})
        os.close(slave)
        got = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            got += chunk
        assert proc.wait(30) == 0, proc.stderr.read()
        proc.stderr.close()
    finally:
        os.close(master)
    return got.decode("utf-8")


def test_a_csv_export_to_a_terminal_shows_control_characters_escaped(tmp_path, capsys):
    """A CSV export written to a file keeps every value byte for byte; written to a terminal,
    an OSC 8 link, an OSC 52 clipboard write or a U+202E in a stored username is shown escaped."""
    db = _hostile_db(tmp_path, capsys)
    shown = _on_a_terminal(tmp_path, "export", "1", "--db", db)
    assert "username" in shown and "\\x1b]52;c;ZXZpbA==\\x07" in shown, shown
    for ch in ACTIVE:
        assert ch not in shown, ch
    r = cli(capsys, "export", "1", "-o", tmp_path / "out.csv", "--db", db)
    assert r.code == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as fh:
        assert [row["username"] for row in csv.DictReader(fh)] == [HOSTILE]


def test_export_to_a_directory_is_one_line_and_writes_nothing(tmp_path, capsys):
    db = tmp_path / "sc.db"
    assert cli(capsys, "add", profiles(tmp_path, ["plain.user"]), "--db", db).code == 0
    out = tmp_path / "exports"
    out.mkdir()
    r = cli(capsys, "export", "1", "-o", out, "--db", db)
    assert r.code == 2 and r.err_lines == [
        f"storycheck: {out}: is a directory; give a file name, e.g. {out / 'results.csv'}"], r.err
    assert list(out.iterdir()) == []
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        r = cli(capsys, "export", "1", "-o", locked / "x.csv", "--db", db)
        assert r.code == 2 and len(r.err_lines) == 1 and "cannot write in" in r.err, r.err


# ------------------------------------------------------------------------------------------
# exports say what they hold; story ids come out without SQL (issue 14, items 4 and 7)
# ------------------------------------------------------------------------------------------


def test_export_says_what_was_exported(tmp_path, finished_run, capsys):
    db, bid = finished_run  # two.a, two.d: 2 stories each; none.b: none; down.c: failed
    r = cli(capsys, "export", bid, "-o", tmp_path / "all.csv", "--db", db)
    assert r.code == 0 and r.err_lines == [
        f"4 rows of batch 1 written to {tmp_path / 'all.csv'}: "
        "4 checked (has_stories 2, no_stories 1, failed 1)"], r.err
    assert cli(capsys, "retry-failed", bid, "--db", db).code == 0  # down.c is pending again
    r = cli(capsys, "export", bid, "--format", "jsonl", "--db", db)
    assert r.code == 0 and r.err_lines == [
        "4 rows of batch 1 exported: 3 checked (has_stories 2, no_stories 1), 1 pending"], r.err
    assert cli(capsys, "cancel", bid, "--db", db).code == 0
    r = cli(capsys, "export", bid, "--db", db)
    assert r.err_lines == ["4 rows of batch 1 exported: 3 checked (has_stories 2, no_stories 1), 1 cancelled"]
    r = cli(capsys, "export", bid, "--stories", "--db", db)
    assert r.err_lines == ["4 story rows of batch 1 exported: 4 stories of 2 profiles"], r.err


def test_story_ids_are_exported_as_a_list_a_joined_column_and_a_stories_export(tmp_path, finished_run, capsys,
                                                                                story_server):
    db, bid = finished_run
    r = cli(capsys, "export", bid, "--format", "jsonl", "--db", db)
    rows = {row["username"]: row for row in map(json.loads, r.out.splitlines())}
    assert rows["two.a"]["story_ids"] == ["two.a-0", "two.a-1"] and rows["two.d"]["story_count"] == 2
    assert rows["none.b"]["story_ids"] == [] and rows["down.c"]["story_ids"] == []
    r = cli(capsys, "export", bid, "--db", db)
    got = {row["username"]: row["story_ids"] for row in csv.DictReader(io.StringIO(r.out))}
    assert got == {"two.a": "two.a-0;two.a-1", "none.b": "", "down.c": "", "two.d": "two.d-0;two.d-1"}
    r = cli(capsys, "export", bid, "--stories", "--format", "jsonl", "--db", db)
    stories = [json.loads(line) for line in r.out.splitlines()]
    assert [(s["username"], s["story_id"]) for s in stories] == [
        ("two.a", "two.a-0"), ("two.a", "two.a-1"), ("two.d", "two.d-0"), ("two.d", "two.d-1")]
    assert all(s["batch_id"] == bid and s["taken_at"] and s["first_seen_at"] for s in stories)
    r = cli(capsys, "export", bid, "--stories", "--db", db)
    assert next(csv.reader(io.StringIO(r.out))) == ["batch_id", "username", "story_id", "taken_at", "expires_at",
                                                     "media_type", "first_seen_at"]
    # a second batch that sees the same stories again (stored once per profile) lists them too
    srv = story_server(lambda u, n: Reply(200, stories_body(2 if u.startswith("two") else 0, u)))
    r = cli(capsys, "run", profiles(tmp_path, ["two.a", "none.b"], name="again.txt"),
            "--config", http_config(tmp_path, srv.base), "--db", db)
    assert r.code == 0, r.err
    r = cli(capsys, "export", "again", "--format", "jsonl", "--db", db)
    rows = {row["username"]: row["story_ids"] for row in map(json.loads, r.out.splitlines())}
    assert rows == {"two.a": ["two.a-0", "two.a-1"], "none.b": []}


def test_a_cancelled_batch_shows_what_was_checked_not_100_percent(tmp_path, finished_run, capsys):
    """Issue 14 item 5: progress counts checked profiles; cancelled ones are shown as such."""
    db, bid = finished_run
    assert cli(capsys, "retry-failed", bid, "--db", db).code == 0
    assert cli(capsys, "cancel", bid, "--db", db).code == 0  # 3 checked, 1 cancelled
    r = cli(capsys, "batches", "--db", db)
    assert re.search(r"^\s*1\s+profiles\s+cancelled\s+3/4 75%\s+3\s+0\s+1\s", r.out, re.M), r.out
    assert "100%" not in r.out
    from storycheck_tui.cli.progress import Progress
    from storycheck_tui.store.batches import BatchView

    out = io.StringIO()
    bar = Progress(out)
    bar.update(BatchView(1, "b", "cancelled", 0, 0.0, None, None, 20_000, 3_404, 3_300, 104, 16_596, None), 0.0,
               force=True)
    assert out.getvalue().startswith("progress: 3404/20000 checked (17%)  ok 3300  failed 104  cancelled 16596  ")


def test_proxies_remove_deletes_it_and_running_workers_drop_it(tmp_path, capsys):
    """Issue 14 item 8: `proxies remove`. A worker that holds the proxy in its pool drops it at
    its next proxy sync (no restart)."""
    from storycheck_tui.config import ProxySettings
    from storycheck_tui.engine.proxysync import ProxySync, build_pool

    db = tmp_path / "sc.db"
    f = write(tmp_path / "proxies.txt", "127.0.0.1:9001\n127.0.0.1:9002\n127.0.0.1:9003\n")
    assert cli(capsys, "proxies", "add", f, "--db", db).code == 0
    store = open_store(str(db))  # a worker's view of the pool, as a running worker holds it
    try:
        pool = build_pool(store, ProxySettings())
        sync = ProxySync(store, pool)
        assert {pool.route(k) is not None for k in ("1", "2", "3")} == {True}
        env = {"STORYCHECK_LOG_DIR": str(tmp_path / "logs")}  # another process: one database per process
        r = cli_subprocess("proxies", "remove", "2", "--db", db, env=env)
        assert (r.code, r.out.strip()) == (0, "proxy 2 http://127.0.0.1:9002 removed (running workers drop it "
                                               "within seconds)"), r.err
        r = cli_subprocess("proxies", "remove", "http://127.0.0.1:9003", "--db", db, env=env)  # by label
        assert r.code == 0, r.err
        sync.sync()
        assert pool.route("2") is None and pool.route("3") is None and pool.route("1") is not None
    finally:
        store.close()
    listed = [json.loads(line)["id"] for line in cli(capsys, "proxies", "list", "--json", "--db", db).out.splitlines()]
    assert listed == [1]
    r = cli(capsys, "proxies", "remove", "2", "--db", db)
    assert r.code == 2 and r.err_lines == ["storycheck: no proxy with id or label '2' (see: storycheck proxies list)"]
    assert "PROXY_REMOVED" in (tmp_path / "logs" / "storycheck.log").read_text()


def test_add_prints_the_new_batch_id_on_stdout_and_has_json(tmp_path, capsys):
    db = tmp_path / "sc.db"
    r = cli(capsys, "add", profiles(tmp_path, ["a.a", "b.b", "a.a"]), "--name", "dup", "--db", db)
    assert (r.code, r.out) == (0, "1\n")
    assert r.err_lines == ["batch 1 'dup': 2 profiles (1 duplicate dropped)"], r.err  # singular
    r = cli(capsys, "add", profiles(tmp_path, ["c.c"]), "--name", "dup", "--json", "--db", db)
    assert r.code == 0 and json.loads(r.out) == {"id": 2, "name": "dup", "profiles": 1, "duplicates": 0, "invalid": 0}
    assert r.err_lines[-1] == "storycheck: note: 2 batches are named 'dup' (ids 1, 2): give the id"


@pytest.mark.parametrize("command", ["pause", "resume", "cancel", "retry-failed", "export"])
def test_an_ambiguous_batch_name_is_an_error_listing_the_ids(tmp_path, capsys, command):
    """Issue 14 item 6: `pause dup` paused the newest of two batches named dup, silently."""
    db = tmp_path / "sc.db"
    for names in (["a.a"], ["b.b"]):
        assert cli(capsys, "add", profiles(tmp_path, names), "--name", "dup", "--db", db).code == 0
    r = cli(capsys, command, "dup", "--db", db)
    assert r.code == 2 and r.err_lines == ["storycheck: 2 batches are named 'dup' (ids 1, 2): give the id"], r.err
    batches, _, logs_ = db_rows(db)
    assert [b.state for b in batches] == ["queued", "queued"]
    assert [x.event for x in logs_] == ["BATCH_CREATED", "BATCH_CREATED"]
    r = cli(capsys, command, "2", "--db", db)  # by id it is acted on (resume: a queued batch is refused)
    assert r.code == (2 if command == "resume" else 0) and "named" not in r.err, r.err


def test_a_missing_or_bad_config_fails_every_command_in_one_line(tmp_path, capsys):
    """Issue 14 item 8: `--config /nonexistent.toml batches` exited 0 silently."""
    db = tmp_path / "sc.db"
    missing = tmp_path / "nonexistent.toml"
    for args in (("batches",), ("proxies", "list"), ("logs",), ("add", profiles(tmp_path, ["a.a"]))):
        r = cli(capsys, "--config", missing, *args, "--db", db)
        assert r.code == 2 and r.err_lines == [f"storycheck: {missing}: config file not found"], (args, r.err)
    bad = write(tmp_path / "bad.toml", "[engine]\nworkers = nan\n")
    r = cli(capsys, "batches", "--config", bad, "--db", db)
    assert r.code == 2 and r.err_lines == [f"storycheck: {bad}:2: [engine] workers: expected a whole number, got nan"]
    assert not db.exists()


def test_sim_exits_130_on_ctrl_c_like_run(tmp_path):
    import subprocess
    import sys

    from helpers import free_port, wait_for

    proc = subprocess.Popen([sys.executable, "-m", "storycheck_tui", "sim", "--port", str(free_port()), "--proxies", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "STORYCHECK_LOG_DIR": str(tmp_path / "logs")})
    try:
        lines = []
        wait_for(lambda: lines.append(proc.stdout.readline()) or "Press Ctrl-C" in lines[-1], 20, "the banner")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130, proc.stderr.read()
        assert "storycheck sim: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()


def test_the_demo_does_not_write_to_the_users_log_file(tmp_path):
    logs_dir = tmp_path / "logs"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    r = cli_subprocess("demo", "--headless", "--profiles", "20",
                       env={"STORYCHECK_LOG_DIR": str(logs_dir), "TMPDIR": str(scratch)}, timeout=60)
    assert r.code == 0, r.err
    assert not (logs_dir / "storycheck.log").exists()
    [demo_log] = scratch.glob("storycheck-demo-*/storycheck.log")
    assert f"log: {demo_log}" in r.out and "BATCH_CREATED" in demo_log.read_text()


def test_proxies_add_says_a_refused_proxy_was_given_new_credentials(tmp_path, capsys):
    """A proxy whose credentials were refused takes the new password of the same proxy: the
    line says so. Before, it said "1 proxy added" while the pool kept its size."""
    db = tmp_path / "sc.db"
    cli(capsys, "proxies", "add", write(tmp_path / "p.txt", "127.0.0.1:9001\nsocks5://ann:Old-Pass-77@127.0.0.1:9002\n"),
        "--db", db)
    with sqlite3.connect(db) as con:  # what a worker writes when the proxy refuses the password
        con.execute("UPDATE proxy SET state = 'auth_rejected' WHERE id = 2")
    r = cli(capsys, "proxies", "add", write(tmp_path / "new.txt", "socks5://ann:New-Pass-88@127.0.0.1:9002\n"),
            "--db", db)
    assert (r.code, r.out.strip()) == (0, "0 proxies added, 1 refused proxy given new credentials (2 in the pool)")
    assert "New-Pass-88" not in r.out + r.err


def test_counts_of_one_are_singular(tmp_path, capsys):
    db = tmp_path / "sc.db"
    r = cli(capsys, "proxies", "add", write(tmp_path / "p.txt", "127.0.0.1:9001\n"), "--db", db)
    assert r.out.strip() == "1 proxy added (1 in the pool)"
    r = cli(capsys, "add", profiles(tmp_path, ["b.b", "b.b", "bad name"]), "--skip-invalid", "--db", db)
    assert "batch 1 'profiles': 1 profile (1 duplicate dropped, 1 invalid line skipped)" in r.err_lines, r.err
    r = cli(capsys, "cancel", "1", "--db", db)
    assert r.out.strip() == "batch 1 cancelled: 1 unchecked profile dropped"


def test_tables_on_a_terminal_draw_database_text_inert(tmp_path, capsys):
    """On a terminal the tables are drawn by rich (a header rule, bold): its own styling is the
    only escape sequence there; a stored OSC 8 link or OSC 52 clipboard write is shown escaped."""
    db = _hostile_db(tmp_path, capsys)
    for args in (("batches",), ("proxies", "list")):
        shown = _on_a_terminal(tmp_path, *args, "--db", db)
        assert "\x1b]8;" not in shown and "\x1b]52;" not in shown, (args, shown)
        for ch in ("\x07", "\x9b", "\x85", "\u202e"):
            assert ch not in shown, (args, ch)
        assert "a\\x1b]8;;http://127.0" in shown, (args, shown)  # the name, escaped (cut to its column)
        assert "STATE" in shown and "─" in shown  # rich's header rule
    # on an 80-column terminal the free-text columns give up room, not the state or the numbers
    shown = _on_a_terminal(tmp_path, "batches", "--db", db, columns=80)
    assert "queued" in shown and "0/1 0%" in shown and "CANCELLED" in shown, shown
    assert re.search(r"^\s*1\s+a\\x1b.*\sZ?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s*$", shown, re.M), shown  # id and time whole
