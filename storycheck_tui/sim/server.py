"""A small asyncio HTTP/1.1 server: just enough for the simulator, and fast.

Requests are parsed by hand in an ``asyncio.Protocol`` (no streams, no per-request task) and
answered by a plain synchronous handler. A handler asks for latency by setting
``Response.delay``: the answer is then written by a ``call_later`` timer, so a slow or hanging
answer never blocks other connections and is cancelled, not awaited, when the server stops.

Supported: keep-alive, ``Content-Length`` request bodies, sequential requests per connection
(pipelined requests wait their turn). Not supported: chunked request bodies, TLS, upgrades.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Coroutine

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to wait before writing the answer
    close: bool = False  # close the connection after this answer


# A handler answers at once; one that must await (re-binding a port) returns a coroutine.
Handler = Callable[[Request], "Response | Coroutine[Any, Any, Response]"]


def encode_response(resp: Response, keep_alive: bool) -> bytes:
    reason = _REASONS.get(resp.status, b"Unknown")
    head = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            % (resp.status, reason, resp.content_type.encode(), len(resp.body))]
    for name, value in resp.headers:
        head.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(resp.body)
    return b"".join(head)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_head(block: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Parse a request line and headers (``block`` excludes the final blank line)."""
    try:
        text = block.decode("latin-1")
        request_line, _, rest = text.partition("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(505, "only HTTP/1.x is supported")
    headers: dict[str, str] = {}
    if rest:
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest(400, "malformed header line")
            headers[name.lower()] = value.strip()
    return method, target, version, headers


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse, call the handler, write (now or after ``delay``)."""

    def __init__(self, handler: Handler, connections: set["HttpProtocol"]):
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        # A delayed answer (timer) or an awaited one (task) is pending: later requests wait.
        self._pending: asyncio.TimerHandle | asyncio.Task | None = None
        self._paused = False

    # asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._pending is None:
            self._process()
        elif len(self._buf) > MAX_HEADER_BYTES + MAX_BODY_BYTES and not self._paused:
            self._paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._connections.discard(self)

    # ------------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection now (server stop, proxy port going dead)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._transport is not None:
            self._transport.abort()

    def _process(self) -> None:
        while self._transport is not None and self._pending is None:
            try:
                request = self._next_request()
            except BadRequest as err:
                body = b'{"error": "%s"}' % str(err).encode()
                self._write(Response(err.status, body, close=True), keep_alive=False)
                return
            if request is None:
                if self._paused and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                return
            keep_alive = _wants_keep_alive(request)
            try:
                response = self._handler(request)
            except Exception as err:  # a bug in a handler must not kill the connection loop
                response = Response(500, b'{"error": "internal: %s"}' % type(err).__name__.encode())
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "simulator handler failed", "exception": err})
            if not isinstance(response, Response):
                self._pending = asyncio.get_running_loop().create_task(
                    self._await_response(response, keep_alive))
                return
            keep_alive = keep_alive and not response.close
            if response.delay > 0:
                self._pending = asyncio.get_running_loop().call_later(
                    response.delay, self._write_delayed, response, keep_alive)
                return
            self._write(response, keep_alive)

    def _next_request(self) -> Request | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                raise BadRequest(431, "request header too large")
            return None
        method, target, version, headers = parse_head(bytes(self._buf[:end]))
        if "transfer-encoding" in headers:
            raise BadRequest(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest(400, "bad content-length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        start = end + 4
        if len(self._buf) < start + length:
            return None
        body = bytes(self._buf[start:start + length])
        del self._buf[:start + length]
        return Request(method, target, version, headers, body)

    async def _await_response(self, coro: Coroutine[Any, Any, Response], keep_alive: bool) -> None:
        try:
            response = await coro
        except Exception as err:
            response = Response(500, b'{"error": "internal: %s"}' % type(err).__name__.encode())
            asyncio.get_running_loop().call_exception_handler(
                {"message": "simulator handler failed", "exception": err})
        self._pending = None
        if response.delay > 0:
            self._pending = asyncio.get_running_loop().call_later(
                response.delay, self._write_delayed, response, keep_alive and not response.close)
            return
        self._write(response, keep_alive and not response.close)
        self._process()

    def _write_delayed(self, response: Response, keep_alive: bool) -> None:
        self._pending = None
        self._write(response, keep_alive)
        self._process()

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(encode_response(response, keep_alive))
        if not keep_alive:
            transport.close()
            self._transport = None


def _wants_keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


class Listener:
    """One listening port that can be closed (refusing connections) and re-opened on the
    same port number. Closing also drops its open connections: a dead port serves nothing."""

    def __init__(self, host: str, port: int, handler: Handler, backlog: int = 1024):
        self.host = host
        self.port = port  # 0 until the first open() picks an ephemeral port
        self._handler = handler
        self._backlog = backlog
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[HttpProtocol] = set()

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self._handler, self._connections),
            self.host, self.port, backlog=self._backlog, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_connections()

    def drop_connections(self) -> None:
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()


class LoopThread:
    """An asyncio event loop running in one daemon thread; other threads submit work."""

    def __init__(self, name: str = "storycheck-sim"):
        self._name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # exceptions the loop caught (kept, never printed)

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_error)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self.loop = loop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run ``coro`` on the loop and wait for its result (from another thread)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` on the loop and wait for its result (from another thread)."""
        async def wrapper() -> Any:
            return fn(*args)
        return self.run(wrapper(), timeout)

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def stop(self) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        self.loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            # Cancel whatever is left (nothing, normally) so closing the loop stays silent.
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.close()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = context.get("message", "")
        if exc is not None:
            text = f"{text}: {type(exc).__name__}: {exc}"
        if len(self.errors) < 100:
            self.errors.append(text)
