"""The configurable HTTP story source: one request per username, an Outcome or a typed error.

Everything about the API comes from :class:`~storycheck_tui.config.SourceSettings` (the
``[source]`` table): the URL template, headers, where the story list sits in the JSON body,
the item fields, and which HTTP statuses mean "not found", "private", "rate limited" or
"credentials refused".

What it guarantees to its callers (the checker, the proxy validator):

* ``check`` returns a fully parsed :class:`Outcome` or raises a
  :class:`~storycheck_tui.errors.CheckError` subclass; no httpx, httpcore or socksio
  exception ever escapes (:mod:`.failures`).
* The proxy's failure is told apart from the source's: :class:`ProxyFailed` means "fail over
  to another proxy", :class:`SourceUnavailable` / :class:`BadResponse` mean "the answer was bad".
* Every error message is one line, names what happened (and the HTTP status, if any), and is
  masked, so no proxy password or API key leaks.
* A request ends by its wall deadline (``timeout * 3``), however slowly the bytes come
  (:mod:`.deadline`, :mod:`.transport`).

Threads: ``check`` and ``health`` run on many threads at once. The client table is the only
shared mutable state, guarded by ``_lock``; everything about one request lives in that call.
"""

from __future__ import annotations

import ssl
import threading
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import BadResponse, InputError, ProxyFailed, SourceUnavailable
from storycheck_tui.masking import add_url_credentials, register_secret
from storycheck_tui.sources.base import DIRECT, NOT_FOUND, PRIVATE, Outcome, Route
from storycheck_tui.sources.http.body import BodyTooLarge, BodyUndecodable, drain, read_body
from storycheck_tui.sources.http.client import RouteClient
from storycheck_tui.sources.http.deadline import Deadline
from storycheck_tui.sources.http.failures import Mapping, make_error
from storycheck_tui.sources.http.decide import by_items, by_rules, document
from storycheck_tui.sources.http.request import RequestTemplate, Target, UrlTemplate
from storycheck_tui.sources.http.status import failure_for_status
from storycheck_tui.sources.http.transport import Answer

__all__ = ["HttpSource", "DEADLINE_FACTOR"]

#: the per-request wall deadline is this many times ``settings.timeout``
DEADLINE_FACTOR = 3.0


