"""An ``httpx`` transport whose every socket operation answers to the request's deadline.

:class:`DeadlineTransport` is what ``httpx.HTTPTransport`` is (an httpcore connection pool, a
plain, HTTP-proxy or SOCKS pool chosen by the proxy URL), built through httpcore's public
``network_backend=`` argument with a :class:`~.deadline.DeadlineBackend`. A request carries its
:class:`~.deadline.Deadline` in ``request.extensions[DEADLINE]`` (redirects keep the
extensions, so one deadline covers the whole chain); a request without one gets
``deadline_s`` from now. The response body is read under the same deadline.

httpcore's exceptions become httpx's, as ``httpx.HTTPTransport`` does it: a table and a
context manager (:func:`map_httpcore_exceptions`). Anything else (socksio's errors on a
broken SOCKS reply) passes through untouched for the caller's mapping.

Threads: one transport serves every thread using its route; it holds no per-request state
(the deadline travels with the request, see :mod:`.deadline`).
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Iterable, Iterator

import httpcore
import httpx

from storycheck_tui.sources.http.deadline import Deadline, DeadlineBackend

__all__ = ["DEADLINE", "DeadlineTransport", "map_httpcore_exceptions"]

#: the request extension holding the request's :class:`Deadline`
DEADLINE = "storycheck.deadline"

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


class _BoundBody(httpx.SyncByteStream):
    """The response body, read under the request's deadline, httpcore errors mapped."""

    def __init__(self, stream: Iterable[bytes], backend: DeadlineBackend, deadline: Deadline) -> None:
        self._stream = stream
        self._backend = backend
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        parts = iter(self._stream)
        while True:
            with self._backend.bound(self._deadline), _MAP:
                part = next(parts, None)
            if part is None:
                return
            yield part

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with self._backend.bound(self._deadline), _MAP:
                close()


class DeadlineTransport(httpx.BaseTransport):
    """One route's connection pool (direct, HTTP proxy or SOCKS5 proxy), deadline-bounded.

    ``timeout`` is the default for a socket operation httpcore gives none (the SOCKS
    handshake); ``deadline_s`` the wall limit of a request that brings no deadline of its own.
    Raises ``ValueError`` for a proxy scheme it cannot serve.
    """

    def __init__(self, *, proxy: httpx.Proxy | None, ssl_context: ssl.SSLContext, timeout: float,
                 deadline_s: float, limits: httpx.Limits) -> None:
        self._backend = DeadlineBackend(timeout)
        self._deadline_s = deadline_s
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

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = request.extensions.get(DEADLINE)
        if deadline is None:
            deadline = Deadline(self._deadline_s)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        with self._backend.bound(deadline), _MAP:
            response = self._pool.handle_request(core_request)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_BoundBody(response.stream, self._backend, deadline),  # type: ignore[arg-type]
                              extensions=response.extensions)

    def close(self) -> None:
        with _MAP:
            self._pool.close()
