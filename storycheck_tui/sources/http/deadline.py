"""A wall deadline for one request, enforced on every socket operation.

httpx's timeouts bound each socket operation, not the request: a server that drips one byte
every 50 ms never trips a 10 s read timeout and can hold a worker for ever, and httpcore 1.0
reads the SOCKS handshake with no timeout at all. :class:`DeadlineBackend` is an httpcore
network backend (handed to the pool through its public ``network_backend=`` argument) whose
streams give every connect, read, write and TLS handshake the smaller of its own timeout and
the time left to the request's :class:`Deadline`.

State and threads: a :class:`Deadline` belongs to one request, and is only touched by the
thread that drives that request. httpcore's sync API does its I/O on the calling thread, so
the backend learns which deadline applies from :meth:`DeadlineBackend.bound`, a context
manager the transport enters around each call into httpcore; the binding is per thread
(a ``threading.local`` owned by the backend instance) and undone on exit.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import httpcore

__all__ = ["Deadline", "DeadlineBackend"]


class Deadline:
    """The wall-clock limit of one request, and what the sockets learned about it."""

    __slots__ = ("seconds", "started", "at", "hit", "silent")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.at = self.started + seconds  # no socket operation may wait past this
        self.hit = False  # an operation was refused or cut short because of the deadline
        self.silent = False  # a read timed out on a connection that had not sent a byte

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def budget(self, timeout: float | None, default: float) -> tuple[float, bool]:
        """The timeout for one socket operation, and whether the deadline (not ``timeout``) set it."""
        t = default if timeout is None else timeout
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            self.hit = True
            raise httpcore.ReadTimeout("read deadline exceeded")
        if remaining < t:
            return remaining, True
        return t, False


class _Binding:
    """A context manager (a class, not a generator: it runs several times per request)."""

    __slots__ = ("_local", "_deadline", "_previous")

    def __init__(self, local: threading.local, deadline: Deadline) -> None:
        self._local = local
        self._deadline = deadline
        self._previous: Deadline | None = None

    def __enter__(self) -> None:
        self._previous = getattr(self._local, "deadline", None)
        self._local.deadline = self._deadline

    def __exit__(self, *exc: object) -> bool:
        self._local.deadline = self._previous
        return False


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with a default timeout and the calling thread's deadline."""

    def __init__(self, default_timeout: float) -> None:
        self._inner = httpcore.SyncBackend()
        self.default_timeout = default_timeout  # for operations httpcore gives no timeout (SOCKS)
        self._bound = threading.local()  # .deadline: the Deadline this thread's I/O runs under

    def bound(self, deadline: Deadline) -> "_Binding":
        """``with backend.bound(d):`` runs the block's socket operations under ``d`` (this thread only)."""
        return _Binding(self._bound, deadline)

    def current(self) -> Deadline:
        """This thread's deadline; none bound (a connection closed outside a request): no limit."""
        deadline = getattr(self._bound, "deadline", None)
        return deadline if deadline is not None else Deadline(math.inf)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        deadline = self.current()
        t, by_deadline = deadline.budget(timeout, self.default_timeout)
        try:
            stream = self._inner.connect_tcp(host, port, timeout=t, local_address=local_address,
                                             socket_options=socket_options)
        except httpcore.ConnectTimeout:
            if by_deadline:
                deadline.hit = True
            raise
        return _DeadlineStream(stream, self)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:  # pragma: no cover
        t, _ = self.current().budget(timeout, self.default_timeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout=t, socket_options=socket_options),
                               self)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries only
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: DeadlineBackend, received: int = 0) -> None:
        self._inner = inner
        self._backend = backend
        self._default = backend.default_timeout
        self._received = received

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = self._backend.current()
        t, by_deadline = deadline.budget(timeout, self._default)
        try:
            data = self._inner.read(max_bytes, t)
        except httpcore.ReadTimeout:
            if by_deadline:
                deadline.hit = True
            if self._received == 0:
                deadline.silent = True
            raise
        self._received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline = self._backend.current()
        t, by_deadline = deadline.budget(timeout, self._default)
        try:
            self._inner.write(buffer, t)
        except httpcore.WriteTimeout:
            if by_deadline:
                deadline.hit = True
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        deadline = self._backend.current()
        t, by_deadline = deadline.budget(timeout, self._default)
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, t)
        except httpcore.ConnectTimeout:
            if by_deadline:
                deadline.hit = True
            raise
        return _DeadlineStream(inner, self._backend, self._received)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
