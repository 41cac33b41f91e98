"""Anything a request can raise, as a typed :class:`~storycheck_tui.errors.CheckError`.

:class:`Mapping` is a context manager (``with Mapping(...) as m:``) around one request: on
the way out, an httpx, httpcore, socksio or body-reading exception becomes the CheckError the
table below names, with a one-line, masked message. ``ProxyFailed`` means "fail over to
another proxy"; ``SourceUnavailable`` and ``BadResponse`` mean "the answer was bad". Only an
``Unexpected`` keeps the original exception as ``__cause__`` (its traceback is what the log
needs); for the errors understood here the message says it all, and the httpx text (which may
hold a URL with credentials) stays out of formatted tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from storycheck_tui.errors import BadResponse, CheckError, ProxyAuthRejected, ProxyFailed, SourceUnavailable, Unexpected
from storycheck_tui.masking import one_line, scrub
from storycheck_tui.sources.base import Route
from storycheck_tui.sources.http.body import BodyTooLarge, BodyUndecodable, DeadlineExceeded
from storycheck_tui.sources.http.client import MAX_REDIRECTS
from storycheck_tui.sources.http.deadline import Deadline
from storycheck_tui.sources.http.parsing import BadBody

try:  # socksio comes with httpx[socks]; httpcore lets its ProtocolError escape (a bare "Malformed reply")
    from socksio.exceptions import SOCKSError
except ImportError:  # pragma: no cover - the extra is a declared dependency
    class SOCKSError(Exception):  # type: ignore[no-redef]
        pass

__all__ = ["MAX_MESSAGE", "make_error", "Mapping"]

#: longest error message built here
MAX_MESSAGE = 300


def make_error(cls: type[CheckError], message: str, via: Route, status: int | None = None,
               **extra: Any) -> CheckError:
    """A CheckError whose message is one masked line and whose proxy is the route's label."""
    return cls(one_line(message, MAX_MESSAGE, fold=True), status=status, proxy=scrub(via.label), **extra)


@dataclass
class Mapping:
    """One request's context for mapping its exceptions; set ``status`` once a response came."""

    via: Route
    https: bool  # the request's URL is https (a proxy tunnels it)
    timeout: float
    deadline: Deadline
    status: int | None = None

    def __enter__(self) -> "Mapping":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None or isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return False
        mapped = self.map(exc)
        if mapped is exc:
            return False
        if isinstance(mapped, Unexpected):
            raise mapped from exc
        raise mapped from None

    # ------------------------------------------------------------------ the table

    def map(self, exc: BaseException) -> BaseException:
        if isinstance(exc, CheckError):
            if exc.proxy is None:
                exc.proxy = scrub(self.via.label)
            return exc
        for types, rule in _RULES:
            if isinstance(exc, types):
                mapped = rule(self, exc)
                if mapped is not None:
                    return mapped
        return self.err(Unexpected, f"{type(exc).__name__}: {exc}")

    def err(self, cls: type[CheckError], message: str, status: int | None = -1) -> CheckError:
        return make_error(cls, message, self.via, self.status if status == -1 else status)

    @property
    def proxied(self) -> bool:
        return bool(self.via.url)

    @property
    def proxy_scheme(self) -> str:
        return urlsplit(self.via.url).scheme.lower() if self.via.url else ""

    @property
    def got_response(self) -> bool:
        return self.status is not None


def _detail(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _body_too_large(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(BadResponse, str(exc))


def _bad_body(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(BadResponse, str(exc))


def _deadline(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(SourceUnavailable, f"read deadline exceeded ({m.deadline.seconds:g}s)")


def _redirects(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(BadResponse, f"too many redirects (more than {MAX_REDIRECTS})")


def _timeout(m: Mapping, exc: BaseException) -> CheckError | None:
    if m.deadline.hit:
        return _deadline(m, exc)
    return None  # the specific rules below decide


def _proxy_error(m: Mapping, exc: BaseException) -> CheckError:
    detail = _detail(exc)
    if "407" in detail:
        return m.err(ProxyAuthRejected, "proxy authentication required (407)", 407)
    if any(words in detail for words in _REFUSED_CREDENTIALS):
        return m.err(ProxyAuthRejected, f"SOCKS5 proxy authentication failed: {detail}")
    return m.err(ProxyFailed, f"proxy error: {detail}")


#: httpcore's SOCKS5 words for a refused password, or a proxy that wants one and got none
_REFUSED_CREDENTIALS = ("Invalid username/password", "but got USERNAME/PASSWORD")


def _socks(m: Mapping, exc: BaseException) -> CheckError | None:
    if isinstance(exc, SOCKSError) or (m.proxy_scheme.startswith("socks") and not m.got_response):
        return m.err(ProxyFailed, f"SOCKS proxy sent an invalid reply: {_detail(exc)} ({type(exc).__name__})")
    return None


def _connect_timeout(m: Mapping, exc: BaseException) -> CheckError:
    if m.proxied:
        return m.err(ProxyFailed, f"timed out connecting to the proxy ({m.timeout:g}s)")
    return m.err(SourceUnavailable, f"timed out connecting to the source ({m.timeout:g}s)")


def _connect_error(m: Mapping, exc: BaseException) -> CheckError:
    if m.proxied:
        return m.err(ProxyFailed, f"proxy connection failed: {_detail(exc)} (ConnectError)")
    return m.err(SourceUnavailable, f"cannot connect to the source: {_detail(exc)} (ConnectError)")


def _pool_timeout(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(SourceUnavailable, "timed out waiting for a free connection")


def _read_timeout(m: Mapping, exc: BaseException) -> CheckError:
    tunnel = m.proxied and (m.proxy_scheme.startswith("socks") or m.https)
    if tunnel and not m.got_response and m.deadline.silent:
        return m.err(ProxyFailed, f"the proxy did not answer within {m.timeout:g}s")
    return m.err(SourceUnavailable, f"read timeout ({m.timeout:g}s)")


def _broken_connection(m: Mapping, exc: BaseException) -> CheckError:
    what = f"{_detail(exc)} ({type(exc).__name__})"
    if m.got_response:
        return m.err(SourceUnavailable, f"connection reset mid-body: {what}")
    if m.proxied:
        return m.err(ProxyFailed, f"the proxy closed the connection before any response: {what}")
    return m.err(SourceUnavailable, f"the source closed the connection before any response: {what}")


def _undecodable(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(BadResponse, f"response body could not be decoded: {_detail(exc)}")


def _unusable_url(m: Mapping, exc: BaseException) -> CheckError:
    return m.err(BadResponse, f"redirected to an unusable URL: {_detail(exc)}")


Rule = Callable[[Mapping, BaseException], "CheckError | None"]

#: checked in order; the first rule whose types match and that returns an error decides
_RULES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Rule], ...] = (
    (BodyTooLarge, _body_too_large),
    (BadBody, _bad_body),
    (DeadlineExceeded, _deadline),
    (httpx.TooManyRedirects, _redirects),
    (httpx.TimeoutException, _timeout),
    (httpx.ProxyError, _proxy_error),
    ((SOCKSError, AssertionError), _socks),
    (httpx.ConnectTimeout, _connect_timeout),
    (httpx.ConnectError, _connect_error),
    (httpx.PoolTimeout, _pool_timeout),
    ((httpx.ReadTimeout, httpx.WriteTimeout), _read_timeout),
    ((httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError), _broken_connection),
    ((BodyUndecodable, httpx.DecodingError), _undecodable),
    ((httpx.UnsupportedProtocol, httpx.InvalidURL), _unusable_url),
)
