"""HttpSource against real servers on 127.0.0.1: the simulator, small http.server fixtures,
raw sockets that misbehave on purpose, and pproxy as a real SOCKS5 / HTTP proxy. No mocks.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from helpers import free_port, wait_port  # one copy of the port helpers
from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import (
    AuthFailed,
    BadResponse,
    CheckError,
    InputError,
    ProxyAuthRejected,
    ProxyFailed,
    RateLimited,
    SourceUnavailable,
)
from storycheck_tui.masking import secrets
from storycheck_tui.sim import ProxyFault, SimConfig, Simulator
from storycheck_tui.sources.base import DIRECT, Route
from storycheck_tui.sources.http import HttpSource, parse_retry_after
from storycheck_tui.sources.presets import build_source, sim_settings

PROXY_PW = "Pr0xyPassw0rd-7f3a"  # never to appear in any error text
API_KEY = "ApiKey-SECRET-91c2"


# ------------------------------------------------------------------------------------------
# a tiny loopback API whose routes the tests define
# ------------------------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Loopback:
    server: ThreadingHTTPServer
    stop: threading.Event
    routes: dict[str, Callable[["Handler"], None]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, path: str) -> Callable[[Callable[["Handler"], None]], Callable[["Handler"], None]]:
        def register(fn: Callable[["Handler"], None]) -> Callable[["Handler"], None]:
            self.routes[path] = fn
            return fn
        return register

    def hits_for(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer  # with .lb attached

    def do_GET(self) -> None:  # noqa: N802
        lb: Loopback = self.server.lb  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        lb.hits.append(Hit(parts.path, self.query, {k.lower(): v for k, v in self.headers.items()}))
        fn = lb.routes.get(parts.path)
        if fn is None:
            self.reply(404, b'{"error": "no route"}')
            return
        fn(self)

    def reply(self, status: int, body: bytes | str | object = b"", headers: dict[str, str] | None = None) -> None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that hung up on purpose
        pass


def start_loopback() -> Loopback:
    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    lb = Loopback(server=server, stop=threading.Event())
    server.lb = lb  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return lb


@pytest.fixture(scope="module")
def api():
    lb = start_loopback()
    yield lb
    lb.stop.set()
    lb.server.shutdown()
    lb.server.server_close()


@pytest.fixture(scope="module")
def other_origin():
    lb = start_loopback()
    yield lb
    lb.server.shutdown()
    lb.server.server_close()


def settings_for(base: str, path: str, **kw) -> SourceSettings:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("items", "items")
    return SourceSettings(url=f"{base}{path}?username={{username}}", **kw)


@pytest.fixture
def make_source():
    made: list[HttpSource] = []

    def make(settings: SourceSettings) -> HttpSource:
        src = HttpSource(settings)
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def printed_chain(err: BaseException) -> str:
    """What a formatted traceback of ``err`` would print as exception texts (causes included)."""
    seen: list[BaseException] = []
    exc: BaseException | None = err
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return "".join("".join(traceback.format_exception_only(e)) for e in seen)


def expect(exc_type: type[CheckError], fn: Callable[[], object], *hidden: str) -> CheckError:
    """Run ``fn``; it must raise exactly ``exc_type`` with a clean, one-line, secret-free message."""
    with pytest.raises(CheckError) as info:
        fn()
    err = info.value
    assert type(err) is exc_type, f"expected {exc_type.__name__}, got {type(err).__name__}: {err}"
    text = str(err)
    assert text == err.message
    assert "\n" not in text and "\r" not in text and len(text) <= 300, text
    formatted = printed_chain(err)
    for secret in hidden:
        assert secret not in text and secret not in (err.proxy or ""), text
        assert secret not in formatted, formatted
    return err


def bounded(fn: Callable[[], object], seconds: float = 5.0) -> Callable[[], object]:
    """``fn`` run in a thread: if it has not returned or raised within ``seconds``, the test fails
    at once (instead of hanging until pytest-timeout) — for the hang-shaped bugs."""

    def run() -> object:
        box: list[tuple[bool, object]] = []

        def target() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                box.append((False, exc))

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(seconds)
        assert box, f"still running after {seconds}s: the call hangs"
        ok, value = box[0]
        if not ok:
            raise value  # type: ignore[misc]
        return value

    return run


# ------------------------------------------------------------------------------------------
# simulator and real proxies
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    # proxy 0 healthy, 1 needs auth (password PROXY_PW), 2 dead (port closed)
    s = Simulator(SimConfig(proxies=3, rate=0, faults={
        1: ProxyFault(kind="auth", username="user", password=PROXY_PW),
        2: ProxyFault(kind="dead"),
    })).start()
    yield s
    assert s.stats()["internal_errors"] == 0
    s.stop()


@dataclass
class Proxies:
    socks: int  # socks5, no auth
    socks_auth: int  # socks5 with user:PROXY_PW
    http_auth: int  # http with user:PROXY_PW


@pytest.fixture(scope="module")
def proxies():
    ports = Proxies(free_port(), free_port(), free_port())
    # --auth 0: pproxy otherwise remembers an IP that authenticated once and lets it in after
    args = [
        ["-l", f"socks5://127.0.0.1:{ports.socks}"],
        ["-l", f"socks5://127.0.0.1:{ports.socks_auth}#user:{PROXY_PW}", "--auth", "0"],
        ["-l", f"http://127.0.0.1:{ports.http_auth}#user:{PROXY_PW}", "--auth", "0"],
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "pproxy", *a], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for a in args]
    try:
        for port in (ports.socks, ports.socks_auth, ports.http_auth):
            wait_port(port)
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=5)


@pytest.fixture(scope="module")
def blackhole():
    """A port that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conns.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()
    for c in conns:
        c.close()


def sim_source(sim: Simulator, make_source, **kw) -> HttpSource:
    kw.setdefault("timeout", 2.0)
    return make_source(replace(sim_settings(sim.api_url), **kw))


