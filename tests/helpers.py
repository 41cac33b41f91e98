"""Shared helpers of the core tests: real servers on 127.0.0.1, real SQLite files, no mocks.

* :func:`wait_for` polls a predicate until it holds or a timeout says why it did not.
* :class:`StoryServer` is a tiny loopback story API whose answer to each request a test
  decides (status, body, headers, delay); it records when every request arrived.
* :func:`fast_settings` gives engine settings with short waits, so a test runs in seconds.
* :class:`Engine` opens a SQLite file in ``tmp_path``, adds proxies and a batch, and runs the
  real :class:`~storycheck_tui.engine.runner.Runner` built by ``build_runner``.
* :func:`cli` runs ``storycheck_tui.cli.main(argv)`` in-process with capsys;
  :func:`cli_subprocess` runs ``python -m storycheck_tui`` where exit codes and signals matter.
* :func:`start_pproxy` starts a real SOCKS5 proxy (``python -m pproxy``) as a subprocess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from storycheck_tui import logs
from storycheck_tui.config import EngineSettings, ProxySettings, RetrySettings, Settings, SourceSettings
from storycheck_tui.engine.wiring import build_runner
from storycheck_tui.inputs.proxies import parse_proxy_line
from storycheck_tui.states import BatchState, JobState
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store, open_store
from storycheck_tui.store.models import Batch, BatchLog, Job, Proxy

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# waiting
# ------------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "",
             interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that, or fail after ``timeout`` s.

    ``what`` names the condition in the failure message; a callable is called then (to show
    the state at the moment of failure)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g}s waiting for {text or predicate!r} (last: {last!r})")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# logging: a fresh setup writing into tmp_path for every test
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_logging(log_dir: Path) -> Iterator[logs.Logging]:
    """The ONE logging setup, fresh, writing its file into ``log_dir``; removed afterwards."""
    logs.reset_logging()
    try:
        yield logs.setup_logging(log_dir)
    finally:
        logs.reset_logging()


@pytest.fixture
def logsetup(tmp_path):
    """:func:`fresh_logging` for one test, its file under ``tmp_path/logs``."""
    with fresh_logging(tmp_path / "logs") as setup:
        yield setup


def log_text(setup: logs.Logging) -> str:
    for h in logs.log.handlers:
        h.flush()
    assert setup.file_path is not None
    return setup.file_path.read_text(encoding="utf-8")


def ring_events(setup: logs.Logging, event: str | None = None) -> list[logs.LogEntry]:
    return [e for e in setup.ring.snapshot() if event is None or e.event == event]


# ------------------------------------------------------------------------------------------
# a loopback story API with per-request answers decided by the test
# ------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # bytes, str, or an object sent as JSON; None: a valid empty story list
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the request line was read (same clock as the tests)
    username: str
    headers: dict[str, str]
    path: str


def stories_body(n: int, username: str = "u") -> dict:
    now = int(time.time())
    return {"items": [{"pk": f"{username}-{k}", "taken_at": now - 60 * (k + 1)} for k in range(n)]}


class StoryServer:
    """``GET /stories?u=NAME`` answered by ``respond(username, n)`` (n: 1 for the first request
    of that username); ``GET /health`` answers 200 unless ``healthy`` is False."""

    def __init__(self, respond: Callable[[str, int], Reply] | None = None):
        self.respond = respond or (lambda u, n: Reply())
        self.healthy = True
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path == "/health":
                    self._send(Reply(200 if outer.healthy else 503, {"ok": outer.healthy}))
                    return
                user = (parse_qs(parts.query).get("u") or [""])[0]
                with outer._lock:
                    n = outer._counts.get(user, 0) + 1
                    outer._counts[user] = n
                    outer.arrivals.append(Arrival(time.monotonic(), user, {k.lower(): v for k, v in self.headers.items()},
                                                  parts.path))
                self._send(outer.respond(user, n))

            def _send(self, r: Reply) -> None:
                body = r.body
                if body is None:
                    body = {"items": []}
                if not isinstance(body, (bytes, str)):
                    body = json.dumps(body)
                if isinstance(body, str):
                    body = body.encode()
                if r.delay:
                    time.sleep(r.delay)
                try:
                    self.send_response(r.status)
                    for k, v in r.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (deadline): nothing to tell it

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:  # no tracebacks on stderr
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def source(self, **kw: Any) -> SourceSettings:
        kw.setdefault("timeout", 2.0)
        return SourceSettings(kind="http", url=f"{self.base}/stories?u={{username}}", items="items", story_id="pk",
                              taken_at="taken_at", health_url=f"{self.base}/health", **kw)

    def count(self, username: str) -> int:
        with self._lock:
            return self._counts.get(username, 0)

    def times(self, username: str | None = None) -> list[float]:
        with self._lock:
            return [a.at for a in self.arrivals if username is None or a.username == username]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def story_server():
    servers: list[StoryServer] = []

    def make(respond: Callable[[str, int], Reply] | None = None) -> StoryServer:
        s = StoryServer(respond)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------

# The ONE set of engine settings for tests. What it changes from the shipped defaults, and why;
# every field not named here keeps its default (max_claims among them: a test that needs more
# claims says so on that test, with the reason).
FAST_RETRY = RetrySettings(
    max_attempts=3,  # default 4: a test of "gives up" needs one bad answer fewer
    base_wait=0.01, max_wait=0.05,  # default 0.5-30 s of backoff: retries within a test's seconds
    deadline=20.0,  # default 120 s: a check that hangs fails its test in 20 s, not two minutes
)
FAST_PROXIES = ProxySettings(
    rate=200.0, burst=20.0,  # default 1/s, burst 2: batches of tens of profiles in well under a second
    cooldown=0.2, max_cooldown=1.0,  # default 5-300 s: a proxy that failed is back within the test
    dead_after=3,  # default 5: a test of a dead proxy needs fewer failures
    validate_every=0.2,  # default 10 s: a revived proxy is seen within the test
)
FAST_ENGINE = EngineSettings(
    workers=4,  # default 16: the test machine has 2 cores shared by parallel runs
    lease_seconds=30.0,  # default 60 s: a lost lease comes back within a test's timeout
    claim_size=16,  # default 32: small batches still spread over several claims
    commit_every=0.05, heartbeat_every=0.5,  # default 0.25 s and 2 s: results visible sooner
    grace_seconds=2.0,  # default 10 s: a stop with checks in flight ends within the test
)


def fast_settings(source: SourceSettings, *, retry: dict | None = None, proxies: dict | None = None,
                  engine: dict | None = None) -> Settings:
    """The tests' engine settings (see FAST_*), with per-test changes by field name."""
    return Settings(
        source=source,
        retry=dataclasses.replace(FAST_RETRY, **(retry or {})),
        proxies=dataclasses.replace(FAST_PROXIES, **(proxies or {})),
        engine=dataclasses.replace(FAST_ENGINE, **(engine or {})),
        path="test",
    )


