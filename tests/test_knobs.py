"""Runtime knobs (``storycheck set``), pause/resume --all, and what `batches` says of the
source: real `storycheck worker` processes with default settings check against a loopback
story server that counts the requests in flight; the knobs reach them through the database.
On SQLite and PostgreSQL; every wait is a condition with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import Reply, StoryServer, cli, stop_process, wait_for
from pilot import screen_text, until
from storycheck_tui.store import batches as ops
from storycheck_tui.store import knobs, reads
from storycheck_tui.store.db import open_store

#: a knob reaches every worker within this many seconds (the keeper reads the knobs every 0.5 s)
REACH = 2.0


class Counting(StoryServer):
    """Each answer takes ``delay`` seconds; ``in_flight`` counts requests being answered."""

    def __init__(self, delay: float = 0.1) -> None:
        self.in_flight = 0
        self.starts: list[tuple[float, int]] = []  # (when, in flight with it) of each request
        self._gauge = threading.Lock()
        super().__init__(self._answer)
        self.delay = delay

    def _answer(self, _user: str, _n: int) -> Reply:
        with self._gauge:
            self.in_flight += 1
            self.starts.append((time.monotonic(), self.in_flight))
        time.sleep(self.delay)
        with self._gauge:
            self.in_flight -= 1
        return Reply()

    def sent_within(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        return sum(1 for t in self.times() if t >= since)

    def most_in_flight_within(self, seconds: float) -> int:
        """The most requests in flight that a request started in the last ``seconds`` saw (0: none started)."""
        since = time.monotonic() - seconds
        with self._gauge:
            return max((n for t, n in self.starts if t >= since), default=0)


def start_worker(db_url: str, config: Path, log_dir: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(log_dir), "STORYCHECK_DB": ""}
    return subprocess.Popen([sys.executable, "-m", "storycheck_tui", "worker", "--db", db_url, "--config", str(config),
                             "--workers", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def test_set_lists_checks_and_clears_knobs(db_url, capsys):
    db = ("--db", db_url)
    r = cli(capsys, "set", "threads", "0", *db)
    assert r.code == 2 and r.err.count("\n") == 1 and "whole number from 1 to 256" in r.err
    r = cli(capsys, "set", "pace-cap", "-3", *db)
    assert r.code == 2 and "positive number" in r.err
    assert cli(capsys, "set", "pace-cap", "nan", *db).code == 2
    assert cli(capsys, "set", "threads", *db).code == 2  # no value
    assert cli(capsys, "set", "pace-cap", "30", *db).code == 0
    r = cli(capsys, "set", "threads", "8", *db)
    assert r.code == 0 and "no worker is running" in r.err
    assert json.loads(cli(capsys, "set", "--json", *db).out) == {"pace-cap": 30.0, "threads": 8}
    assert "pace-cap  30" in cli(capsys, "set", *db).out
    assert cli(capsys, "set", "threads", "default", *db).code == 0
    s = open_store(db_url)
    try:
        assert knobs.read(s) == knobs.Knobs(pace_cap=30.0, threads=None)
    finally:
        s.close()
    r = cli(capsys, "pause", *db)
    assert r.code == 2 and "give a BATCH (id or name) or --all" in r.err


def test_knobs_and_pause_all_reach_every_running_worker_within_two_seconds(db_url, tmp_path, capsys):
    """Two workers of 2 threads each (8 s of work for them at the start): `set threads 6`
    starts new check threads in both (more than 4 in flight), `set threads 1` idles all but
    one in each, `set pace-cap 2` holds them to 2 requests/s each (and `batches` says so, with
    why the pace changed), `pause --all` stops them, `resume --all` starts them again.

    What is timed is each worker's keeper taking the knob: its KNOB_CHANGED record's time
    minus the time the knob was written (the row's ``set_at``, the database's clock on this
    host; a cleared knob has no row: the time before `set` ran). That is what "within 2 s"
    promises (the keeper reads the knobs every 0.5 s). The log's stamps are whole seconds, so
    a record counts as taken at the end of its second: a keeper that takes a knob within the
    second the README promises always passes, one that takes more than 2 s always fails
    (measured here: 0.8-1.4 s by that count). What the server sees (threads, the
    pace, pause and resume) also waits on the checks in flight and the pace, and on the
    scheduling of 4 processes on a busy machine: those are waited for as conditions, bounded,
    not timed."""
    server = Counting()
    config = tmp_path / "sc.toml"
    config.write_text(f'[source]\nurl = "{server.base}/stories?u={{username}}"\nitems = "items"\n'
                      f'health_url = "{server.base}/health"\n')
    s = open_store(db_url)  # one database per process: closed while the commands run here
    ops.create_batch(s, "big", [f"user{i:05d}" for i in range(3000)])
    s.close()

    def paces() -> list[float | None]:
        store = open_store(db_url)
        try:
            return [w.pace for w in reads.workers(store)]
        finally:
            store.close()

    def set_at(name: str) -> float | None:
        from storycheck_tui.store.models import Knob

        store = open_store(db_url)
        try:
            row = Knob.get_or_none(Knob.name == name)
            return row.set_at if row is not None else None
        finally:
            store.close()

    logged = tmp_path / "logs" / "storycheck.log"  # both workers' records, one file
    took: list[float] = []

    def knob(name: str, value: str, record: str) -> None:
        """`set NAME VALUE`, then the seconds until each worker logged ``record`` (KNOB_CHANGED)."""
        before = time.time()
        assert cli(capsys, "set", name, value, *db).code == 0
        written = set_at(name) or before
        lines = wait_for(lambda: [x for x in logged.read_text().splitlines() if record in x] if
                         logged.read_text().count(record) == 2 else None, REACH + 5.0, f"both workers: {record}")
        for line in lines:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            took.append(stamp + 1.0 - written)

    workers: list[subprocess.Popen] = []
    db = ("--db", db_url)
    bound = REACH + 5.0  # what the server sees: a condition waited for, not a figure
    try:
        workers = [start_worker(db_url, config, tmp_path / "logs", threads=2) for _ in range(2)]
        wait_for(lambda: server.in_flight >= 3, 20, "both workers checking")
        knob("threads", "6", "check threads 2 -> 6 (set by an operator)")
        wait_for(lambda: server.in_flight >= 5, bound, "more than 4 in flight: new check threads")
        knob("threads", "1", "check threads 6 -> 1 (set by an operator)")
        # a thread past the new limit finishes the check it is in (its pace wait included), then idles
        wait_for(lambda: 0 < server.most_in_flight_within(0.5) <= 2, bound, "at most one check each")
        knob("threads", "default", "check threads 1 -> 2 (back to this worker's own setting)")
        knob("pace-cap", "2", "source pace: pace cap 2/s set by an operator")
        wait_for(lambda: server.sent_within(1.0) <= 5, bound, "2 requests/s each")
        wait_for(lambda: all(p is not None and p <= 2.0 for p in paces()), 10, "paces in the rows")
        out = cli(capsys, "batches", *db).out
        assert "source: pace 4.0 requests/s (2 workers) · circuit closed" in out, out
        assert "pace cap 2/s set by an operator" in out and "knobs: pace cap 2/s" in out, out
        engine = json.loads(cli(capsys, "batches", "--json", *db).out.splitlines()[0])["engine"]
        assert engine["workers"] == 2 and engine["pace"] == 4.0 and engine["circuit"] == "closed", engine
        assert engine["pace_cap"] == 2.0 and engine["threads"] is None
        knob("pace-cap", "none", "source pace: pace cap cleared by an operator")
        r = cli(capsys, "pause", "--all", *db)
        assert r.code == 0 and "paused 1 batch" in r.out
        # checks already past their claim (waiting for the pace, or in flight) still finish
        wait_for(lambda: server.sent_within(0.5) == 0, bound, "no request for half a second")
        assert cli(capsys, "resume", "--all", *db).out.startswith("resumed 1 batch")
        wait_for(lambda: server.sent_within(0.2) > 0, bound, "checks again")
        assert len(took) == 10 and max(took) <= REACH, f"seconds until each worker's keeper took each knob: {took}"
    finally:
        for w in workers:
            stop_process(w)
        server.close()


def test_raising_the_threads_knob_raises_how_many_jobs_a_worker_holds(tmp_path):
    """The claimer holds (inbox and checks) the live thread count plus two claims. Claims of 2
    (not the default 32) make that limit small enough to see with few threads: built with 2
    threads it held at most 6 jobs, so `threads 12` put at most 6 requests in flight (with the
    default claims the same cap is 80 jobs, met by `threads` above 80)."""
    import dataclasses

    from helpers import Engine
    from storycheck_tui.config import Settings

    server = Counting(delay=0.4)
    base = Settings()
    settings = dataclasses.replace(base, source=server.source(), path="test",
                                   engine=dataclasses.replace(base.engine, workers=2, claim_size=2))
    try:
        with Engine(tmp_path, settings, [f"user{i:04d}" for i in range(3000)]) as eng:
            wait_for(lambda: server.in_flight >= 2, 10, "both threads checking")
            knobs.set_knob(eng.store, knobs.THREADS, 12)
            wait_for(lambda: server.in_flight >= 9, 10, lambda: f"more than 6 in flight (now {server.in_flight})")
    finally:
        server.close()


def test_run_and_worker_say_the_knobs_in_force_when_they_start(tmp_path, capsys):
    """Knobs stay in the database: a later `run` or `worker` takes them in place of --workers
    and max_rate, so each says them (and how to clear them) on stderr at start; nothing when
    none is set. (One SQLite file: the line comes from the knob rows, read alike on both.)"""
    db_url = str(tmp_path / "sc.db")
    server = StoryServer(lambda u, n: Reply())
    config = tmp_path / "sc.toml"
    config.write_text(f'[source]\nurl = "{server.base}/stories?u={{username}}"\nitems = "items"\n'
                      f'health_url = "{server.base}/health"\n')
    profiles = tmp_path / "p.txt"
    profiles.write_text("ann\nbob\n")
    db = ("--db", db_url, "--config", str(config))
    from storycheck_tui.cli.knobs import in_force_line

    try:
        s = open_store(db_url)
        try:
            assert in_force_line(s) is None  # no line without knobs
        finally:
            s.close()
        assert cli(capsys, "set", "threads", "1", "--db", db_url).code == 0
        assert cli(capsys, "set", "pace-cap", "50", "--db", db_url).code == 0
        said = ("knobs in force: threads 1, pace cap 50/s "
                "(storycheck set threads default / storycheck set pace-cap default to clear)")
        r = cli(capsys, "run", str(profiles), *db)
        assert r.code == 0 and r.err.count(said) == 1, r.err
        r = cli(capsys, "worker", "--until-idle", *db)  # nothing is left: it stops at its first commit
        assert r.code == 0 and r.err.count(said) == 1, r.err
    finally:
        server.close()


def test_a_version_6_database_gets_the_knob_table_and_the_worker_facts(db_url):
    """Versions 7 (knobs, pace reason, circuit) and 8 (why a worker can send nothing) on open."""
    from playhouse.migrate import SchemaMigrator, migrate

    from storycheck_tui.store import workers as registry
    from storycheck_tui.store.models import Meta_

    s = open_store(db_url)
    wid = registry.new_worker_id()
    registry.register_worker(s, wid, 4)
    s.db.execute_sql("DROP TABLE knob")
    migrate(*[SchemaMigrator.from_database(s.db).drop_column("worker", c) for c in ("pace_reason", "circuit",
                                                                                     "circuit_reason", "blocked")])
    Meta_.update(value="6").where(Meta_.key == "schema_version").execute()
    s.close()
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == "8"
        knobs.set_knob(s, knobs.THREADS, 3)
        assert knobs.read(s) == knobs.Knobs(threads=3)
        registry.heartbeat(s, wid, checks=1, rate=0.5, lease_seconds=30, pace=4.0, pace_key="k", pace_reason="why",
                           circuit="open", circuit_reason="HTTP 503", blocked="circuit open")
        (w,) = reads.workers(s)
        assert (w.threads, w.pace, w.pace_reason, w.circuit, w.circuit_reason, w.blocked) == \
            (4, 4.0, "why", "open", "HTTP 503", "circuit open")
    finally:
        s.close()


def test_batches_says_the_circuit_is_open_from_the_workers_rows(tmp_path):
    """Default settings: the source answers, then every answer is 503. The circuit opens; the
    worker's heartbeat carries it to its row, and `batches` says so with the failure."""
    import dataclasses

    from helpers import Engine
    from storycheck_tui.cli.knobs import engine_facts, engine_lines
    from storycheck_tui.config import Settings

    down = threading.Event()
    server = StoryServer(lambda u, n: Reply(503 if down.is_set() else 200))
    try:
        settings = dataclasses.replace(Settings(), source=server.source(), path="test")
        with Engine(tmp_path, settings, [f"user{i:04d}" for i in range(2000)]) as eng:
            wait_for(lambda: eng.batch().completed_profiles >= 20, 20, "the batch to get going")
            down.set()
            wait_for(lambda: eng.runner.snapshot().circuit.state == "open", 20, "the circuit to open")
            wait_for(lambda: engine_facts(eng.store)["circuit"] == "open", 10, "the circuit in the worker's row")
            lines = engine_lines(engine_facts(eng.store))
            assert "circuit open (source error HTTP 503" in lines[0], lines
    finally:
        server.close()