# ------------------------------------------------------------------------------------------
# outcomes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["stories_a1", "nostories_b2", "private_c3", "missing_d4", "someone_else"])
def test_sim_outcomes_direct_and_through_a_proxy(sim, make_source, username):
    src = sim_source(sim, make_source)
    expected = sim.outcome_for(username)
    for via in (DIRECT, Route("p0", sim.proxy_urls[0], "sim-0")):
        out = src.check(username, via)
        assert out.kind == expected
        assert out.latency_ms > 0
        assert out.http_status == {"not_found": 404, "private": 403}.get(expected, 200)
        if expected == "has_stories":
            assert 1 <= out.story_count <= 5
            for st in out.stories:
                assert st.story_id.isdigit() and st.taken_at and st.expires_at == st.taken_at + 86400
                assert st.media_type in ("1", "2")
        else:
            assert out.stories == ()


def test_items_fields_and_time_formats(api, make_source):
    @api.route("/nested")
    def _(h: Handler) -> None:
        user = h.query["username"][0]
        h.reply(200, {"data": {"reel": {"items": [
            {"id": 17, "ts": 1700000000, "exp": "2023-11-15T22:13:20Z", "kind": "video"},
            {"id": "a-2", "ts": "2023-11-14T22:13:20.500+00:00", "kind": 2},
            {"id": 17, "ts": 1700000001},  # duplicate id: dropped, first wins
            {"id": user, "ts": 1.5e9, "exp": None},
        ]}}})

    src = make_source(settings_for(api.base, "/nested", items="data.reel.items", story_id="id", taken_at="ts",
                                   expires_at="exp", media_type="kind"))
    out = src.check("x y/z?&#ü", DIRECT)
    assert out.kind == "has_stories" and out.http_status == 200
    assert [s.story_id for s in out.stories] == ["17", "a-2", "x y/z?&#ü"]  # username quoted intact
    first, second, third = out.stories
    assert first.taken_at == 1700000000.0 and first.expires_at == 1700086400.0 and first.media_type == "video"
    assert second.taken_at == 1700000000.5 and second.media_type == "2" and second.expires_at is None
    assert third.taken_at == 1.5e9 and third.expires_at is None
    assert out.latest_story_at == 1700000000.5


def test_body_is_the_list_and_index_paths(api, make_source):
    api.route("/bare")(lambda h: h.reply(200, [{"pk": 1, "taken_at": 5}]))
    api.route("/reels")(lambda h: h.reply(200, {"reels": [{"items": []}]}))
    assert make_source(settings_for(api.base, "/bare", items="")).check("u", DIRECT).story_count == 1
    out = make_source(settings_for(api.base, "/reels", items="reels.0.items")).check("u", DIRECT)
    assert out.kind == "no_stories" and out.stories == ()


def test_custom_status_lists(api, make_source):
    api.route("/gone")(lambda h: h.reply(410, b"gone"))
    api.route("/hidden")(lambda h: h.reply(451, b""))
    out = make_source(settings_for(api.base, "/gone", not_found=(404, 410))).check("u", DIRECT)
    assert (out.kind, out.http_status, out.stories) == ("not_found", 410, ())
    assert make_source(settings_for(api.base, "/hidden", private=(451,))).check("u", DIRECT).kind == "private"
    # the same statuses with the default lists are not outcomes
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, "/gone")).check("u", DIRECT))
    assert err.message == "unexpected HTTP status 410" and err.status == 410


# ------------------------------------------------------------------------------------------
# statuses that are errors
# ------------------------------------------------------------------------------------------


def test_parse_retry_after_unit():
    now = 1_700_000_000.0
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 2.5 ", now=now) == 2.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for junk in (None, "", "soon", "nan", "inf", "Mon, 99 Foo 2023"):
        assert parse_retry_after(junk, now=now) is None, junk


@pytest.mark.parametrize("value, low, high", [
    ("7", 7.0, 7.0),
    ("0.25", 0.25, 0.25),
    ("HTTP-DATE+30", 28.0, 30.0),
    ("HTTP-DATE-30", 0.0, 0.0),
    ("whenever", None, None),
    (None, None, None),
])
def test_429_retry_after(api, make_source, value, low, high):
    path = f"/limited-{abs(hash(value))}"

    @api.route(path)
    def _(h: Handler) -> None:
        headers = {}
        if value is not None:
            v = value
            if v.startswith("HTTP-DATE"):
                v = email.utils.formatdate(time.time() + int(v[9:]), usegmt=True)
            headers["Retry-After"] = v
        h.reply(429, b'{"error": "slow down"}', headers)

    err = expect(RateLimited, lambda: make_source(settings_for(api.base, path)).check("u", DIRECT))
    assert err.status == 429 and "429" in err.message and err.proxy == "direct"
    if low is None:
        assert err.retry_after is None
    else:
        assert low <= err.retry_after <= high


def test_sim_rate_limit_and_http_date(make_source):
    with Simulator(SimConfig(rate=0.001, burst=1, retry_after=5)) as s:
        src = sim_source(s, make_source)
        assert src.check("stories_a", DIRECT).kind == "has_stories"
        err = expect(RateLimited, lambda: src.check("stories_a", DIRECT))
        assert err.retry_after == 5.0
        s.update(retry_after_http_date=True)
        err = expect(RateLimited, lambda: src.check("stories_a", DIRECT))
        assert 3.0 <= err.retry_after <= 6.0


@pytest.mark.parametrize("status", [401, 402])
def test_auth_failed(api, make_source, status):
    api.route(f"/auth{status}")(lambda h: h.reply(status, b'{"error":"bad key"}'))
    err = expect(AuthFailed, lambda: make_source(settings_for(api.base, f"/auth{status}")).check("u", DIRECT))
    assert err.status == status and str(status) in err.message


def test_sim_api_key(make_source, monkeypatch):
    monkeypatch.setenv("SC_TEST_KEY", API_KEY)
    with Simulator(SimConfig(rate=0, api_key=API_KEY)) as s:
        good = make_source(sim_settings(s.api_url, api_key_env="SC_TEST_KEY"))
        assert good.check("stories_x", DIRECT).kind == "has_stories"
        s.update(api_key="another-key-entirely")
        err = expect(AuthFailed, lambda: good.check("stories_x", DIRECT), API_KEY)
        assert err.status == 401


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_source_unavailable_with_scrubbed_one_line_excerpt(api, make_source, status):
    secrets.add(API_KEY)
    body = f"<html>\n  upstream\tfailed key={API_KEY}\r\n" + "x" * 5000
    api.route(f"/e{status}")(lambda h: h.reply(status, body))
    err = expect(SourceUnavailable, lambda: make_source(settings_for(api.base, f"/e{status}")).check("u", DIRECT),
                 API_KEY)
    assert err.status == status
    assert err.message.startswith(f"source error HTTP {status}: <html> upstream failed key=***")
    assert len(err.message) < 160