def sim_source(sim, **kw: Any) -> SourceSettings:
    """The ``[source]`` of the simulator (the http source with the sim preset)."""
    from storycheck_tui.sources.presets import sim_settings

    return dataclasses.replace(sim_settings(sim.api_url), timeout=kw.pop("timeout", 2.0), **kw)


# ------------------------------------------------------------------------------------------
# the engine against a SQLite file
# ------------------------------------------------------------------------------------------


def sqlite_store(tmp_path: Path, name: str = "storycheck.db") -> Store:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return open_store(str(tmp_path / name))


class Engine:
    """A SQLite file, proxies, one batch and a started runner; ``with Engine(...) as eng:``."""

    def __init__(self, tmp_path: Path, settings: Settings, usernames: Iterable[str] = (), *,
                 proxies: Iterable[str] = (), start: bool = True, store: Store | None = None,
                 batch_ids: list[int] | None = None, name: str = "t", only_this_batch: bool = False):
        self.store = store or sqlite_store(tmp_path)
        self.settings = settings
        if proxies:
            ops.add_proxies(self.store, [parse_proxy_line(u) for u in proxies])
        usernames = list(usernames)
        self.batch_id = ops.create_batch(self.store, name, usernames) if usernames else None
        if only_this_batch:  # the runner works on this batch only (as `storycheck run FILE`)
            batch_ids = [self.batch_id] if self.batch_id is not None else []
        self.runner = build_runner(self.store, settings, batch_ids=batch_ids)
        if start:
            self.runner.start()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.runner.started:
            self.runner.stop(1.0)
        self.store.close()

    def batch(self, batch_id: int | None = None) -> Batch:
        return Batch.get_by_id(batch_id or self.batch_id)

    def jobs(self, batch_id: int | None = None) -> list[Job]:
        return list(Job.select().where(Job.batch == (batch_id or self.batch_id)).order_by(Job.id))

    def job(self, username: str, batch_id: int | None = None) -> Job:
        return Job.get((Job.batch == (batch_id or self.batch_id)) & (Job.username == username))

    def logs(self, event: str | None = None, batch_id: int | None = None, username: str | None = None) -> list[BatchLog]:
        q = BatchLog.select().order_by(BatchLog.id)
        if event:
            q = q.where(BatchLog.event == event)
        if batch_id:
            q = q.where(BatchLog.batch == batch_id)
        if username:
            q = q.where(BatchLog.username == username)
        return list(q)

    def done(self, batch_id: int | None = None, timeout: float = 20.0) -> Batch:
        """Wait until the batch is finished (every job succeeded or failed) and written."""
        bid = batch_id or self.batch_id
        wait_for(lambda: self.batch(bid).state == BatchState.FINISHED, timeout, f"batch {bid} to finish")
        return self.batch(bid)

    def proxy_row(self, label: str) -> Proxy:
        return Proxy.get(Proxy.label == label)