class HttpSource:
    """A :class:`~storycheck_tui.sources.base.StorySource` configured by ``SourceSettings``."""

    def __init__(self, settings: SourceSettings) -> None:
        self._template = RequestTemplate.from_settings(settings)
        if not settings.url or not self._template.names_the_user:
            raise InputError("[source] url: must be set, and it or the json body must contain {username}")
        if not settings.url.startswith(("http://", "https://")):
            raise InputError("[source] url: must start with http:// or https://")
        if self._template.method not in ("GET", "POST"):
            raise InputError(f"[source] method: expected \"GET\" or \"POST\", got {settings.method!r}")
        self.settings = settings
        self._timeout = float(settings.timeout)
        self._deadline_s = self._timeout * DEADLINE_FACTOR
        self._urls = UrlTemplate(settings.url)
        self._home = self._urls.target_for("x")
        if settings.health_url:
            self._health_url = settings.health_url
            self._health_lenient = False
        else:
            parts = urlsplit(settings.url)
            self._health_url = f"{parts.scheme}://{parts.netloc}/"
            self._health_lenient = True
        try:
            self._health_target = Target.of(httpx.URL(self._health_url))
        except httpx.InvalidURL as exc:
            raise InputError(f"[source] health_url: not a usable URL: {exc}") from None
        for value in settings.headers.values():
            register_secret(value)  # already registered when they came from ${VAR}; harmless twice
        for url in (settings.url, self._health_url):
            add_url_credentials(url)  # user:password@ goes out as Basic auth, and must never be shown
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str | None, RouteClient]] = {}
        self._closed = False
        # one TLS context for every client: building one loads the CA bundle (~17 ms here),
        # which a pool of a thousand proxies would pay a thousand times, under the lock
        self._ssl_context: ssl.SSLContext = httpx.create_ssl_context(trust_env=False)

    # ------------------------------------------------------------------ public API

    def url_for(self, username: str) -> str:
        return self._template.url_for(username)

    def describe_request(self, username: str) -> list[str]:
        """The request for ``username`` as an operator reads it, secrets masked (``source test``)."""
        return self._template.describe(username, self.settings.headers)

    def check(self, username: str, via: Route = DIRECT) -> Outcome:
        """Ask the source about ``username`` through ``via``; an Outcome or a CheckError.

        The order of decisions is :mod:`.decide`'s: rules, status lists, items path.
        """
        s = self.settings
        t = self._template
        try:
            target = self._urls.target_for(username)
        except httpx.InvalidURL as exc:  # parsed per check (a host per user): the parser has the last word
            raise make_error(BadResponse, f"no usable URL for this username: {exc}", via) from None
        with self._exchange(via, target, t.method, t.json_for(username)) as (resp, m):
            status = resp.status_code
            body: bytes | None = None
            if s.rules and status != 407:  # a proxy's 407 is not the source's answer
                body = self._read_any(resp, m.deadline)
                decided = by_rules(s.rules, status, resp.headers, document(body), self._ms(m.deadline))
                if isinstance(decided, Outcome):
                    return decided
                if decided is not None:
                    raise make_error(decided.cls, decided.message, via, decided.status, **decided.extra)
            self._raise_failure(resp, via, body=body)
            if status in s.not_found or status in s.private:
                if body is None:
                    drain(resp)
                name = "not_found" if status in s.not_found else "private"
                return Outcome(NOT_FOUND if name == "not_found" else PRIVATE, http_status=status,
                               latency_ms=self._ms(m.deadline), decided_by=f"status list {name} (HTTP {status})")
            if not 200 <= status < 300:
                raise make_error(BadResponse, f"unexpected HTTP status {status}", via, status)
            if body is None:
                body = read_body(resp, s.max_body_bytes, m.deadline)
            return by_items(body, s, status, self._ms(m.deadline))

    def _read_any(self, resp: Answer, deadline: Deadline) -> bytes | None:
        """The body of any answer, for the rules; an error page too large or undecodable is None."""
        try:
            return read_body(resp, self.settings.max_body_bytes, deadline)
        except (BodyTooLarge, BodyUndecodable):
            if 200 <= resp.status_code < 300:
                raise
            return None

    def health(self, via: Route = DIRECT) -> float:
        """GET the health URL through ``via``; latency in ms, or a CheckError.

        With an explicit ``health_url`` only a 2xx is healthy. Without one, the origin of
        ``url`` is probed and any answer below 500 (other than 407/429) proves the route
        works: an API root commonly answers 404 or 401, and that must not keep a good proxy dead.
        """
        with self._exchange(via, self._health_target, "GET", None) as (resp, m):
            status = resp.status_code
            if self._health_lenient:
                if status == 407 or status in self.settings.rate_limited or status >= 500:
                    self._raise_failure(resp, via, what="health check: ")
                return self._ms(m.deadline)
            self._raise_failure(resp, via, what="health check: ")
            if not 200 <= status < 300:
                raise make_error(BadResponse, f"health check: unexpected HTTP status {status}", via, status)
            return self._ms(m.deadline)

    def forget(self, route_key: str) -> None:
        """Close and drop the client of one route (a proxy removed or changed)."""
        with self._lock:
            entry = self._clients.pop(route_key, None)
        if entry is not None:
            entry[1].close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        for client in clients:
            try:
                client.close()
            except Exception:  # pragma: no cover - closing must not fail shutdown
                pass

    def __enter__(self) -> "HttpSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one request

    def _exchange(self, via: Route, target: Target, method: str, body: Any) -> "_Exchange":
        """``with self._exchange(via, target, method, json) as (response, mapping):`` one streamed request.

        The response is open for the block; any exception raised in it (by httpx while
        reading, or by the block's own code) leaves as a CheckError.
        """
        return _Exchange(self, via, target, method, body)

    def _raise_failure(self, resp: Answer, via: Route, what: str = "", body: bytes | None = None) -> None:
        failure = failure_for_status(resp, self.settings, what, body=body)
        if failure is not None:
            raise make_error(failure.cls, failure.message, via, failure.status, **failure.extra)

    @staticmethod
    def _ms(deadline: Deadline) -> float:
        return (time.monotonic() - deadline.started) * 1000.0

    # ------------------------------------------------------------------ clients

    def _client(self, via: Route) -> RouteClient:
        with self._lock:
            if self._closed:
                raise make_error(SourceUnavailable, "source is closed", via)
            entry = self._clients.get(via.key)
            if entry is not None and entry[0] == via.url:
                return entry[1]
            client = self._new_client(via)
            self._clients[via.key] = (via.url, client)
        if entry is not None:  # the route's URL changed: retire the old client
            entry[1].close()
        return client

    def _new_client(self, via: Route) -> RouteClient:
        if via.url:
            add_url_credentials(via.url)  # also done when routes load; harmless twice
            try:
                httpx.Proxy(via.url)
            except (ValueError, httpx.InvalidURL) as exc:
                raise make_error(ProxyFailed, f"invalid proxy URL: {exc}", via) from None
        try:
            return RouteClient(via, headers=self.settings.headers, home=self._home, timeout=self._timeout,
                               ssl_context=self._ssl_context)
        except (ValueError, httpx.InvalidURL) as exc:  # e.g. socks4:// or ftp://
            raise make_error(ProxyFailed, f"unsupported proxy URL: {exc}", via) from None



class _Exchange:
    """:meth:`HttpSource._exchange`: a class, not a generator (contextlib's machinery around a
    generator cost a few microseconds of every check). Built and entered by one thread."""

    __slots__ = ("_source", "_via", "_target", "_method", "_body", "_mapping", "_response")

    def __init__(self, source: HttpSource, via: Route, target: Target, method: str, body: Any) -> None:
        self._source = source
        self._via = via
        self._target = target
        self._method = method
        self._body = body

    def __enter__(self) -> tuple[Answer, Mapping]:
        source = self._source
        m = self._mapping = Mapping(self._via, self._target.scheme == b"https", source._timeout,
                                    Deadline(source._deadline_s))
        with m:
            resp = self._response = source._client(self._via).open(self._method, self._target, self._body, m.deadline)
            m.status = resp.status_code
        return resp, m

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        try:
            self._response.close()
        except Exception:  # closing a broken stream: the error (if any) is already mapped
            pass
        return self._mapping.__exit__(exc_type, exc, tb)  # the block's error as a CheckError
