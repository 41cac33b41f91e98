"""The configurable HTTP story source: one GET per username, mapped to an Outcome or a typed error.

Everything about the API comes from :class:`~storycheck_tui.config.SourceSettings` (the
``[source]`` table): the URL template, headers, where the story list sits in the JSON body,
the item fields, and which HTTP statuses mean "not found", "private", "rate limited" or
"credentials refused".

Three things this module guarantees to its callers (the checker, the proxy validator):

* ``check`` returns a fully parsed :class:`Outcome` or raises a
  :class:`~storycheck_tui.errors.CheckError` subclass; no httpx, httpcore or socksio
  exception ever escapes.
* The proxy's failure is told apart from the source's: :class:`ProxyFailed` means "fail over
  to another proxy", :class:`SourceUnavailable` / :class:`BadResponse` mean "the answer was bad".
* Every error message is one line, names what happened (and the HTTP status, if any), and has
  passed through :func:`storycheck_tui.masking.scrub`, so no proxy password or API key leaks.

httpx has no per-request proxy, so there is one ``httpx.Client`` per route key, created lazily
and kept alive. Each client's transport uses :class:`_DeadlineBackend`, a thin wrapper around
httpcore's socket backend that (a) caps every socket operation by a per-request wall deadline
(``timeout * 3``), so a body, or headers, dripped one byte at a time cannot hold a worker for
ever, and (b) gives a timeout to the SOCKS handshake, which httpcore 1.0 reads with no timeout
at all (a SOCKS proxy that accepts and then stays silent would otherwise hang the thread).
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpcore
import httpx

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import (
    AuthFailed,
    BadResponse,
    CheckError,
    InputError,
    ProxyFailed,
    RateLimited,
    SourceUnavailable,
    Unexpected,
)
from storycheck_tui.masking import scrub, secrets
from storycheck_tui.sources.base import (
    DIRECT,
    HAS_STORIES,
    NO_STORIES,
    NOT_FOUND,
    PRIVATE,
    Outcome,
    Route,
    Story,
)

try:  # socksio comes with httpx[socks]; httpcore lets its ProtocolError escape (a bare "Malformed reply")
    from socksio.exceptions import SOCKSError as _SOCKSError
except ImportError:  # pragma: no cover - the extra is a declared dependency
    class _SOCKSError(Exception):  # type: ignore[no-redef]
        pass

__all__ = ["HttpSource", "parse_retry_after", "USER_AGENT"]

USER_AGENT = "storycheck/0.1"
#: longest error message we build (the 5xx body excerpt is capped separately)
_MAX_MESSAGE = 300
_EXCERPT = 120
#: the per-request wall deadline is this many times ``settings.timeout``
DEADLINE_FACTOR = 3.0


# --------------------------------------------------------------------------------------------
# Per-request wall deadline, enforced at the socket level
# --------------------------------------------------------------------------------------------


class _RequestState(threading.local):
    """What the socket wrapper learned about the request running on this thread."""

    deadline: float | None = None  # time.monotonic() after which no socket operation may wait
    deadline_hit: bool = False  # an operation was refused or timed out because of the deadline
    silent_timeout: bool = False  # a read timed out on a connection that never received a byte


_state = _RequestState()


def _budget(timeout: float | None, default: float) -> tuple[float, bool]:
    """The timeout to give one socket operation, and whether the deadline (not ``timeout``) set it."""
    t = default if timeout is None else timeout
    deadline = _state.deadline
    if deadline is None:
        return t, False
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        _state.deadline_hit = True
        raise httpcore.ReadTimeout("read deadline exceeded")
    if remaining < t:
        return remaining, True
    return t, False


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, default: float, received: int = 0) -> None:
        self._inner = inner
        self._default = default
        self._received = received

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        t, by_deadline = _budget(timeout, self._default)
        try:
            data = self._inner.read(max_bytes, t)
        except httpcore.ReadTimeout:
            if by_deadline:
                _state.deadline_hit = True
            if self._received == 0:
                _state.silent_timeout = True
            raise
        self._received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        t, by_deadline = _budget(timeout, self._default)
        try:
            self._inner.write(buffer, t)
        except httpcore.WriteTimeout:
            if by_deadline:
                _state.deadline_hit = True
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        t, by_deadline = _budget(timeout, self._default)
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, t)
        except httpcore.ConnectTimeout:
            if by_deadline:
                _state.deadline_hit = True
            raise
        return _DeadlineStream(inner, self._default, self._received)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with a default timeout and the thread's request deadline."""

    def __init__(self, default_timeout: float) -> None:
        self._inner = httpcore.SyncBackend()
        self._default = default_timeout

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        t, by_deadline = _budget(timeout, self._default)
        try:
            stream = self._inner.connect_tcp(host, port, timeout=t, local_address=local_address,
                                             socket_options=socket_options)
        except httpcore.ConnectTimeout:
            if by_deadline:
                _state.deadline_hit = True
            raise
        return _DeadlineStream(stream, self._default)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:  # pragma: no cover
        t, _ = _budget(timeout, self._default)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout=t, socket_options=socket_options),
                               self._default)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries only
        self._inner.sleep(seconds)