def test_other_status_is_bad_response(api, make_source):
    api.route("/teapot")(lambda h: h.reply(418, b"short and stout"))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, "/teapot")).check("u", DIRECT))
    assert err.message == "unexpected HTTP status 418" and err.status == 418


# ------------------------------------------------------------------------------------------
# bodies that are not a valid answer
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, items, message", [
    (b"<html>502 Bad Gateway</html>", "items", "response is not valid JSON: Expecting value"),
    (b'{"items": [{"pk": 1, "taken_at"', "items", "response is not valid JSON"),
    (b"\xff\xfe\x00garbage", "items", "response is not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "items", "response is not valid JSON"),
    (b'{"items": {"pk": 1}}', "items", "expected a list at 'items', found dict"),
    (b'{"items": null}', "items", "expected a list at 'items', found null"),
    (b'{"data": {}}', "data.items", "expected a list at 'data.items', found dict without key 'items' at 'data'"),
    (b'{"stories": []}', "items", "expected a list at 'items', found dict without key 'items' at the top level"),
    (b'{"data": "x"}', "data.items", "expected a list at 'data.items', found str at 'data'"),
    (b'{"items": []}', "", "expected a list as the response body, found dict"),
    (b'{"items": [1]}', "items", "item 0: expected an object, found int"),
    (b'{"items": [{"pk": 1, "taken_at": 5}, {"taken_at": 5}]}', "items", "item 1: field 'pk' is missing"),
    (b'{"items": [{"pk": null, "taken_at": 5}]}', "items", "item 0: field 'pk' must be a non-empty string"),
    (b'{"items": [{"pk": true, "taken_at": 5}]}', "items", "item 0: field 'pk' must be a non-empty string"),
    (b'{"items": [{"pk": 1}]}', "items", "item 0: field 'taken_at' is missing"),
    (b'{"items": [{"pk": 1, "taken_at": "yesterday"}]}', "items",
     "item 0: field 'taken_at' is not epoch seconds or an ISO-8601 time: 'yesterday'"),
    (b'{"items": [{"pk": 1, "taken_at": 5}, {"pk": 2, "taken_at": [1]}]}', "items",
     "item 1: field 'taken_at' is not epoch seconds or an ISO-8601 time"),
])
def test_bad_bodies(api, make_source, body, items, message):
    path = f"/bad-{abs(hash((body, items)))}"
    api.route(path)(lambda h: h.reply(200, body))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, path, items=items)).check("u", DIRECT))
    assert err.message.startswith(message), err.message
    assert err.status == 200


def test_sim_malformed_answers(make_source):
    with Simulator(SimConfig(rate=0, malformed_rate=1.0)) as s:
        src = sim_source(s, make_source)
        for name in ("stories_a", "stories_b", "nostories_c", "stories_d"):
            err = expect(BadResponse, lambda: src.check(name, DIRECT))
            assert err.message.startswith("response is not valid JSON")


def test_undecodable_gzip(api, make_source):
    api.route("/gz")(lambda h: h.reply(200, b"definitely not gzip", {"Content-Encoding": "gzip"}))
    ok = gzip.compress(json.dumps({"items": [{"pk": 1, "taken_at": 2}]}).encode())
    api.route("/gzok")(lambda h: h.reply(200, ok, {"Content-Encoding": "gzip"}))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, "/gz")).check("u", DIRECT))
    assert err.message.startswith("response body could not be decoded")
    assert make_source(settings_for(api.base, "/gzok")).check("u", DIRECT).story_count == 1


def test_body_over_limit_is_streamed_and_abandoned(api, make_source):
    total = 50 * 1024 * 1024
    sent = {"bytes": 0}
    done = threading.Event()

    @api.route("/huge")
    def _(h: Handler) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")  # no Content-Length to reject by
        h.end_headers()
        chunk = b"[" + b" " * 65534 + b"\n"
        try:
            while sent["bytes"] < total:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent["bytes"] += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            h.close_connection = True
            done.set()

    src = make_source(settings_for(api.base, "/huge", max_body_bytes=100_000, timeout=5.0))
    t0 = time.monotonic()
    err = expect(BadResponse, bounded(lambda: src.check("u", DIRECT), 20))
    assert err.message == "response body over 100000 bytes"
    assert time.monotonic() - t0 < 5.0  # not the read deadline (15 s)
    assert done.wait(10), "the server never noticed the client had gone"
    assert sent["bytes"] < total / 2, f"the client read {sent['bytes']} bytes of a body it should abandon"