def counts_by_state(store: Store, batch_id: int) -> dict[str, int]:
    p = store.dialect.param
    rows = store.db.execute_sql(f"SELECT state, COUNT(*) FROM job WHERE batch_id = {p} GROUP BY state", (batch_id,))
    return {s: int(n) for s, n in rows.fetchall()}


def assert_counters_match_rows(store: Store, batch_id: int) -> dict[str, int]:
    """Batch counters == counts of job rows (the invariant of seed defect 3)."""
    b = Batch.get_by_id(batch_id)
    c = counts_by_state(store, batch_id)
    ok, failed, cancelled = c.get(JobState.SUCCEEDED, 0), c.get(JobState.FAILED, 0), c.get(JobState.CANCELLED, 0)
    assert (b.successful_checks, b.failed_checks, b.completed_profiles, b.cancelled_profiles) == \
        (ok, failed, ok + failed, cancelled), f"counters {b.__data__} vs rows {c}"
    assert b.total_profiles == sum(c.values())
    return c


# ------------------------------------------------------------------------------------------
# the CLI
# ------------------------------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def cli(capsys, *argv: str) -> CliResult:
    """``storycheck ARGV`` in this process, like a fresh process: its own logging setup, its
    signal handlers restored afterwards. stdout/stderr captured with capsys."""
    from storycheck_tui.cli import main

    capsys.readouterr()
    logs.reset_logging()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = main([str(a) for a in argv])
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        logs.reset_logging()
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def cli_subprocess(*argv: str, env: dict[str, str] | None = None, timeout: float = 60.0,
                   cwd: Path | None = None) -> CliResult:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "storycheck_tui", *map(str, argv)], capture_output=True, text=True,
                       env=full_env, timeout=timeout, cwd=cwd or REPO)
    return CliResult(p.returncode, p.stdout, p.stderr)


# ------------------------------------------------------------------------------------------
# a real SOCKS5 proxy
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_for(accepts, timeout, f"port {port} to accept connections")


def start_pproxy(listen: str, *extra: str) -> subprocess.Popen:
    """``python -m pproxy -l LISTEN``; returns once its port accepts connections."""
    port = urlsplit(listen.split("#")[0]).port
    proc = subprocess.Popen([sys.executable, "-m", "pproxy", "-l", listen, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except BaseException:
        proc.kill()
        raise
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def stays(predicate: Callable[[], Any], duration: float, what: str = "", interval: float = 0.02) -> None:
    """Assert that ``predicate`` holds at every poll for ``duration`` seconds (an observation
    window for "nothing happens", the only kind of check that needs one)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert predicate(), f"{what or predicate!r} stopped holding"
        time.sleep(interval)
