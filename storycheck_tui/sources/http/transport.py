"""One route's connection pool, every socket operation bounded by the request's deadline.

:class:`DeadlineTransport` holds what ``httpx.HTTPTransport`` holds (an httpcore connection
pool: plain, HTTP-proxy or SOCKS, chosen by the proxy URL), built through httpcore's public
``network_backend=`` argument with a :class:`~.deadline.DeadlineBackend`. :meth:`send` takes a
request as httpcore does (method, :class:`~.request.Target`, header bytes, body bytes) and its
:class:`~.deadline.Deadline`, and gives back an :class:`Answer`: status, headers and the raw
body, read under the same deadline.

Why not ``httpx.Request`` and ``httpx.Response``: building and wrapping them (URL merging,
header normalisation, byte-stream classes, the client's auth and redirect generators) cost
about 110 us of CPU per request on the 2-core benchmark machine, a third of a whole check.
The source needs a status, the headers and the raw bytes (:mod:`.body` decodes them itself,
bounded); :mod:`.client` builds the request and follows redirects.

httpcore's exceptions become httpx's, as ``httpx.HTTPTransport`` does it: a table and a
context manager (:func:`map_httpcore_exceptions`), so :mod:`.failures` speaks httpx's types
alone. Anything else (socksio's errors on a broken SOCKS reply) passes through untouched for
the caller's mapping.

Threads: one transport serves every thread using its route; it holds no per-request state
(the deadline is bound to the calling thread for each call into httpcore, see
:mod:`.deadline`). An :class:`Answer` belongs to the thread that sent its request.
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Any, Iterable, Iterator

import httpcore
import httpx

from storycheck_tui.sources.http.deadline import Deadline, DeadlineBackend
from storycheck_tui.sources.http.request import Target

__all__ = ["Answer", "DeadlineTransport", "map_httpcore_exceptions"]

#: httpcore exception -> httpx exception; the most specific match wins
HTTPCORE_TO_HTTPX: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def _httpx_class(exc: BaseException) -> type[httpx.HTTPError] | None:
    found: type[httpx.HTTPError] | None = None
    for source, target in HTTPCORE_TO_HTTPX.items():
        if isinstance(exc, source) and (found is None or issubclass(target, found)):
            found = target
    return found


class map_httpcore_exceptions:  # noqa: N801 - used like contextlib's lower-case managers
    """``with map_httpcore_exceptions():`` re-raises an httpcore exception as its httpx twin."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None:
            return False
        target = _httpx_class(exc)
        if target is None:
            return False
        raise target(str(exc)) from exc


_MAP = map_httpcore_exceptions()


class Answer:
    """An answer, open until :meth:`close`: ``status_code``, ``headers`` and the raw body
    (:meth:`iter_raw`, still content-encoded), read under the request's deadline with
    httpcore's errors mapped. ``num_bytes_downloaded``: the body bytes read so far."""

    __slots__ = ("status_code", "headers", "num_bytes_downloaded", "_stream", "_backend", "_deadline", "_read")

    def __init__(self, status_code: int, headers: httpx.Headers, stream: Iterable[bytes], backend: DeadlineBackend,
                 deadline: Deadline) -> None:
        self.status_code = status_code
        self.headers = headers
        self.num_bytes_downloaded = 0
        self._stream = stream
        self._backend = backend
        self._deadline = deadline
        self._read = False

    def iter_raw(self) -> Iterator[bytes]:
        """The body's raw chunks, once: a second read raises ``httpx.StreamConsumed`` (it would
        go on from wherever the first one stopped)."""
        if self._read:
            raise httpx.StreamConsumed()
        self._read = True
        parts = iter(self._stream)
        while True:
            with self._backend.bound(self._deadline), _MAP:
                part = next(parts, None)
            if part is None:
                return
            self.num_bytes_downloaded += len(part)
            yield part

    def close(self) -> None:
        """Give the connection back to the pool (or close it, when the body was not read to its end)."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            with self._backend.bound(self._deadline), _MAP:
                close()


class DeadlineTransport:
    """One route's connection pool (direct, HTTP proxy or SOCKS5 proxy), deadline-bounded.

    ``timeout`` bounds each socket operation (and the wait for a free connection), as httpx's
    ``Timeout(timeout)`` does; it is also the default for an operation httpcore gives none (the
    SOCKS handshake). Raises ``ValueError`` for a proxy scheme it cannot serve.
    """

    def __init__(self, *, proxy: httpx.Proxy | None, ssl_context: ssl.SSLContext, timeout: float,
                 limits: httpx.Limits) -> None:
        self._backend = DeadlineBackend(timeout)
        self._extensions: dict[str, Any] = {"timeout": httpx.Timeout(timeout).as_dict()}
        pool_args = dict(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self._backend,
        )
        self._pool: httpcore.ConnectionPool | httpcore.HTTPProxy | httpcore.SOCKSProxy
        if proxy is None:
            self._pool = httpcore.ConnectionPool(**pool_args)  # type: ignore[arg-type]
            return
        url = proxy.url
        proxy_url = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
        if url.scheme in ("http", "https"):
            self._pool = httpcore.HTTPProxy(proxy_url=proxy_url, proxy_auth=proxy.raw_auth,
                                            proxy_headers=proxy.headers.raw, proxy_ssl_context=proxy.ssl_context,
                                            **pool_args)  # type: ignore[arg-type]
        elif url.scheme in ("socks5", "socks5h"):
            self._pool = httpcore.SOCKSProxy(proxy_url=proxy_url, proxy_auth=proxy.raw_auth,
                                             **pool_args)  # type: ignore[arg-type]
        else:
            raise ValueError(f"proxy scheme must be http, https, socks5 or socks5h, not {url.scheme!r}")

    def send(self, method: bytes, target: Target, headers: list[tuple[bytes, bytes]], content: bytes | None,
             deadline: Deadline) -> Answer:
        """One request to ``target``, its headers (``Host`` among them) as they go on the wire; the
        answer once its headers came, its body still to read. Raises httpx's errors."""
        request = httpcore.Request(
            method, httpcore.URL(scheme=target.scheme, host=target.host, port=target.port, target=target.path),
            headers=headers, content=content, extensions=self._extensions)
        with self._backend.bound(deadline), _MAP:
            response = self._pool.handle_request(request)
        return Answer(response.status, httpx.Headers(response.headers), response.stream,  # type: ignore[arg-type]
                      self._backend, deadline)

    def close(self) -> None:
        with _MAP:
            self._pool.close()