class _NoCookies(httpx.Cookies):
    """Keeps no cookie and sends none: checks are stateless, so no session cookie follows a
    proxy around. It also skips the work: httpx builds a urllib request for every response
    to let a cookie jar look at it (~10 % of a check's CPU), even when the jar keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class _StatelessClient(httpx.Client):
    """An ``httpx.Client`` whose cookie store is :class:`_NoCookies`, whatever it is given."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass


_NO_COOKIES = _NoCookies()


# --------------------------------------------------------------------------------------------
# Small helpers: messages, Retry-After, JSON shape
# --------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Scrubbed, printable, single-line, at most ``limit`` characters."""
    text = scrub(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    text = scrub(text)  # joining lines may have rebuilt a URL with credentials
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _excerpt(body: bytes) -> str:
    return _one_line(body.decode("utf-8", errors="replace"), _EXCERPT)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP-date.

    Never negative; ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        seconds = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def _short(value: Any) -> str:
    return _one_line(repr(value), 40)


_MISSING = object()


def _lookup(obj: dict[str, Any], name: str) -> Any:
    """``obj[name]``, or a dotted walk (``a.b.0.c``) when no key is literally ``name``."""
    if name in obj:
        return obj[name]
    if "." not in name:
        return _MISSING
    cur: Any = obj
    for seg in name.split("."):
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit() and int(seg) < len(cur):
            cur = cur[int(seg)]
        else:
            return _MISSING
    return cur


def _parse_time(value: Any) -> float | None:
    """Epoch seconds from an int/float or an ISO-8601 string (``Z`` allowed); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            seconds = float(s)
        except ValueError:
            if s[-1] in "zZ":
                s = s[:-1] + "+00:00"
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            try:
                seconds = dt.timestamp()
            except (OverflowError, OSError, ValueError):  # pragma: no cover
                return None
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class HttpSource:
    """A :class:`~storycheck_tui.sources.base.StorySource` configured by ``SourceSettings``.

    Thread-safe: ``check`` and ``health`` may be called from many threads at once.
    """

    def __init__(self, settings: SourceSettings) -> None:
        if not settings.url or "{username}" not in settings.url:
            raise InputError("[source] url: must be set and contain {username}")
        if not settings.url.startswith(("http://", "https://")):
            raise InputError("[source] url: must start with http:// or https://")
        self.settings = settings
        self._timeout = float(settings.timeout)
        self._deadline_s = self._timeout * DEADLINE_FACTOR
        self._url_origin = _origin(httpx.URL(settings.url.replace("{username}", "x")))
        if settings.health_url:
            self._health_url = settings.health_url
            self._health_lenient = False
        else:
            parts = urlsplit(settings.url)
            self._health_url = f"{parts.scheme}://{parts.netloc}/"
            self._health_lenient = True
        for value in settings.headers.values():
            secrets.add(value)  # already registered when they came from ${VAR}; harmless twice
        self._secret_headers = tuple(k.lower() for k in settings.headers)
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str | None, httpx.Client]] = {}
        self._closed = False
        # one TLS context for every client: building one loads the CA bundle (~17 ms here),
        # which a pool of a thousand proxies would pay a thousand times, under the lock
        self._ssl_context = httpx.create_ssl_context(trust_env=False)

    # ------------------------------------------------------------------ public API

    def url_for(self, username: str) -> str:
        return self.settings.url.replace("{username}", quote(username, safe=""))

    def check(self, username: str, via: Route = DIRECT) -> Outcome:
        """Ask the source about ``username`` through ``via``; an Outcome or a CheckError."""
        s = self.settings
        url = self.url_for(username)
        with self._request(via, url) as (resp, started):
            status = resp.status_code
            self._raise_for_status(resp, via)
            if status in s.not_found or status in s.private:
                self._drain(resp)
                kind = NOT_FOUND if status in s.not_found else PRIVATE
                return Outcome(kind, http_status=status, latency_ms=self._ms(started))
            if not 200 <= status < 300:
                raise self._err(BadResponse, f"unexpected HTTP status {status}", via, status)
            body = self._read_body(resp, via, started)
            latency = self._ms(started)
        stories = self._parse(body, via, status)
        kind = HAS_STORIES if stories else NO_STORIES
        return Outcome(kind, stories=stories, http_status=status, latency_ms=latency)

    def health(self, via: Route = DIRECT) -> float:
        """GET the health URL through ``via``; latency in ms, or a CheckError.

        With an explicit ``health_url`` only a 2xx is healthy. Without one, the origin of
        ``url`` is probed and any answer below 500 (other than 407/429) proves the route
        works: an API root commonly answers 404 or 401, and that must not keep a good proxy dead.
        """
        with self._request(via, self._health_url) as (resp, started):
            status = resp.status_code
            if self._health_lenient:
                if status == 407 or status in self.settings.rate_limited or status >= 500:
                    self._raise_for_status(resp, via, what="health check: ")
                return self._ms(started)
            self._raise_for_status(resp, via, what="health check: ")
            if not 200 <= status < 300:
                raise self._err(BadResponse, f"health check: unexpected HTTP status {status}", via, status)
            return self._ms(started)

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

    # ------------------------------------------------------------------ clients

    def _client(self, via: Route) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise self._err(SourceUnavailable, "source is closed", via)
            entry = self._clients.get(via.key)
            if entry is not None and entry[0] == via.url:
                return entry[1]
            client = self._new_client(via)
            self._clients[via.key] = (via.url, client)
        if entry is not None:  # the route's URL changed: retire the old client
            entry[1].close()
        return client

    def _new_client(self, via: Route) -> httpx.Client:
        proxy: httpx.Proxy | None = None
        if via.url:
            try:
                parts = urlsplit(via.url)
                for pw in (parts.password, unquote(parts.password or "")):
                    secrets.add(pw)
                proxy = httpx.Proxy(via.url)
            except (ValueError, httpx.InvalidURL) as exc:
                raise self._err(ProxyFailed, f"invalid proxy URL: {exc}", via) from None
        try:
            transport = httpx.HTTPTransport(
                proxy=proxy, verify=self._ssl_context, trust_env=False, retries=0,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0),
            )
        except (ValueError, httpx.InvalidURL) as exc:  # e.g. socks4:// or ftp://
            raise self._err(ProxyFailed, f"unsupported proxy URL: {exc}", via) from None
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = _DeadlineBackend(self._timeout)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        headers.update(self.settings.headers)
        return _StatelessClient(
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=True,
            max_redirects=5,
            trust_env=False,
            event_hooks={"request": [self._strip_foreign_secrets]},
        )

    def _strip_foreign_secrets(self, request: httpx.Request) -> None:
        """Configured headers (API keys) go to the source's own origin only, also on redirects.

        httpx strips only ``Authorization`` on a cross-origin redirect; an ``x-access-key``
        would follow a redirect to any host.
        """
        if self._secret_headers and _origin(request.url) != self._url_origin:
            for name in self._secret_headers:
                request.headers.pop(name, None)

    # ------------------------------------------------------------------ one request

    def _request(self, via: Route, url: str) -> "_RequestContext":
        return _RequestContext(self, via, url)

    def _ms(self, started: float) -> float:
        return (time.monotonic() - started) * 1000.0

    def _raise_for_status(self, resp: httpx.Response, via: Route, *, what: str = "") -> None:
        """Raise the typed error for a non-success status; return for 2xx and outcome statuses."""
        s = self.settings
        status = resp.status_code
        if status == 407:
            raise self._err(ProxyFailed, f"{what}proxy authentication required (407)", via, status)
        if status in s.rate_limited:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
            msg = f"{what}rate limited (HTTP {status})"
            if retry_after is not None:
                msg += f", retry after {retry_after:.3g}s"
            self._drain(resp)
            raise self._err(RateLimited, msg, via, status, retry_after=retry_after)
        if status in s.auth_failed:
            raise self._err(AuthFailed, f"{what}the source refused the credentials (HTTP {status})", via, status)
        if status >= 500 and status not in s.not_found and status not in s.private:
            excerpt = _excerpt(self._drain(resp, keep=4096))
            msg = f"{what}source error HTTP {status}"
            if excerpt:
                msg += f": {excerpt}"
            raise self._err(SourceUnavailable, msg, via, status)

    def _drain(self, resp: httpx.Response, keep: int = 0, limit: int = 65536) -> bytes:
        """Read (and mostly discard) a small body so the connection can be reused; never raises."""
        kept = bytearray()
        try:
            for chunk in resp.iter_bytes():
                if len(kept) < keep:
                    kept += chunk[: keep - len(kept)]
                if resp.num_bytes_downloaded > limit:
                    break
        except Exception:  # the status already decided the answer
            pass
        return bytes(kept)

    def _read_body(self, resp: httpx.Response, via: Route, started: float) -> bytes:
        limit = self.settings.max_body_bytes
        status = resp.status_code
        declared = resp.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise self._err(BadResponse, f"response body over {limit} bytes (Content-Length {int(declared)})",
                            via, status)
        deadline = started + self._deadline_s
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > limit or resp.num_bytes_downloaded > limit:
                raise self._err(BadResponse, f"response body over {limit} bytes", via, status)
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise self._err(SourceUnavailable, f"read deadline exceeded ({self._deadline_s:g}s)", via, status)
        return b"".join(chunks)

    # ------------------------------------------------------------------ parsing

    def _parse(self, body: bytes, via: Route, status: int) -> tuple[Story, ...]:
        s = self.settings

        def bad(msg: str) -> CheckError:
            return self._err(BadResponse, msg, via, status)

        try:
            doc = json.loads(body)
        except RecursionError:
            raise bad("response is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise bad(f"response is not valid JSON: {exc}") from None

        items = self._items(doc, bad)
        stories: list[Story] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad(f"item {i}: expected an object, found {_kind(item)}")
            sid = _lookup(item, s.story_id)
            if sid is _MISSING:
                raise bad(f"item {i}: field {s.story_id!r} is missing")
            if isinstance(sid, bool) or not isinstance(sid, (str, int)) or (isinstance(sid, str) and not sid.strip()):
                raise bad(f"item {i}: field {s.story_id!r} must be a non-empty string or an integer, "
                          f"found {_kind(sid)} {_short(sid)}")
            raw_taken = _lookup(item, s.taken_at)
            if raw_taken is _MISSING:
                raise bad(f"item {i}: field {s.taken_at!r} is missing")
            taken = _parse_time(raw_taken)
            if taken is None:
                raise bad(f"item {i}: field {s.taken_at!r} is not epoch seconds or an ISO-8601 time: "
                          f"{_short(raw_taken)}")
            expires: float | None = None
            if s.expires_at:
                raw_exp = _lookup(item, s.expires_at)
                if raw_exp is not _MISSING and raw_exp is not None:
                    expires = _parse_time(raw_exp)
                    if expires is None:
                        raise bad(f"item {i}: field {s.expires_at!r} is not epoch seconds or an ISO-8601 time: "
                                  f"{_short(raw_exp)}")
            media: str | None = None
            if s.media_type:
                raw_media = _lookup(item, s.media_type)
                if isinstance(raw_media, (str, int)) and not isinstance(raw_media, bool):
                    media = str(raw_media)
            story_id = str(sid)
            if story_id in seen:  # the story table is UNIQUE(username, story id)
                continue
            seen.add(story_id)
            stories.append(Story(story_id=story_id, taken_at=taken, expires_at=expires, media_type=media))
        return tuple(stories)

    def _items(self, doc: Any, bad: Any) -> list[Any]:
        path = self.settings.items
        if not path:
            if not isinstance(doc, list):
                raise bad(f"expected a list as the response body, found {_kind(doc)}")
            return doc
        cur: Any = doc
        walked: list[str] = []
        for seg in path.split("."):
            here = ".".join(walked) or "the top level"
            if isinstance(cur, dict):
                if seg not in cur:
                    where = f"at {here!r}" if walked else "at the top level"
                    raise bad(f"expected a list at {path!r}, found dict without key {seg!r} {where}")
                cur = cur[seg]
            elif isinstance(cur, list) and seg.isdigit():
                if int(seg) >= len(cur):
                    raise bad(f"expected a list at {path!r}, found a list of {len(cur)} at {here!r}")
                cur = cur[int(seg)]
            else:
                where = f"at {here!r}" if walked else "at the top level"
                raise bad(f"expected a list at {path!r}, found {_kind(cur)} {where}")
            walked.append(seg)
        if not isinstance(cur, list):
            raise bad(f"expected a list at {path!r}, found {_kind(cur)}")
        return cur

    # ------------------------------------------------------------------ errors

    def _err(self, cls: type[CheckError], message: str, via: Route, status: int | None = None,
             **extra: Any) -> CheckError:
        return cls(_one_line(message), status=status, proxy=scrub(via.label), **extra)

    def _map_exception(self, exc: BaseException, via: Route, url: str, got_response: bool,
                       status: int | None) -> CheckError:
        """Turn anything httpx/httpcore/socksio raised into a typed CheckError."""
        proxied = bool(via.url)
        proxy_scheme = urlsplit(via.url).scheme.lower() if via.url else ""
        tunnel = proxied and (proxy_scheme.startswith("socks") or url.startswith("https:"))
        name = type(exc).__name__
        detail = str(exc) or name

        def err(cls: type[CheckError], msg: str) -> CheckError:
            return self._err(cls, msg, via, status)

        if isinstance(exc, httpx.TooManyRedirects):
            return err(BadResponse, "too many redirects (more than 5)")
        if isinstance(exc, httpx.TimeoutException) and _state.deadline_hit:
            return err(SourceUnavailable, f"read deadline exceeded ({self._deadline_s:g}s)")
        if isinstance(exc, httpx.ProxyError):
            if "407" in detail:
                return self._err(ProxyFailed, "proxy authentication required (407)", via, 407)
            return err(ProxyFailed, f"proxy error: {detail}")
        if isinstance(exc, _SOCKSError) or (proxy_scheme.startswith("socks") and not got_response
                                            and isinstance(exc, AssertionError)):
            return err(ProxyFailed, f"SOCKS proxy sent an invalid reply: {detail} ({name})")
        if isinstance(exc, httpx.ConnectTimeout):
            if proxied:
                return err(ProxyFailed, f"timed out connecting to the proxy ({self._timeout:g}s)")
            return err(SourceUnavailable, f"timed out connecting to the source ({self._timeout:g}s)")
        if isinstance(exc, httpx.ConnectError):
            if proxied:
                return err(ProxyFailed, f"proxy connection failed: {detail} (ConnectError)")
            return err(SourceUnavailable, f"cannot connect to the source: {detail} (ConnectError)")
        if isinstance(exc, httpx.PoolTimeout):
            return err(SourceUnavailable, "timed out waiting for a free connection")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
            if tunnel and not got_response and _state.silent_timeout:
                return err(ProxyFailed, f"the proxy did not answer within {self._timeout:g}s")
            return err(SourceUnavailable, f"read timeout ({self._timeout:g}s)")
        if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError)):
            if got_response:
                return err(SourceUnavailable, f"connection reset mid-body: {detail} ({name})")
            if proxied:
                return err(ProxyFailed, f"the proxy closed the connection before any response: {detail} ({name})")
            return err(SourceUnavailable, f"the source closed the connection before any response: {detail} ({name})")
        if isinstance(exc, httpx.DecodingError):
            return err(BadResponse, f"response body could not be decoded: {detail}")
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return err(BadResponse, f"redirected to an unusable URL: {detail}")
        return err(Unexpected, f"{name}: {detail}")


class _RequestContext:
    """``with source._request(via, url) as (response, started):`` — one streamed GET.

    Sets the thread's deadline, opens the stream, and maps every exception raised inside the
    block (by httpx while reading, or by the caller's own code) to a CheckError.
    """

    def __init__(self, source: HttpSource, via: Route, url: str) -> None:
        self.source = source
        self.via = via
        self.url = url
        self._cm: Any = None
        self._resp: httpx.Response | None = None

    def __enter__(self) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        self.started = started
        _state.deadline = started + self.source._deadline_s
        _state.deadline_hit = False
        _state.silent_timeout = False
        try:
            client = self.source._client(self.via)
            self._cm = client.stream("GET", self.url)
            self._resp = self._cm.__enter__()
        except BaseException as exc:
            _state.deadline = None
            self._cm = None
            _raise_mapped(self._mapped(exc), exc)
        return self._resp, started

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if self._cm is not None:
                try:
                    self._cm.__exit__(None, None, None)
                except Exception:  # closing a broken stream: the error (if any) is already mapped
                    pass
        finally:
            _state.deadline = None
        if exc is None:
            return False
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return False
        _raise_mapped(self._mapped(exc), exc)
        return False  # pragma: no cover - _raise_mapped always raises

    def _mapped(self, exc: BaseException) -> BaseException:
        if isinstance(exc, CheckError):
            if exc.proxy is None:
                exc.proxy = scrub(self.via.label)
            return exc
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        status = self._resp.status_code if self._resp is not None else None
        return self.source._map_exception(exc, self.via, self.url, self._resp is not None, status)


def _raise_mapped(mapped: BaseException, original: BaseException) -> None:
    """Raise the typed error. Only an Unexpected keeps the original as ``__cause__`` (its
    traceback is what the log needs); for the errors we understand the message says it all, and
    the httpx text (which may hold a URL with credentials) stays out of formatted tracebacks."""
    if mapped is original:
        raise mapped
    if isinstance(mapped, Unexpected):
        raise mapped from original
    raise mapped from None