def test_body_over_limit_by_content_length(api, make_source):
    @api.route("/declared")
    def _(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(5 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(b"[")
        api.stop.wait(30)  # the rest never comes: only an early rejection passes quickly
        h.close_connection = True

    src = make_source(settings_for(api.base, "/declared", max_body_bytes=1_000_000, timeout=5.0))
    t0 = time.monotonic()
    err = expect(BadResponse, lambda: src.check("u", DIRECT))
    assert err.message == "response body over 1000000 bytes (Content-Length 5242880)"
    assert time.monotonic() - t0 < 2.0


# ------------------------------------------------------------------------------------------
# slow, broken and looping servers
# ------------------------------------------------------------------------------------------


def test_slow_drip_body_hits_the_read_deadline(api, make_source):
    @api.route("/drip")
    def _(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            while not api.stop.wait(0.05):  # one byte every 50 ms: never a read timeout
                h.wfile.write(b" ")
        except OSError:
            pass
        h.close_connection = True

    src = make_source(settings_for(api.base, "/drip", timeout=0.3))
    t0 = time.monotonic()
    err = expect(SourceUnavailable, bounded(lambda: src.check("u", DIRECT)))
    elapsed = time.monotonic() - t0
    assert err.message.startswith("read deadline exceeded"), err.message
    assert 0.85 <= elapsed < 1.6, elapsed


def test_slow_drip_headers_hit_the_read_deadline(api, make_source):
    @api.route("/drip-head")
    def _(h: Handler) -> None:
        try:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not api.stop.wait(0.05):
                h.wfile.write(b"a")
        except OSError:
            pass
        h.close_connection = True

    src = make_source(settings_for(api.base, "/drip-head", timeout=0.3))
    t0 = time.monotonic()
    err = expect(SourceUnavailable, bounded(lambda: src.check("u", DIRECT)))
    assert err.message.startswith("read deadline exceeded"), err.message
    assert time.monotonic() - t0 < 1.6


def test_read_timeout(api, make_source):
    @api.route("/silent")
    def _(h: Handler) -> None:
        api.stop.wait(30)
        h.close_connection = True

    src = make_source(settings_for(api.base, "/silent", timeout=0.3))
    t0 = time.monotonic()
    err = expect(SourceUnavailable, bounded(lambda: src.check("u", DIRECT)))
    assert err.message == "read timeout (0.3s)" and err.status is None
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("rst", [False, True])
def test_connection_reset_mid_body(api, make_source, rst):
    path = f"/reset-{rst}"

    @api.route(path)
    def _(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b'{"items": [' + b" " * 100)
        h.wfile.flush()
        if rst:  # abortive close: the client sees ECONNRESET, not a clean EOF
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True

    err = expect(SourceUnavailable, lambda: make_source(settings_for(api.base, path)).check("u", DIRECT))
    assert err.message.startswith("connection reset mid-body"), err.message
    assert err.status == 200


def test_redirects(api, other_origin, make_source):
    api.route("/loop")(lambda h: h.reply(302, b"", {"Location": "/loop?username=again"}))
    api.route("/moved")(lambda h: h.reply(301, b"", {"Location": "/target?username=u"}))
    api.route("/target")(lambda h: h.reply(200, {"items": []}))
    before = len(api.hits_for("/loop"))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, "/loop")).check("u", DIRECT))
    assert err.message.startswith("too many redirects")
    assert len(api.hits_for("/loop")) - before == 6  # the request and 5 redirects, no more
    assert make_source(settings_for(api.base, "/moved")).check("u", DIRECT).kind == "no_stories"


def test_a_redirect_to_no_url_is_a_bad_response(api, make_source):
    # httpx called it RemoteProtocolError, which read as "connection reset mid-body"
    api.route("/nowhere")(lambda h: h.reply(302, b"", {"Location": "http://127.0.0.1:port/x"}))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, "/nowhere")).check("u", DIRECT))
    assert err.message == "redirected to an unusable URL: Invalid port: 'port'", err.message


def test_api_key_never_follows_a_redirect_to_another_origin(api, other_origin, make_source):
    other_origin.route("/landing")(lambda h: h.reply(200, {"items": []}))
    api.route("/away")(lambda h: h.reply(302, b"", {"Location": f"{other_origin.base}/landing"}))
    api.route("/home")(lambda h: h.reply(200, {"items": []}))
    settings = settings_for(api.base, "/away", headers={"x-access-key": API_KEY})
    src = make_source(settings)
    assert src.check("u", DIRECT).kind == "no_stories"
    assert src.check("u", DIRECT).kind == "no_stories"
    landed = other_origin.hits_for("/landing")
    assert landed and all("x-access-key" not in hit.headers for hit in landed)
    assert api.hits_for("/away")[-1].headers["x-access-key"] == API_KEY
    make_source(replace(settings, url=f"{api.base}/home?username={{username}}")).check("u", DIRECT)
    assert api.hits_for("/home")[-1].headers["x-access-key"] == API_KEY


def test_no_cookies_carried_between_checks(api, make_source):
    api.route("/cookie")(lambda h: h.reply(200, {"items": []}, {"Set-Cookie": "session=abc; Path=/"}))
    src = make_source(settings_for(api.base, "/cookie"))
    src.check("u", DIRECT)
    src.check("u", DIRECT)
    assert "cookie" not in api.hits_for("/cookie")[-1].headers


def test_direct_connect_refused_is_source_unavailable(make_source):
    src = make_source(SourceSettings(url=f"http://127.0.0.1:{free_port()}/s?u={{username}}", timeout=1.0))
    err = expect(SourceUnavailable, lambda: src.check("u", DIRECT))
    assert err.message.startswith("cannot connect to the source:") and "Connection refused" in err.message


# ------------------------------------------------------------------------------------------
# proxies
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_dead_proxy_port_is_proxy_failed(sim, make_source, scheme):
    src = sim_source(sim, make_source)
    via = Route("dead", f"{scheme}://user:{PROXY_PW}@127.0.0.1:{free_port()}", f"{scheme}://user@dead")
    err = expect(ProxyFailed, lambda: src.check("stories_a", via), PROXY_PW)
    assert err.proxy == f"{scheme}://user@dead"
    assert "Connection refused" in err.message
    expect(ProxyFailed, lambda: src.health(via), PROXY_PW)


def test_sim_dead_proxy(sim, make_source):
    src = sim_source(sim, make_source)
    expect(ProxyFailed, lambda: src.check("stories_a", Route("p2", sim.proxy_urls[2], "sim-2")))


def test_407_from_an_http_proxy(sim, make_source):
    src = sim_source(sim, make_source)
    good = sim.proxy_urls[1]
    assert PROXY_PW in good
    assert src.check("stories_a", Route("p1", good, "sim-1")).kind == "has_stories"
    wrong = Route("p1-wrong", good.replace(PROXY_PW, "Wr0ngPassw0rd-b7"), "sim-1")
    err = expect(ProxyAuthRejected, lambda: src.check("stories_a", wrong), "Wr0ngPassw0rd-b7", PROXY_PW)
    assert err.message == "proxy authentication required (407)" and err.status == 407 and err.proxy == "sim-1"
    expect(ProxyAuthRejected, lambda: src.health(wrong), "Wr0ngPassw0rd-b7")


