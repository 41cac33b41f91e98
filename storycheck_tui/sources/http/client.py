"""One ``httpx.Client`` per route: no cookies, the source's own headers, the deadline transport.

httpx has no per-request proxy, so the source keeps one client per route (proxy) and builds
it here. Configured headers (API keys) go to the source's own origin only, also on
redirects: httpx strips only ``Authorization`` on a cross-origin redirect, an ``x-access-key``
would follow a redirect to any host.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from storycheck_tui.sources.base import Route
from storycheck_tui.sources.http.transport import DeadlineTransport

__all__ = ["USER_AGENT", "Origin", "origin", "build_client"]

USER_AGENT = "storycheck/0.1"
#: what the client asks for; the body reader decodes these itself, with a size limit
ACCEPT_ENCODING = "gzip, deflate"
#: redirects followed before the answer counts as broken
MAX_REDIRECTS = 5

Origin = tuple[str, str, "int | None"]


def origin(url: httpx.URL) -> Origin:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


class _NoCookies(httpx.Cookies):
    """Keeps no cookie and sends none: checks are stateless, so no session cookie follows a
    proxy around. It also skips the work: httpx builds a urllib request for every response
    to let a cookie jar look at it (~10 % of a check's CPU), even when the jar keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


_NO_COOKIES = _NoCookies()


class _StatelessClient(httpx.Client):
    """An ``httpx.Client`` whose cookie store is :class:`_NoCookies`, whatever it is given."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass


class _HomeOnlyHeaders:
    """A request hook: drops the named headers from any request leaving the home origin."""

    def __init__(self, home: Origin, names: tuple[str, ...]) -> None:
        self.home = home
        self.names = names

    def __call__(self, request: httpx.Request) -> None:
        if self.names and origin(request.url) != self.home:
            for name in self.names:
                request.headers.pop(name, None)


def build_client(via: Route, *, headers: dict[str, str], home: Origin, timeout: float, deadline_s: float,
                 ssl_context: ssl.SSLContext) -> httpx.Client:
    """A client for route ``via``; ``headers`` are sent to ``home`` only.

    Raises ``ValueError`` (or ``httpx.InvalidURL``) for a proxy URL it cannot use.
    """
    proxy = httpx.Proxy(via.url) if via.url else None
    transport = DeadlineTransport(
        proxy=proxy, ssl_context=ssl_context, timeout=timeout, deadline_s=deadline_s,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0),
    )
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
    sent.update(headers)
    return _StatelessClient(
        transport=transport,
        headers=sent,
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        event_hooks={"request": [_HomeOnlyHeaders(home, tuple(k.lower() for k in headers))]},
    )
