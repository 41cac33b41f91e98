"""One client per route: its connection pool, the headers every request carries, redirects.

A source keeps one :class:`RouteClient` per route (proxy). It sends a request as httpx's
``Client`` would with ``follow_redirects=True`` and no cookie store, and hands back the
final :class:`~.transport.Answer`, open:

* the headers: ``Host``, the body's ``Content-Length`` (0 for a POST without a body) and
  ``Content-Type`` (JSON), then ``Accept``, ``Accept-Encoding``, ``Connection``,
  ``User-Agent``; a configured header replaces any of them (one ``User-Agent``, one ``Host``);
  the URL's ``user:password@`` as Basic ``Authorization``;
* configured headers (API keys) go to the source's own origin only, also on redirects: httpx
  strips only ``Authorization`` on a cross-origin redirect, an ``x-access-key`` would follow a
  redirect to any host;
* no cookie is kept or sent: checks are stateless, so no session cookie follows a proxy around;
* redirects as httpx follows them (method and body kept on 307/308; a GET without the body
  after 302 and 303, and after a POST's 301, as browsers do), at most :data:`MAX_REDIRECTS`,
  then ``httpx.TooManyRedirects``; a ``Location`` that is no URL raises ``httpx.InvalidURL``
  (httpx said ``RemoteProtocolError``, which read as a broken connection).

Threads: many threads send through one client at once; it holds nothing per request.
"""

from __future__ import annotations

import json
import ssl
from typing import Any, NamedTuple

import httpx

from storycheck_tui.sources.base import Route
from storycheck_tui.sources.http.body import drain
from storycheck_tui.sources.http.deadline import Deadline
from storycheck_tui.sources.http.request import Target
from storycheck_tui.sources.http.transport import Answer, DeadlineTransport

__all__ = ["USER_AGENT", "MAX_REDIRECTS", "RouteClient"]

USER_AGENT = "storycheck/0.1"
#: what the client asks for; the body reader decodes these itself, with a size limit
ACCEPT_ENCODING = "gzip, deflate"
#: redirects followed before the answer counts as broken
MAX_REDIRECTS = 5
#: the statuses that redirect when they carry a Location
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Headers(NamedTuple):
    """Header pairs as bytes, and their names in lower case."""

    raw: list[tuple[bytes, bytes]]
    names: frozenset[bytes]

    @classmethod
    def of(cls, headers: httpx.Headers) -> "_Headers":
        return cls(list(headers.raw), frozenset(k.lower() for k, _ in headers.raw))


class RouteClient:
    """Requests through route ``via``; ``headers`` are sent to ``home``'s origin only.

    Raises ``ValueError`` (or ``httpx.InvalidURL``) for a proxy URL it cannot use.
    """

    def __init__(self, via: Route, *, headers: dict[str, str], home: Target, timeout: float,
                 ssl_context: ssl.SSLContext) -> None:
        proxy = httpx.Proxy(via.url) if via.url else None
        self.transport = DeadlineTransport(
            proxy=proxy, ssl_context=ssl_context, timeout=timeout,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0),
        )
        self._home = home.origin
        common = httpx.Headers({"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING,
                                "Connection": "keep-alive", "User-Agent": USER_AGENT})
        self._away = _Headers.of(common)
        common.update(headers)  # a configured header replaces the client's own (User-Agent, Accept, ...)
        self._at_home = _Headers.of(common)

    def open(self, method: str, target: Target, body: Any, deadline: Deadline) -> Answer:
        """Send ``method`` to ``target`` (with ``body`` as JSON, when not None) and follow its
        redirects; the last answer, open for reading. Raises httpx's errors."""
        verb = method.encode("ascii")
        content = None if body is None else \
            json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        for _ in range(MAX_REDIRECTS + 1):
            answer = self.transport.send(verb, target, self._headers(verb, target, content), content, deadline)
            status = answer.status_code
            if status not in REDIRECTS or "location" not in answer.headers:
                return answer
            try:
                after = Target.of(_redirect_url(target.url, answer.headers["location"]))
                if after.auth is None and after.origin == target.origin:  # httpx keeps it on the same origin
                    after = after._replace(auth=target.auth)
                target = after
                if status in (302, 303) or (status == 301 and verb == b"POST"):
                    verb, content = b"GET", None  # the body goes with the method
            finally:
                drain(answer)  # the connection goes back to the pool
                answer.close()
        raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.")

    def _headers(self, verb: bytes, target: Target, content: bytes | None) -> list[tuple[bytes, bytes]]:
        """As httpx sets them: Host, a body's length (0 for a POST without one) and type, unless
        configured; the credentials of the URL replace a configured Authorization."""
        given = self._at_home if target.origin == self._home else self._away
        names = given.names
        first = [] if b"host" in names else [(b"Host", target.netloc)]
        if (content is not None or verb == b"POST") and b"content-length" not in names:
            first.append((b"Content-Length", str(len(content or b"")).encode()))
        if content is not None and b"content-type" not in names:
            first.append((b"Content-Type", b"application/json"))
        if target.auth is None:
            return first + given.raw
        return first + [(k, v) for k, v in given.raw if k.lower() != b"authorization"] + \
            [(b"Authorization", target.auth)]

    def close(self) -> None:
        self.transport.close()


def _redirect_url(current: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect leads, as httpx reads a ``Location`` (relative, or absolute without a host)."""
    url = httpx.URL(location)
    if url.scheme and not url.host:
        url = url.copy_with(host=current.host)
    if url.is_relative_url:
        url = current.join(url)
    return url