def test_407_on_a_connect_tunnel(api, proxies, make_source):
    # an https target makes httpx send CONNECT; pproxy refuses it with 407 -> httpx.ProxyError
    src = make_source(SourceSettings(url=f"https://127.0.0.1:{free_port()}/s?u={{username}}", timeout=2.0))
    via = Route("h", f"http://user:Wr0ngPassw0rd-c8@127.0.0.1:{proxies.http_auth}", "pproxy-http")
    err = expect(ProxyAuthRejected, lambda: src.check("u", via), "Wr0ngPassw0rd-c8")
    assert err.message == "proxy authentication required (407)" and err.status == 407


def test_through_a_real_http_proxy(sim, proxies, make_source):
    src = sim_source(sim, make_source)
    via = Route("h", f"http://user:{PROXY_PW}@127.0.0.1:{proxies.http_auth}", "pproxy-http")
    assert src.check("stories_q", via).kind == "has_stories"
    assert src.health(via) > 0


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_through_a_real_socks5_proxy(sim, proxies, make_source, scheme):
    src = sim_source(sim, make_source)
    for via in (Route("s", f"{scheme}://127.0.0.1:{proxies.socks}", "pproxy-socks"),
                Route("sa", f"{scheme}://user:{PROXY_PW}@127.0.0.1:{proxies.socks_auth}", "pproxy-socks-auth")):
        for name in ("stories_s1", "nostories_s2", "private_s3", "missing_s4"):
            assert src.check(name, via).kind == sim.outcome_for(name)
        assert src.health(via) > 0
    # socks5h: the proxy resolves the host name, so use one
    named = make_source(replace(sim_settings(sim.api_url.replace("127.0.0.1", "localhost")), timeout=2.0))
    assert named.check("stories_n", Route("s", f"{scheme}://127.0.0.1:{proxies.socks}", "x")).kind == "has_stories"


def test_socks5_auth_failures(sim, proxies, make_source):
    src = sim_source(sim, make_source)
    wrong = Route("w", f"socks5://user:Wr0ngPassw0rd-d9@127.0.0.1:{proxies.socks_auth}", "pproxy-socks-auth")
    err = expect(ProxyAuthRejected, lambda: src.check("stories_a", wrong), "Wr0ngPassw0rd-d9", PROXY_PW)
    assert "Invalid username/password" in err.message
    # no credentials at all: pproxy answers in a way socksio cannot parse (raw socksio error in httpx)
    expect(ProxyFailed, lambda: src.check("stories_a", Route("n", f"socks5://127.0.0.1:{proxies.socks_auth}", "n")))
    # credentials offered to a proxy that wants none
    err = expect(ProxyFailed, lambda: src.check(
        "stories_a", Route("x", f"socks5://user:{PROXY_PW}@127.0.0.1:{proxies.socks}", "x")), PROXY_PW)
    expect(ProxyAuthRejected, lambda: src.health(wrong), "Wr0ngPassw0rd-d9")


def test_socks_route_to_an_http_proxy_port(sim, proxies, make_source):
    # pproxy's HTTP port answers the SOCKS greeting with bytes socksio cannot parse; httpcore
    # lets that socksio.ProtocolError escape un-wrapped, the source must not
    src = sim_source(sim, make_source)
    via = Route("bad", f"socks5://user:{PROXY_PW}@127.0.0.1:{proxies.http_auth}", "not-socks")
    err = expect(ProxyFailed, lambda: src.check("stories_a", via), PROXY_PW)
    assert err.message.startswith("SOCKS proxy sent an invalid reply"), err.message


def test_silent_socks_proxy_fails_fast_instead_of_hanging(sim, blackhole, make_source):
    # httpcore reads the SOCKS handshake with no timeout at all; the source must bound it
    src = sim_source(sim, make_source, timeout=0.3)
    via = Route("bh", f"socks5://user:{PROXY_PW}@127.0.0.1:{blackhole}", "silent-socks")
    err = expect(ProxyFailed, bounded(lambda: src.check("stories_a", via)), PROXY_PW)
    assert err.message == "the proxy did not answer within 0.3s"


def test_silent_http_proxy(blackhole, make_source):
    via = Route("bh", f"http://127.0.0.1:{blackhole}", "silent-http")
    # CONNECT tunnel (https target): silence is the proxy's fault
    tls = make_source(SourceSettings(url="https://127.0.0.1:9/s?u={username}", timeout=0.3))
    assert expect(ProxyFailed, lambda: tls.check("u", via)).message == "the proxy did not answer within 0.3s"
    # forward proxy (http target): the proxy may be waiting on the source; we cannot tell
    plain = make_source(SourceSettings(url="http://127.0.0.1:9/s?u={username}", timeout=0.3))
    assert expect(SourceUnavailable, lambda: plain.check("u", via)).message == "read timeout (0.3s)"


def test_unsupported_proxy_url(sim, make_source):
    src = sim_source(sim, make_source)
    err = expect(ProxyFailed, lambda: src.check("u", Route("s4", f"socks4://u:{PROXY_PW}@127.0.0.1:1", "s4")),
                 PROXY_PW)
    assert err.message.startswith(("unsupported proxy URL", "invalid proxy URL"))


# ------------------------------------------------------------------------------------------
# health
# ------------------------------------------------------------------------------------------


def test_health(api, sim, make_source):
    src = sim_source(sim, make_source)
    assert src.health(DIRECT) > 0
    assert src.health(Route("p0", sim.proxy_urls[0], "sim-0")) > 0

    api.route("/h503")(lambda h: h.reply(503, b"maintenance"))
    api.route("/h429")(lambda h: h.reply(429, b"", {"Retry-After": "3"}))
    api.route("/h404")(lambda h: h.reply(404, b""))

    def health(path: str) -> HttpSource:
        return make_source(settings_for(api.base, "/s", health_url=f"{api.base}{path}"))

    assert expect(SourceUnavailable, lambda: health("/h503").health(DIRECT)).status == 503
    assert expect(RateLimited, lambda: health("/h429").health(DIRECT)).retry_after == 3.0
    err = expect(BadResponse, lambda: health("/h404").health(DIRECT))
    assert err.message == "health check: unexpected HTTP status 404"
    # no health_url: the origin of url is probed, and any answer below 500 proves the route
    assert make_source(settings_for(api.base, "/s")).health(DIRECT) > 0
    assert api.hits_for("/")


