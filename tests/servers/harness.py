"""Shared pieces of the reliability suite: settings files, worker subprocesses, the run
invariants read straight from the SQLite file (with the stdlib ``sqlite3``, independent of
the engine's own database code), and in-process runs through the real engine
(:func:`engine_run`: ``helpers.Engine`` with ``helpers.fresh_logging``, read through
:class:`EngineRun`). Engine settings come from ``helpers.fast_settings``: one set for every test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from helpers import Engine, fast_settings, fresh_logging, wait_for  # the one engine runner, settings, logging
from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.states import DONE, BatchState, ErrorKind, JobState, OutcomeKind, sql_list
from storycheck_tui.store.db import open_store

STORYCHECK = shutil.which("storycheck", path=os.path.dirname(sys.executable)) or ""
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")
FINAL = DONE  # a job in one of these states has its final result


def storycheck_cmd(*args: str) -> list[str]:
    """The installed ``storycheck`` console script (or ``python -m storycheck_tui``)."""
    if STORYCHECK:
        return [STORYCHECK, *args]
    return [sys.executable, "-m", "storycheck_tui", *args]


def subprocess_env(log_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["STORYCHECK_LOG_DIR"] = str(log_dir)
    env.pop("STORYCHECK_DB", None)
    env.update(extra)
    return env


def toml_table(name: str, values: dict) -> str:
    lines = [f"[{name}]"]
    for k, v in values.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{k} = {v!r}")
        else:
            lines.append(f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def write_config(path: Path, source_snippet: str, *, source_extra: dict | None = None, retry: dict | None = None,
                 proxies: dict | None = None, engine: dict | None = None) -> Path:
    text = source_snippet.rstrip("\n") + "\n"
    for k, v in (source_extra or {}).items():
        text += f"{k} = {v!r}\n" if not isinstance(v, str) else f'{k} = "{v}"\n'
    text += "\n" + toml_table("retry", retry or {}) + "\n" + toml_table("proxies", proxies or {})
    text += "\n" + toml_table("engine", engine or {})
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# reading the database file directly
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sql(db_path: Path | str) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(str(db_path), timeout=30)
    try:
        yield con
    finally:
        con.close()


def scalar(db_path: Path | str, query: str, *params) -> object:
    with sql(db_path) as con:
        return con.execute(query, params).fetchone()[0]


def finished_count(db_path: Path | str, batch_id: int) -> int:
    return int(scalar(db_path, f"SELECT COUNT(*) FROM job WHERE batch_id = ? AND state IN {sql_list(DONE)}",
                      batch_id))


@dataclass
class Figures:
    profiles: int
    succeeded: int
    failed: int
    stories: int
    success_records: int
    errors: dict[str, int]


def check_invariants(db_path: Path | str, batch_id: int, *, log_file: Path | None = None,
                     expected_outcome=None) -> Figures:
    """Every profile has exactly one final result; counters equal the job rows; no duplicate
    story rows; no STORY_CHECK_SUCCESS (in batch_log or the log file) without a succeeded job;
    no job is running or leased; successes agree with the source (``expected_outcome``)."""
    with sql(db_path) as con:
        jobs = con.execute("SELECT id, username, state, outcome, story_count, lease_owner, lease_until, error_kind "
                           "FROM job WHERE batch_id = ?", (batch_id,)).fetchall()
        b = con.execute("SELECT state, total_profiles, completed_profiles, successful_checks, failed_checks, "
                        "cancelled_profiles FROM batch WHERE id = ?", (batch_id,)).fetchone()
        dup_jobs = con.execute("SELECT username, COUNT(*) FROM job WHERE batch_id = ? GROUP BY username "
                               "HAVING COUNT(*) > 1", (batch_id,)).fetchall()
        dup_stories = con.execute("SELECT username, story_id, COUNT(*) FROM story GROUP BY username, story_id "
                                  "HAVING COUNT(*) > 1").fetchall()
        success_logs = con.execute("SELECT job, COUNT(*) FROM batch_log WHERE batch = ? AND event = "
                                   "'STORY_CHECK_SUCCESS' GROUP BY job", (batch_id,)).fetchall()
        fail_logs = con.execute("SELECT job, COUNT(*) FROM batch_log WHERE batch = ? AND event = 'CHECK_FAILED' "
                                "GROUP BY job", (batch_id,)).fetchall()
        story_rows = dict(con.execute("SELECT username, COUNT(*) FROM story GROUP BY username").fetchall())
    state, total, completed, ok, failed, cancelled = b
    by_state: dict[str, int] = {}
    for j in jobs:
        by_state[j[2]] = by_state.get(j[2], 0) + 1
    assert not dup_jobs, f"a username has several job rows: {dup_jobs[:5]}"
    assert len(jobs) == total, (len(jobs), total)
    not_final = [j for j in jobs if j[2] not in FINAL]
    assert not not_final, f"{len(not_final)} jobs without a final result, e.g. {not_final[:3]}"
    leased = [j for j in jobs if j[5] is not None or j[6] is not None]
    assert not leased, f"finished jobs still carry a lease: {leased[:3]}"
    assert state == BatchState.FINISHED, state
    assert completed == by_state.get(JobState.SUCCEEDED, 0) + by_state.get(JobState.FAILED, 0), (completed, by_state)
    assert ok == by_state.get(JobState.SUCCEEDED, 0), (ok, by_state)
    assert failed == by_state.get(JobState.FAILED, 0), (failed, by_state)
    assert cancelled == 0
    assert not dup_stories, f"duplicate story rows: {dup_stories[:5]}"
    succeeded_ids = {j[0] for j in jobs if j[2] == JobState.SUCCEEDED}
    failed_ids = {j[0] for j in jobs if j[2] == JobState.FAILED}
    success_by_job = dict(success_logs)
    orphan = set(success_by_job) - succeeded_ids
    assert not orphan, f"STORY_CHECK_SUCCESS records for jobs that did not succeed: {sorted(orphan)[:10]}"
    twice = {k: v for k, v in success_by_job.items() if v != 1}
    assert not twice, f"jobs with several STORY_CHECK_SUCCESS records: {twice}"
    assert set(success_by_job) == succeeded_ids, "a succeeded job has no STORY_CHECK_SUCCESS record"
    fail_by_job = dict(fail_logs)
    reaped = {j[0] for j in jobs if j[7] == ErrorKind.LEASE_EXPIRED}  # failed by the reaper: a LEASE_EXPIRED record
    assert set(fail_by_job) == failed_ids - reaped and all(v == 1 for v in fail_by_job.values()), fail_by_job
    for j in jobs:
        if j[2] == JobState.SUCCEEDED and j[3] == OutcomeKind.HAS_STORIES:
            assert story_rows.get(j[1], 0) >= j[4], f"{j[1]}: {j[4]} stories reported, {story_rows.get(j[1])} stored"
        if j[2] == JobState.SUCCEEDED and expected_outcome is not None:
            assert j[3] == expected_outcome(j[1]), f"{j[1]}: stored {j[3]}, the source says {expected_outcome(j[1])}"
    if log_file is not None and log_file.exists():
        check_log_file(log_file, succeeded_ids)
    errors: dict[str, int] = {}
    for j in jobs:
        if j[7]:
            errors[j[7]] = errors.get(j[7], 0) + 1
    return Figures(len(jobs), len(succeeded_ids), len(failed_ids), sum(story_rows.values()),
                   sum(success_by_job.values()), errors)


def check_log_file(log_file: Path, succeeded_ids: set[int] | None = None) -> list[str]:
    """Every line is a record (timestamp first) or a traceback line (``  | ``); every
    STORY_CHECK_SUCCESS line names a job that succeeded."""
    lines = log_file.read_text(encoding="utf-8").splitlines()
    for line in lines:
        assert LOG_LINE.match(line) or line.startswith("  | "), f"a log line that is not a record: {line!r}"
        if succeeded_ids is not None and " STORY_CHECK_SUCCESS " in line:
            m = re.search(r"\bjob_id=(\d+)", line)
            assert m, line
            assert int(m.group(1)) in succeeded_ids, f"success logged for a job that did not succeed: {line}"
    return lines


# ------------------------------------------------------------------------------------------
# worker subprocesses
# ------------------------------------------------------------------------------------------


def spawn_worker(db: Path, config: Path, log_dir: Path, *extra: str, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(storycheck_cmd("worker", "--until-idle", "--db", str(db), "--config", str(config),
                                           *extra),
                            env=env or subprocess_env(log_dir), stdout=stdout, stderr=stderr,
                            start_new_session=True)


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)  # reap it, so its pid is really gone


def running_jobs_of(db_path: Path | str, pid: int) -> int:
    return int(scalar(db_path, "SELECT COUNT(*) FROM job WHERE state = ? AND lease_owner LIKE ?",
                      JobState.RUNNING, f"%:{pid}:%"))


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.pid} did not exit within {timeout:g}s")


__all__ = ["storycheck_cmd", "subprocess_env", "write_config", "sql", "scalar", "finished_count", "check_invariants",
           "check_log_file", "spawn_worker", "kill9", "running_jobs_of", "wait_exit", "Figures", "wait_for",
           ]


# ------------------------------------------------------------------------------------------
# the real engine, in this process
# ------------------------------------------------------------------------------------------


@dataclass
class EngineRun:
    db: Path
    store: object
    runner: object
    batch_id: int
    log_file: Path

    def wait_done(self, timeout: float) -> None:
        assert self.runner.wait_done([self.batch_id], timeout=timeout), \
            f"batch {self.batch_id} not done after {timeout:g}s: {self.counts()}"

    def counts(self) -> dict[str, int]:
        with sql(self.db) as con:
            return dict(con.execute("SELECT state, COUNT(*) FROM job WHERE batch_id = ? GROUP BY state",
                                    (self.batch_id,)).fetchall())

    def job(self, username: str) -> dict:
        with sql(self.db) as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM job WHERE batch_id = ? AND username = ?",
                              (self.batch_id, username)).fetchone()
        assert row is not None, username
        return dict(row)

    def records(self, username: str | None = None, event: str | None = None) -> list[dict]:
        q = "SELECT * FROM batch_log WHERE 1 = 1"
        params: list = []
        if username is not None:
            q += " AND username = ?"
            params.append(username)
        if event is not None:
            q += " AND event = ?"
            params.append(event)
        with sql(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(q + " ORDER BY id", params)]

    def log_text(self) -> str:
        for h in logs.log.handlers:
            h.flush()
        return self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""


@contextlib.contextmanager
def engine_run(tmp_path: Path, settings: Settings, usernames: list[str], *, proxy_urls=(), name: str = "b",
               start: bool = True) -> Iterator[EngineRun]:
    """:class:`helpers.Engine` (a SQLite file, proxies, a batch, a started Runner) with a fresh
    logging setup, seen through :class:`EngineRun`'s independent reads; all stopped afterwards."""
    db = tmp_path / "engine.db"
    with fresh_logging(tmp_path / "logs") as setup, \
            Engine(tmp_path, settings, usernames, proxies=proxy_urls, start=start, name=name,
                   store=open_store(str(db), log_sink=setup.sink), only_this_batch=True) as engine:
        yield EngineRun(db, engine.store, engine.runner, engine.batch_id, setup.file_path)


__all__ += ["fast_settings", "fresh_logging", "engine_run", "EngineRun"]
