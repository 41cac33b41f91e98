"""The request template: method, URL and JSON body, with ``{username}`` filled in per check.

``${VAR}`` was expanded when the config was read (and each value registered as a secret);
``{username}`` is filled here: URL-encoded in the URL, as is in JSON string values.

A check's URL is not parsed per check (httpx's parser took 13 us of it): :class:`UrlTemplate`
parses the template once and puts the URL-encoded username into its path and query, giving
the :class:`Target` the transport sends to. Credentials in the URL (``user:password@``) are
sent as Basic ``Authorization``, as httpx sends them.
"""

from __future__ import annotations

import json
from base64 import b64encode
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import InputError
from storycheck_tui.masking import one_line

__all__ = ["RequestTemplate", "Target", "UrlTemplate"]

PLACEHOLDER = "{username}"
#: stands for the placeholder while the template is parsed: letters only, so the parser
#: leaves it as it is in a path or a query (it would encode the braces of ``{username}`` in a path)
_MARK = "storycheckusernamemark"
_DEFAULT_PORTS = {b"http": 80, b"https": 443}


class Target(NamedTuple):
    """Where a request goes, as it goes on the wire: ``path`` is the path and query,
    ``netloc`` the Host header, ``auth`` the ``Authorization`` value that the URL's
    ``user:password@`` makes (Basic, as httpx sends it), if any."""

    scheme: bytes
    host: bytes
    port: int | None
    path: bytes
    netloc: bytes
    auth: bytes | None = None

    @classmethod
    def of(cls, url: httpx.URL) -> "Target":
        auth = None
        if url.username or url.password:
            auth = b"Basic " + b64encode(f"{url.username}:{url.password}".encode())
        return cls(url.raw_scheme, url.raw_host, url.port, url.raw_path, url.netloc, auth)

    @property
    def origin(self) -> tuple[bytes, bytes, int | None]:
        return (self.scheme, self.host, self.port or _DEFAULT_PORTS.get(self.scheme))

    @property
    def url(self) -> httpx.URL:
        """As an ``httpx.URL`` without its credentials (a redirect's ``Location`` is read against it)."""
        return httpx.URL(f"{self.scheme.decode()}://{self.netloc.decode()}{self.path.decode()}")


class UrlTemplate:
    """``[source] url`` parsed once; :meth:`target_for` fills in a username.

    Where ``{username}`` stands in the path or the query only (as in every preset), a check's
    target is the parsed path with the URL-encoded name put in: no URL is parsed per check.
    Anywhere else (a host per user, a path whose dot segments remove it) the URL is parsed per
    check, as httpx did for every check. In the fragment it is refused: a fragment never goes
    on the wire. Raises InputError.
    """

    __slots__ = ("_url", "_base", "_pieces")

    def __init__(self, url: str) -> None:
        try:
            parsed = httpx.URL(url.replace(PLACEHOLDER, _MARK))
        except httpx.InvalidURL as exc:
            raise InputError(f"[source] url: not a usable URL: {exc}") from None
        if _MARK in parsed.fragment:
            raise InputError("[source] url: {username} stands in the fragment (after #), which is never sent")
        self._url = url
        self._base = Target.of(parsed)
        pieces = parsed.raw_path.split(_MARK.encode())
        self._pieces = pieces if len(pieces) - 1 == url.count(PLACEHOLDER) else None

    def target_for(self, username: str) -> Target:
        """Raises ``httpx.InvalidURL`` when the URL parsed per check is not usable with this name."""
        quoted = quote(username, safe="")
        pieces = self._pieces
        if pieces is None:
            return Target.of(httpx.URL(self._url.replace(PLACEHOLDER, quoted)))
        if len(pieces) == 1:
            return self._base
        b = self._base
        return Target(b.scheme, b.host, b.port, quoted.encode("ascii").join(pieces), b.netloc, b.auth)


def _fill(value: Any, username: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, username)
    if isinstance(value, dict):
        return {k: _fill(v, username) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, username) for v in value]
    return value


def _mentions(value: Any) -> bool:
    if isinstance(value, str):
        return PLACEHOLDER in value
    if isinstance(value, dict):
        return any(_mentions(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v) for v in value)
    return False


@dataclass(frozen=True)
class RequestTemplate:
    method: str
    url: str
    json: Any = None

    @classmethod
    def from_settings(cls, s: SourceSettings) -> "RequestTemplate":
        return cls(method=(s.method or "GET").upper(), url=s.url, json=s.json)

    @property
    def names_the_user(self) -> bool:
        """Whether ``{username}`` appears in the URL or the JSON body (a request must say whom)."""
        return PLACEHOLDER in self.url or _mentions(self.json)

    def url_for(self, username: str) -> str:
        return self.url.replace(PLACEHOLDER, quote(username, safe=""))

    def json_for(self, username: str) -> Any:
        return None if self.json is None else _fill(self.json, username)

    def describe(self, username: str, headers: dict[str, str]) -> list[str]:
        """The request as ``source test`` prints it, secrets masked: method and URL, headers, body."""
        lines = [one_line(f"{self.method} {self.url_for(username)}")]
        lines += [one_line(f"{name}: {value}") for name, value in headers.items()]
        body = self.json_for(username)
        if body is not None:
            lines.append(one_line(json.dumps(body, ensure_ascii=False)))
        return lines