# ------------------------------------------------------------------------------------------
# threads, clients, lifecycle, presets
# ------------------------------------------------------------------------------------------


class CountingSource(HttpSource):
    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.created: list[str] = []

    def _new_client(self, via: Route):
        self.created.append(via.key)
        return super()._new_client(via)


def test_many_threads_share_one_client_per_route(sim, proxies):
    src = CountingSource(replace(sim_settings(sim.api_url), timeout=5.0))
    routes = [DIRECT, Route("p0", sim.proxy_urls[0], "sim-0"),
              Route("s", f"socks5://127.0.0.1:{proxies.socks}", "pproxy-socks")]
    names = [f"{p}{i}" for i in range(8) for p in ("stories_", "nostories_", "private_", "missing_", "u")]
    barrier = threading.Barrier(24)
    failures: list[str] = []

    def work(n: int) -> None:
        barrier.wait()
        for k in range(6):
            name = names[(n * 7 + k) % len(names)]
            via = routes[(n + k) % len(routes)]
            try:
                got = src.check(name, via).kind
            except CheckError as exc:
                failures.append(f"{name} via {via.label}: {type(exc).__name__}: {exc}")
                continue
            if got != sim.outcome_for(name):
                failures.append(f"{name} via {via.label}: {got} != {sim.outcome_for(name)}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures, failures
        assert sorted(src.created) == sorted(r.key for r in routes)
    finally:
        src.close()


def test_route_url_change_replaces_the_client_and_close(sim, make_source):
    src = make_source(replace(sim_settings(sim.api_url), timeout=2.0))
    assert src.check("stories_a", Route("k", sim.proxy_urls[0], "k")).kind == "has_stories"
    err = expect(ProxyFailed, lambda: src.check("stories_a", Route("k", sim.proxy_urls[2], "k")))
    assert err.proxy == "k"
    src.forget("k")
    src.close()
    assert expect(SourceUnavailable, lambda: src.check("stories_a", DIRECT)).message == "source is closed"


def test_presets_and_build_source(monkeypatch):
    s = sim_settings("http://127.0.0.1:8080/")
    assert s.url == "http://127.0.0.1:8080/v1/stories?username={username}"
    assert (s.items, s.story_id, s.taken_at, s.expires_at, s.media_type) == \
        ("items", "pk", "taken_at", "expiring_at", "media_type")
    assert s.health_url == "http://127.0.0.1:8080/health" and s.headers == {}
    with pytest.raises(InputError):
        sim_settings("http://127.0.0.1:1", api_key_env="SC_SURELY_UNSET_VAR")
    monkeypatch.setenv("SC_TEST_KEY2", API_KEY)
    assert sim_settings("http://h:1", api_key_env="SC_TEST_KEY2").headers == {"x-access-key": API_KEY}

    src = build_source(SourceSettings(kind="sim", url="http://127.0.0.1:9", timeout=3.0, max_body_bytes=1234))
    try:
        assert src.settings.url == "http://127.0.0.1:9/v1/stories?username={username}"
        assert src.settings.timeout == 3.0 and src.settings.max_body_bytes == 1234
        assert src.settings.expires_at == "expiring_at"
    finally:
        src.close()
    full = build_source(s)  # a sim preset already holds {username}: kept as is
    assert full.settings == s
    full.close()
    http = build_source(SourceSettings(url="https://api.example.net/s?u={username}"))
    assert http.url_for("a/b c") == "https://api.example.net/s?u=a%2Fb%20c"
    http.close()
    for bad in (SourceSettings(url=""), SourceSettings(url="https://x/no-placeholder"),
                SourceSettings(kind="sim"), SourceSettings(kind="ftp", url="http://x/{username}")):
        with pytest.raises(InputError):
            build_source(bad)


def test_a_username_in_the_fragment_is_refused_when_the_source_is_built():
    with pytest.raises(InputError) as caught:
        HttpSource(SourceSettings(url="https://x/s?k=1#{username}"))
    assert str(caught.value) == "[source] url: {username} stands in the fragment (after #), which is never sent"


def test_a_username_in_the_host_is_put_in_per_check(api, make_source):
    # the URL is parsed per check there, as it always was: "1" makes the host 127.0.0.1
    api.route("/per-host")(lambda h: h.reply(200, {"items": []}))
    port = api.server.server_address[1]
    src = make_source(SourceSettings(url=f"http://127.0.0.{{username}}:{port}/per-host", items="items", timeout=2.0))
    assert src.check("1", DIRECT).kind == "no_stories"
    assert api.hits_for("/per-host")


def _recording(api: Loopback, path: str) -> list[list[tuple[str, str]]]:
    """Every request's headers on ``path`` as they came, repeats and all."""
    seen: list[list[tuple[str, str]]] = []

    def serve(h: Handler) -> None:
        seen.append(list(h.headers.items()))
        h.reply(200, {"items": []})
    api.route(path)(serve)
    return seen


def test_a_configured_header_replaces_the_clients_own(api, make_source):
    seen = _recording(api, "/own")
    host = f"127.0.0.1:{api.server.server_address[1]}"
    src = make_source(settings_for(api.base, "/own", headers={"user-agent": "mine/1", "Host": host,
                                                               "Accept": "application/vnd.x+json"}))
    assert src.check("u", DIRECT).kind == "no_stories"  # two Host headers: a LocalProtocolError, once
    sent = [(k.lower(), v) for k, v in seen[-1]]
    for name, value in (("user-agent", "mine/1"), ("host", host), ("accept", "application/vnd.x+json")):
        assert [v for k, v in sent if k == name] == [value], sent


def test_credentials_in_the_url_go_as_basic_auth_to_its_origin_only(api, other_origin, make_source):
    import base64

    token = "Basic " + base64.b64encode(b"reader:S3cret-url-pw").decode()
    seen = _recording(api, "/creds")
    api.route("/creds-moved")(lambda h: h.reply(307, b"", {"Location": "/creds?username=again"}))
    away = _recording(other_origin, "/creds-away")
    api.route("/creds-out")(lambda h: h.reply(302, b"", {"Location": f"{other_origin.base}/creds-away"}))
    base = api.base.replace("http://", "http://reader:S3cret-url-pw@")
    for path in ("/creds", "/creds-moved", "/creds-out"):
        assert make_source(settings_for(base, path)).check("u", DIRECT).kind == "no_stories"
    assert [dict((k.lower(), v) for k, v in hs)["authorization"] for hs in seen] == [token, token]
    assert away and all("authorization" not in dict((k.lower(), v) for k, v in hs) for hs in away)


def test_an_answer_is_read_once(api):
    from storycheck_tui.sources.http.deadline import Deadline
    from storycheck_tui.sources.http.request import Target
    from storycheck_tui.sources.http.transport import DeadlineTransport

    api.route("/once")(lambda h: h.reply(200, {"items": []}))
    transport = DeadlineTransport(proxy=None, ssl_context=httpx.create_ssl_context(), timeout=2.0,
                                  limits=httpx.Limits())
    target = Target.of(httpx.URL(f"{api.base}/once"))
    try:
        answer = transport.send(b"GET", target, [(b"Host", target.netloc)], None, Deadline(5.0))
        assert b"".join(answer.iter_raw()) == b'{"items": []}'
        with pytest.raises(httpx.StreamConsumed):  # a second read would start wherever the first stopped
            next(answer.iter_raw())
        answer.close()
    finally:
        transport.close()


def test_a_post_without_a_body_says_its_length_is_0():
    # as httpx does: a proxy or a server may answer 411 (length required) to a POST without one
    from servers import RawServer, json_answer

    srv = RawServer(lambda req, n: json_answer({"items": []}))
    src = HttpSource(SourceSettings(url=f"{srv.base}/p/{{username}}", method="POST", items="items", timeout=2.0))
    try:
        assert src.check("alice", DIRECT).kind == "no_stories"
    finally:
        src.close()
        srv.close()
    (req,) = srv.requests
    assert (req.method, req.headers.get("content-length"), req.headers.get("content-type")) == ("POST", "0", None)


@pytest.mark.parametrize("status, method_after", [(307, "POST"), (308, "POST"), (303, "GET"), (302, "GET"),
                                                  (301, "GET")])
def test_a_redirected_post_keeps_or_drops_its_body_as_httpx_does(status, method_after):
    from servers import RawServer, json_answer, redirect

    def script(req, n):
        return redirect("/second", status) if req.path == "/first" else json_answer({"items": []})

    srv = RawServer(script)
    src = HttpSource(SourceSettings(url=f"{srv.base}/first", method="POST", json={"u": "{username}"},
                                    items="items", timeout=2.0, headers={"x-access-key": API_KEY}))
    try:
        assert src.check("alice", DIRECT).kind == "no_stories"
    finally:
        src.close()
        srv.close()
    first, second = srv.requests
    assert (first.method, first.path, second.path) == ("POST", "/first", "/second")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(b'{"u":"alice"}'))
    assert second.method == method_after
    assert ("content-length" in second.headers) == (method_after == "POST")
    assert second.headers["host"] == f"127.0.0.1:{srv.port}" and second.headers["x-access-key"] == API_KEY