def test_batches_says_why_a_worker_can_send_nothing_from_its_row(tmp_path):
    """Default settings, one proxy nobody listens on: the worker cannot send, its heartbeat
    says why, and `batches` (another process in real use: it reads only the rows) prints it."""
    import dataclasses

    from helpers import Engine, free_port
    from storycheck_tui.cli.knobs import engine_facts, engine_lines
    from storycheck_tui.config import Settings

    server = StoryServer(lambda u, n: Reply(200))
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        settings = dataclasses.replace(Settings(), source=server.source(), path="test")
        with Engine(tmp_path, settings, ["a.one", "b.two"], proxies=[dead]) as eng:
            wait_for(lambda: engine_facts(eng.store)["blocked"], 20, "the worker's row to say it is blocked")
            facts = engine_facts(eng.store)
            assert facts["blocked"].startswith(f"no usable proxy: {dead} ") and facts["blocked_workers"] == 1, facts
            assert f"nothing can be sent (1 of 1 worker): no usable proxy: {dead} " in "\n".join(engine_lines(facts))
    finally:
        server.close()


# --- the console ------------------------------------------------------------------------------

def _console(tmp_path, **kw):
    from storycheck_tui.config import Settings
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.logs import LogRing
    from storycheck_tui.ui.app import StorycheckApp

    store = open_store(str(tmp_path / "console.db"))
    runner = build_runner(store, Settings(), workers=0)  # watch-only: the worker rows are this test's
    runner.start()
    return store, runner, StorycheckApp(runner, store, LogRing(), refresh_every=0.1, **kw)


