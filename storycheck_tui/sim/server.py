"""The simulator's HTTP/1.1 server: llhttp (``httptools``) parses, an ``asyncio.Protocol`` drives it.

Each connection feeds its bytes to an ``httptools.HttpRequestParser`` (llhttp, the parser of
Node.js and uvicorn), which does the protocol's hard part: request lines and headers, a
``Content-Length`` that is not plain digits, two ``Content-Length`` headers, or one next to
``Transfer-Encoding`` are refused with 400 and the connection closed, never read as a second
request; chunked request bodies; keep-alive. Pipelined requests are answered in order, one at a
time. A plain synchronous handler answers; it asks for latency with ``Response.delay``: the
answer is then written by a ``call_later`` timer, so a slow or hanging answer never blocks
other connections and is cancelled, not awaited, when the server stops. Answers are framed
here (status line, ``Content-Type``, ``Content-Length``, the handler's headers).

Why llhttp and not h11: the simulator is the CPU-bound server of benchmark 1. Answering
``/v1/stories`` costs its core about 20 us a request with llhttp (as with the former
hand-written parser) and 65-70 us with h11, pure Python (figures with ``wrk``, 16 connections).

Bounds, so a client cannot hold or grow the server: a request head of at most
``MAX_HEADER_BYTES`` and a body of at most ``MAX_BODY_BYTES`` (431/413, then closed); a request
must arrive whole within ``REQUEST_TIMEOUT`` seconds of its first byte, and a connection that
waits for its next request, or does not read its answers, is dropped after ``IDLE_TIMEOUT``
seconds (one sweep a second per port checks both); a client that does not read its answers is
not read either (asyncio's write flow control), and at most ``MAX_PIPELINED`` parsed requests
wait for their answers, so pipelined answers never pile up in memory. No TLS, no upgrades
(``CONNECT`` is answered by the handler, then the connection closed).

State: everything here is owned by the event loop's thread (``LoopThread``); other threads
reach it only through ``LoopThread.run``/``call``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Coroutine

import httptools

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
REQUEST_TIMEOUT = 5.0  # seconds from a request's first byte to its last
IDLE_TIMEOUT = 60.0  # seconds a keep-alive connection may wait for its next request
SWEEP_EVERY = 1.0
MAX_PIPELINED = 64  # parsed requests waiting for their answer before reading pauses

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


def _error(status: int, message: str) -> Response:
    return Response(status, b'{"error": "%s"}' % message.encode(), close=True)


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse with llhttp, call the handler, write (now or after ``delay``)."""

    def __init__(self, handler: Handler, connections: set["HttpProtocol"]):
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # the request being read: target, headers, body, head bytes so far, loop.time() of its start
        self._target = b""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._head_bytes = 0
        self._started: float | None = None
        # Parsed, not yet answered (pipelined), with keep-alive; a Response is a refusal to send
        # before closing.
        self._queue: deque[tuple[Request | Response, bool]] = deque()
        # A delayed answer (timer) or an awaited one (task) is pending: later requests wait.
        self._pending: asyncio.TimerHandle | asyncio.Task | None = None
        self._reading = True
        self._can_write = True  # False while the client does not read what we wrote
        self._closing = False  # answer what is queued, then close
        # loop.time() by which the client must have sent something (None: we owe an answer)
        self.deadline: float | None = None

    # asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        self.deadline = asyncio.get_running_loop().time() + IDLE_TIMEOUT

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._closing = True  # CONNECT or an upgrade: answered (the handler refuses), then closed
        except _Refused as err:
            self._queue_refusal(err.status, err.message)
        except httptools.HttpParserError as err:
            self._queue_refusal(400, f"bad request: {err}")
        if len(self._queue) > MAX_PIPELINED:
            self._pause_reading()
        if self._pending is None and self._can_write:
            self._process()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._cancel_pending()
        self._connections.discard(self)

    def pause_writing(self) -> None:
        self._can_write = False
        self._pause_reading()
        # a client that reads none of its answers is dropped like an idle one
        self.deadline = asyncio.get_running_loop().time() + IDLE_TIMEOUT

    def resume_writing(self) -> None:
        self._can_write = True
        if self._pending is None:
            self._process()

    # llhttp callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = {}
        self._body.clear()
        self._head_bytes = 0
        self._started = asyncio.get_running_loop().time()

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._count_head(len(name) + len(value))

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            raise _Refused(413, "request body too large")

    def on_message_complete(self) -> None:
        parser = self._parser
        request = Request(parser.get_method().decode("ascii"), self._target.decode("latin-1"),
                          "HTTP/" + parser.get_http_version(), self._headers, bytes(self._body))
        self._queue.append((request, parser.should_keep_alive()))
        self._started = None

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEADER_BYTES:
            raise _Refused(431, "request header too large")

    # ------------------------------------------------------------------------------------

    @property
    def unsent_bytes(self) -> int:
        """Answers written but not yet taken by the kernel (the client is not reading)."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def abort(self) -> None:
        """Drop the connection now (server stop, proxy port going dead, timeout)."""
        self._cancel_pending()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._transport is not None:
            self._reading = True
            self._transport.resume_reading()

    def _queue_refusal(self, status: int, message: str) -> None:
        """Answer what came before, then this error, then close: the stream cannot be trusted."""
        self._closing = True
        self._queue.append((_error(status, message), False))

    def _process(self) -> None:
        while self._transport is not None and self._pending is None and self._can_write:
            if not self._queue:
                if self._closing:
                    self._close()
                    return
                self._waiting_for_client()
                return
            request, keep_alive = self._queue.popleft()
            if isinstance(request, Response):
                self._write(request, False)
                return
            self.deadline = None  # we owe the answer now
            try:
                response = self._handler(request)
            except Exception as err:  # a bug in a handler must not kill the connection loop
                response = self._internal_error(err)
            if not isinstance(response, Response):
                self._pending = asyncio.get_running_loop().create_task(
                    self._await_response(response, keep_alive))
                return
            self._answer(response, keep_alive)

    def _waiting_for_client(self) -> None:
        """Nothing left to answer: arm the timeout that fits and read again."""
        now = asyncio.get_running_loop().time()
        if not self._reading and self._started is not None:
            self._started = now  # we stopped reading this request, not the client: its time starts again
        if self._started is None:
            self.deadline = now + IDLE_TIMEOUT
        else:  # a request is on its way: it has REQUEST_TIMEOUT from its first byte
            self.deadline = self._started + REQUEST_TIMEOUT
        self._resume_reading()

    def _answer(self, response: Response, keep_alive: bool) -> None:
        keep_alive = keep_alive and not response.close and not (self._closing and not self._queue)
        if response.delay > 0:
            self._pending = asyncio.get_running_loop().call_later(
                response.delay, self._write_delayed, response, keep_alive)
            return
        self._write(response, keep_alive)

    async def _await_response(self, coro: Coroutine[Any, Any, Response], keep_alive: bool) -> None:
        try:
            response = await coro
        except Exception as err:
            response = self._internal_error(err)
        self._pending = None
        self._answer(response, keep_alive)
        if self._pending is None:
            self._process()

    @staticmethod
    def _internal_error(err: Exception) -> Response:
        asyncio.get_running_loop().call_exception_handler(
            {"message": "simulator handler failed", "exception": err})
        return Response(500, b'{"error": "internal: %s"}' % type(err).__name__.encode())

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
            self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _Refused(Exception):
    """Raised from a parser callback: the request breaks one of our limits."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


class Listener:
    """One listening port that can be closed (refusing connections) and re-opened on the
    same port number. Closing also drops its open connections: a dead port serves nothing."""

    def __init__(self, host: str, port: int, handler: Handler, backlog: int = 1024):
        self.host = host
        self.port = port  # 0 until the first open() picks an ephemeral port
        self._handler = handler
        self._backlog = backlog
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
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
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.drop_connections()

    def connection_figures(self) -> tuple[int, int]:
        """Open connections and the bytes of answers they hold unsent."""
        return len(self._connections), sum(c.unsent_bytes for c in self._connections)

    def drop_connections(self) -> None:
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()

    def _sweep(self) -> None:
        """Drop the connections whose client let its deadline pass (see the module docstring)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self._connections if c.deadline is not None and c.deadline <= now]:
            conn.abort()
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)


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