# ------------------------------------------------------------------------------------------
# the wall deadline holds on every route (the transport's public seam, not a patched pool)
# ------------------------------------------------------------------------------------------


def _trickle_head(api: Loopback) -> Callable[[Handler], None]:
    def serve(h: Handler) -> None:
        try:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not api.stop.wait(0.05):  # one byte every 50 ms: never a read timeout
                h.wfile.write(b"a")
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True
    return serve


def _trickle_body(api: Loopback) -> Callable[[Handler], None]:
    def serve(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            while not api.stop.wait(0.05):
                h.wfile.write(b" ")
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True
    return serve


@pytest.mark.parametrize("route", ["direct", "http-proxy", "socks5-proxy"])
@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_source_is_cut_at_the_wall_deadline_on_every_route(api, proxies, make_source, route, part):
    # timeout 0.3 s -> deadline 0.9 s; a byte every 50 ms never trips a per-read timeout
    path = f"/trickle-{part}"
    api.route(path)((_trickle_head if part == "headers" else _trickle_body)(api))
    via = {"direct": DIRECT,
           "http-proxy": Route("h", f"http://user:{PROXY_PW}@127.0.0.1:{proxies.http_auth}", "pproxy-http"),
           "socks5-proxy": Route("s", f"socks5://127.0.0.1:{proxies.socks}", "pproxy-socks")}[route]
    src = make_source(settings_for(api.base, path, timeout=0.3))
    t0 = time.monotonic()
    err = expect(SourceUnavailable, bounded(lambda: src.check("u", via), 10), PROXY_PW)
    elapsed = time.monotonic() - t0
    assert err.message == "read deadline exceeded (0.9s)", err.message
    assert 0.85 <= elapsed < 1.6, elapsed
    t1 = time.monotonic()
    expect(SourceUnavailable, bounded(lambda: src.check("u", via), 10))  # the next request gets its own deadline
    assert time.monotonic() - t1 < 1.6


def test_the_deadline_transport_alone_bounds_a_trickling_body_by_the_deadline_it_is_given(api):
    # each socket read gets 0.3 s and the trickle never waits that long: only the deadline ends it
    from storycheck_tui.sources.http.deadline import Deadline
    from storycheck_tui.sources.http.transport import DeadlineTransport

    api.route("/trickle-alone")(_trickle_body(api))
    transport = DeadlineTransport(proxy=None, ssl_context=httpx.create_ssl_context(), timeout=0.3,
                                  limits=httpx.Limits())
    url = httpx.URL(f"{api.base}/trickle-alone")
    try:
        t0 = time.monotonic()
        answer = transport.send(b"GET", url, [(b"Host", url.netloc)], None, Deadline(0.6))
        assert answer.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            bounded(lambda: sum(1 for _ in answer.iter_raw()), 10)()
        assert 0.55 <= time.monotonic() - t0 < 1.2
        assert 0 < answer.num_bytes_downloaded < 100_000
    finally:
        transport.close()


# ------------------------------------------------------------------------------------------
# a hostile source: answers built to freeze, exhaust or leak (each failed on the old code)
# ------------------------------------------------------------------------------------------

DEFAULT_MAX_BODY = SourceSettings().max_body_bytes


def test_a_field_built_to_make_masking_backtrack_does_not_freeze_the_check(api, make_source):
    # {"taken_at": "aaaa…@"} filling the default body limit: the old masking pattern needed
    # ~19 s for 100 KB of it (quadratic), holding the GIL, so every thread of the worker stopped
    filler = "a" * (DEFAULT_MAX_BODY - 100) + "@"
    body = json.dumps({"items": [{"pk": 1, "taken_at": filler}]}).encode()
    assert len(body) <= DEFAULT_MAX_BODY
    api.route("/backtrack")(lambda h: h.reply(200, body))
    src = make_source(settings_for(api.base, "/backtrack", max_body_bytes=DEFAULT_MAX_BODY))
    err = expect(BadResponse, bounded(lambda: src.check("u", DIRECT), 5))
    assert err.message.startswith("item 0: field 'taken_at' is not epoch seconds or an ISO-8601 time: 'aaaa")
    pk_body = json.dumps({"items": [{"pk": [filler], "taken_at": 1}]}).encode()
    api.route("/backtrack-pk")(lambda h: h.reply(200, pk_body))
    src = make_source(settings_for(api.base, "/backtrack-pk", max_body_bytes=DEFAULT_MAX_BODY))
    expect(BadResponse, bounded(lambda: src.check("u", DIRECT), 5))


def _zlib_stream(wbits: int, size: int) -> bytes:
    """``size`` zero bytes compressed (gzip: wbits 31, zlib: 15, raw deflate: -15), built in steps."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    parts = [c.compress(block) for _ in range(size // len(block))]
    parts.append(c.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bombs():
    """Compression bombs: each decodes to 200 MB (the old reader held all of it at once)."""
    once = _zlib_stream(31, 200 << 20)
    twice = gzip.compress(once, 9)
    return {
        "gzip, gzip": ("gzip, gzip", twice),
        "gzip": ("gzip", once),
        "deflate": ("deflate", _zlib_stream(15, 200 << 20)),
        "raw deflate": ("deflate", _zlib_stream(-15, 200 << 20)),
        "x-gzip, identity": ("x-gzip, identity", once),
    }


@pytest.mark.parametrize("name", ["gzip, gzip", "gzip", "deflate", "raw deflate", "x-gzip, identity"])
def test_a_compression_bomb_is_refused_by_its_decoded_size_in_bounded_memory(api, make_source, bombs, name):
    import tracemalloc

    encoding, payload = bombs[name]
    path = f"/bomb-{abs(hash(name))}"
    api.route(path)(lambda h: h.reply(200, payload, {"Content-Encoding": encoding}))
    src = make_source(settings_for(api.base, path))  # default max_body_bytes
    assert len(payload) < DEFAULT_MAX_BODY  # small on the wire: only the decoded size can refuse it
    tracemalloc.start()
    try:
        err = expect(BadResponse, bounded(lambda: src.check("u", DIRECT), 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.message == f"response body over {DEFAULT_MAX_BODY} bytes once decoded", err.message
    assert peak < 16 * DEFAULT_MAX_BODY, f"peak {peak / 2**20:.0f} MiB while decoding {name}"


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", "rot13"])
def test_an_encoding_that_cannot_be_bounded_is_refused(api, make_source, encoding):
    path = f"/enc-{abs(hash(encoding))}"
    api.route(path)(lambda h: h.reply(200, b"\x0b\x02\x80{}\x03", {"Content-Encoding": encoding}))
    err = expect(BadResponse, lambda: make_source(settings_for(api.base, path)).check("u", DIRECT))
    assert err.message.startswith("response body could not be decoded: unsupported Content-Encoding"), err.message
    assert api.hits_for(path)[-1].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip", "deflate", "raw deflate", "identity", "GZIP"])
def test_compressed_answers_within_the_limit_still_parse(api, make_source, encoding):
    doc = json.dumps({"items": [{"pk": i, "taken_at": 1_700_000_000 + i} for i in range(50)]}).encode()
    data = {"gzip": gzip.compress(doc), "GZIP": gzip.compress(doc), "gzip, gzip": gzip.compress(gzip.compress(doc)),
            "deflate": zlib.compress(doc), "identity": doc}.get(encoding)
    if encoding == "raw deflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = c.compress(doc) + c.flush()
    header = "deflate" if encoding == "raw deflate" else encoding
    path = f"/enc-ok-{abs(hash(encoding))}"
    api.route(path)(lambda h: h.reply(200, data, {"Content-Encoding": header}))
    assert make_source(settings_for(api.base, path)).check("u", DIRECT).story_count == 50


def test_a_compressed_error_page_is_quoted_decoded(api, make_source):
    page = gzip.compress(b"<html>upstream timed out</html>" + b" " * 100_000)
    api.route("/gz503")(lambda h: h.reply(503, page, {"Content-Encoding": "gzip"}))
    err = expect(SourceUnavailable, lambda: make_source(settings_for(api.base, "/gz503")).check("u", DIRECT))
    assert err.message.startswith("source error HTTP 503: <html>upstream timed out</html>"), err.message


def test_an_api_key_with_a_control_character_never_leaks_in_any_escaped_form(api, make_source):
    from storycheck_tui.errors import Unexpected
    from storycheck_tui.masking import register_secret, scrub

    key = "CRLF-key-5b1e77\r"  # read from a key file with Windows line endings
    register_secret(key)  # as config loading does for every ${VAR}
    api.route("/crkey")(lambda h: h.reply(200, {"items": []}))
    src = make_source(settings_for(api.base, "/crkey", headers={"x-access-key": key}))
    err = expect(Unexpected, lambda: src.check("u", DIRECT), key)
    assert "CRLF-key" not in str(err), str(err)  # h11 quotes it as b'CRLF-key-5b1e77\r' (escaped)
    assert "CRLF-key" not in scrub(printed_chain(err))  # what the log's traceback would show