def _drive(store, runner, scene) -> None:
    """Run ``scene`` (a coroutine function driving the console), then stop the watch-only
    runner and close the store, whatever happened."""
    import asyncio

    try:
        asyncio.run(scene())
    finally:
        runner.stop(0)
        store.close()


def _toasts(app) -> list[str]:
    return [str(t.render()) for t in app.screen.query("Toast")]


def test_the_status_bar_shows_the_workers_pace_and_circuit_and_a_toast_says_it_opened(tmp_path):
    from storycheck_tui.store import workers as registry

    store, runner, app = _console(tmp_path)
    wid = registry.new_worker_id()
    registry.register_worker(store, wid, 4)

    def beat(circuit: str, why: str | None = None) -> None:
        registry.heartbeat(store, wid, checks=10, rate=5.0, lease_seconds=60, pace=42.5, pace_key="k",
                           pace_reason="429 at 47.2/s: cut to 42.5/s", circuit=circuit, circuit_reason=why)

    async def run() -> None:
        beat("closed")
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: "pace 42.5/s" in screen_text(app), "the worker's pace")
            assert "pace changed: 429 at 47.2/s: cut to 42.5/s" in screen_text(app).splitlines()[1]
            assert not any("circuit" in t for t in _toasts(app))  # closed when the console opened: no news
            await pilot.press("g")  # the charts draw the source's pace too (requests/s), not only checks/s
            await until(pilot, lambda: str(app.screen.query_one("#chart-source-pace-now").render()) == "42.5",
                         "the source pace chart")
            await pilot.press("escape")
            beat("open", "source error HTTP 503: down")
            await until(pilot, lambda: any("source circuit open: source error HTTP 503: down" in t
                                            for t in _toasts(app)), "the circuit-open toast")
            await until(pilot, lambda: "circuit open: source error HTTP 503: down · pace 42.5/s"
                         in screen_text(app).splitlines()[1], "the circuit in the status bar")
            beat("closed")
            await until(pilot, lambda: any("source circuit closed" in t for t in _toasts(app)), "closed again")

    _drive(store, runner, run)


def test_k_sets_the_knobs_for_every_worker_and_a_read_only_console_refuses(tmp_path):
    from storycheck_tui.ui.modals.knobs import KnobsScreen

    store, runner, app = _console(tmp_path)

    async def run() -> None:
        knobs.set_knob(store, knobs.THREADS, 12)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: "knobs: 12 threads per worker" in screen_text(app), "the knobs in force")
            await pilot.press("K")
            await until(pilot, lambda: isinstance(app.screen, KnobsScreen), "the knobs form")
            form = app.screen
            await until(pilot, lambda: form.query_one("#threads").value == "12", "the knobs in force")
            form.query_one("#pace-cap").value = "fast"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "not a positive number" in screen_text(app), "the form's error")
            form.query_one("#pace-cap").value = "25"
            form.query_one("#threads").value = ""
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, KnobsScreen), "the form to close")
            assert knobs.read(store) == knobs.Knobs(pace_cap=25.0, threads=None)
            await until(pilot, lambda: "knobs: pace cap 25/s" in screen_text(app), "the knobs in the status bar")
            assert any("pace cap 25/s: every running worker takes them within a second" in t for t in _toasts(app))

    _drive(store, runner, run)
    (tmp_path / "ro").mkdir()
    store, runner, app = _console(tmp_path / "ro", read_only=True)

    async def read_only() -> None:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await pilot.press("K")
            await until(pilot, lambda: any("read-only" in t for t in _toasts(app)), "the refusal")
            assert not isinstance(app.screen, KnobsScreen)

    _drive(store, runner, read_only)


def test_the_knobs_form_sets_nothing_until_it_has_read_the_knobs_in_force(tmp_path):
    """The form's fields are empty until the knobs in force are read: Set (button or ctrl+s)
    stays off until then, and says why when the read failed (here: the knob table renamed
    away while the console runs). Before, ctrl+s then cleared both knobs."""
    import sqlite3

    from textual.widgets import Button

    from storycheck_tui.ui.modals.knobs import KnobsScreen

    store, runner, app = _console(tmp_path)

    def rename(old: str, new: str) -> None:
        con = sqlite3.connect(tmp_path / "console.db")
        try:
            con.execute(f"ALTER TABLE {old} RENAME TO {new}")
            con.commit()
        finally:
            con.close()

    async def run() -> None:
        knobs.set_knob(store, knobs.THREADS, 12)
        knobs.set_knob(store, knobs.PACE_CAP, 30)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: "knobs: pace cap 30/s" in screen_text(app), "the knobs in force")
            rename("knob", "knob_away")
            await pilot.press("K")
            await until(pilot, lambda: isinstance(app.screen, KnobsScreen), "the knobs form")
            form = app.screen
            await until(pilot, lambda: "could not read the knobs in force" in screen_text(app), "the read's failure")
            assert form.query_one("#submit", Button).disabled
            rename("knob_away", "knob")  # a Set now would write the empty fields
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "not read yet" in screen_text(app), "the refusal")
            assert app.screen is form and knobs.read(store) == knobs.Knobs(pace_cap=30.0, threads=12)
            await pilot.press("escape")
            await pilot.press("K")  # read this time: filled, and Set is on
            await until(pilot, lambda: isinstance(app.screen, KnobsScreen) and app.screen is not form, "the form")
            await until(pilot, lambda: app.screen.query_one("#threads").value == "12", "the knobs in force")
            assert not app.screen.query_one("#submit", Button).disabled

    _drive(store, runner, run)


def test_the_status_bar_says_why_this_consoles_engine_can_send_nothing():
    """The engine's blocked reason (no usable proxy, circuit open, Retry-After) comes first on
    the status bar's second line, with this engine's pace added to the other workers'."""
    from storycheck_tui.engine.breaker import BreakerView
    from storycheck_tui.engine.pace import PaceView
    from storycheck_tui.engine.runner import EngineSnapshot
    from storycheck_tui.store.reads import WorkerRow
    from storycheck_tui.ui.status import StatusFacts, engine_status, render

    snap = EngineSnapshot(taken_at=0.0, worker_id="me", threads=4, running=True, in_flight=0, rate=0.0, finished=0,
                          circuit=BreakerView("closed", 0.0, 0, None, None),
                          pace=PaceView(12.0, "429 at 13.3/s: cut to 12.0/s", 0.0, 0.0, 1),
                          blocked_reason="no usable proxy: http://10.0.0.7:8080 auth_rejected (HTTP 407)")
    other = WorkerRow("w2", "app-02", 7, 8, "running", 0.0, 99.0, 10, 1.0, 8.0, "slow start", "open", "HTTP 503")
    e = engine_status(snap, [other], knobs.Knobs(pace_cap=30.0), now=100.0)
    assert (e.pace, e.circuit, e.circuit_reason) == (20.0, "open", "HTTP 503")  # the worst circuit of all
    second = render(StatusFacts(engine=e)).plain.splitlines()[1]
    assert second == ("nothing can be sent: no usable proxy: http://10.0.0.7:8080 auth_rejected (HTTP 407) · "
                      "pace 20.0/s · knobs: pace cap 30/s · pace changed: 429 at 13.3/s: cut to 12.0/s")
