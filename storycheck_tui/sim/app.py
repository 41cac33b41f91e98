"""The simulator: the story API and the proxy ports, their faults and statistics.

Control calls, on the API port (JSON in and out):

* ``GET /_sim/stats``: counters per identity, ``internal_errors``, and ``connections`` (open
  connections, bytes of answers held unsent).
* ``POST /_sim/reset``, ``POST /_sim/config`` (SimConfig fields, as ``Simulator.update``),
  ``POST /_sim/fault`` (``{"index": i, "kind": ...}``, as ``Simulator.set_fault``).
* Stories over time (see ``world.py``): ``POST /_sim/post`` ``{"username": u, "taken_at"?: t}``
  answers ``{"ok": true, "story": {...}}`` (as ``Simulator.post_story``); ``POST /_sim/expire``
  ``{"username": u, "story_ids"?: [...]}`` answers ``{"ok": true, "expired": [...]}`` (all of
  the profile's active stories without ``story_ids``; as ``Simulator.expire_stories``). On a
  schedule instead: ``SimConfig.story_every`` (or ``/_sim/config {"story_every": s}``).

A POST is taken only with ``Content-Type: application/json`` and without an ``Origin`` header:
a web page can make a browser POST ``text/plain`` to loopback, not JSON (CSRF).

State: owned by the event loop's thread; the public methods of :class:`Simulator` hand their
work to it (``_on_loop``), so any thread may call them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine
from urllib.parse import parse_qs, quote

from .limits import RateLimiter
from .server import Listener, LoopThread, Request, Response
from .world import World

__all__ = ["Simulator", "SimConfig", "ProxyFault", "FAULT_KINDS"]

FAULT_KINDS = ("healthy", "slow", "flaky", "dead", "banned", "auth")
BAN_RETRY_AFTER = 3600
STAT_KEYS = ("requests", "ok", "rate_limited", "errors", "rejected", "health")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_WILDCARD = {"", "0.0.0.0", "::", "[::]"}


@dataclass
class ProxyFault:
    """How one proxy port misbehaves. Defaults are filled in for the kinds that need them."""

    kind: str = "healthy"
    delay: float = 0.0  # extra latency for "slow" (0.5 s if left at 0)
    error_rate: float = 0.0  # share of 502/503 for "flaky" (0.5 if left at 0)
    username: str | None = None  # if set (always for "auth"): require Proxy-Authorization
    password: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown proxy fault {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.kind == "slow" and not self.delay:
            self.delay = 0.5
        if self.kind == "flaky" and not self.error_rate:
            self.error_rate = 0.5
        if self.kind == "auth" and self.username is None:
            self.username = "user"
        if self.username is not None and self.password is None:
            self.password = "pass" if self.kind == "auth" else ""

    @property
    def requires_auth(self) -> bool:
        return self.username is not None


@dataclass
class SimConfig:
    seed: int = 1
    proxies: int = 0  # number of proxy ports
    port: int = 0  # API port; 0 = ephemeral
    host: str = "127.0.0.1"
    rate: float = 5.0  # per-identity requests/s (token bucket); <= 0 disables limiting
    global_limit: bool = False  # one bucket for every identity: a limit per API key, not per IP
    proxy_rates: dict[int, float] = field(default_factory=dict)  # proxy index -> its IP's own limit (req/s)
    burst: float = 5.0
    retry_after: float = 1.0  # seconds put in Retry-After on 429
    retry_after_http_date: bool = False  # send Retry-After as an HTTP-date instead
    error_rate: float = 0.0  # share of 500/502/503 answers
    timeout_rate: float = 0.0  # share of requests that hang `hang_seconds` (then 504)
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0  # share answered 200 with truncated/invalid JSON
    latency: float = 0.0  # base latency added to every API answer
    api_key: str | None = None  # if set, require header x-access-key == api_key, else 401
    profiles: list[str] | None = None  # if set only these usernames exist; others 404
    story_every: float = 0.0  # > 0: each profile with stories posts one every N s, its oldest expires
    faults: dict[int, ProxyFault] = field(default_factory=dict)  # proxy index -> fault


_RUNTIME_FIXED = {"proxies", "port", "host", "faults"}
_CONTROL_POSTS = ("/_sim/reset", "/_sim/fault", "/_sim/config", "/_sim/post", "/_sim/expire")


def _username(data: dict) -> str:
    name = data.get("username")
    if not isinstance(name, str) or not name:
        raise ValueError("a username (a non-empty string) is needed")
    return name


def _as_fault(fault: ProxyFault | str) -> ProxyFault:
    return ProxyFault(kind=fault) if isinstance(fault, str) else dataclasses.replace(fault)


def _json(status: int, obj: Any, **kw: Any) -> Response:
    return Response(status, json.dumps(obj).encode(), **kw)


def _control_refusal(request: Request) -> Response | None:
    """A control call (POST ``/_sim/...``) changes the simulator: accept it only from a client
    that means it. A web page can POST ``text/plain`` to loopback without asking (CSRF), but
    not ``application/json``; and a browser names the page's origin in ``Origin``."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        return _json(415, {"error": "control calls need Content-Type: application/json"})
    if "origin" in request.headers:
        return _json(403, {"error": "control calls are not taken from web pages"})
    return None


class _Stats:
    """Per-identity counters of /v1/stories answers (``health`` counts /health separately)."""

    def __init__(self, identities: list[str]):
        self._identities = identities
        self.by_identity: dict[str, dict[str, int]] = {}
        self.reset()

    def reset(self) -> None:
        self.by_identity = {i: dict.fromkeys(STAT_KEYS, 0) for i in self._identities}

    def count(self, identity: str, key: str) -> None:
        counters = self.by_identity.get(identity)
        if counters is None:
            counters = self.by_identity[identity] = dict.fromkeys(STAT_KEYS, 0)
        if key != "health":
            counters["requests"] += 1
        counters[key] += 1

    def snapshot(self) -> dict:
        total = dict.fromkeys(STAT_KEYS, 0)
        for counters in self.by_identity.values():
            for key, value in counters.items():
                total[key] += value
        return {"total": total, "identities": {i: dict(c) for i, c in self.by_identity.items()}}


class Simulator:
    """The story API and its proxy ports. ``start()`` binds everything; use as a context manager."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any):
        cfg = dataclasses.replace(config or SimConfig(), **overrides)
        faults = {int(i): _as_fault(f) for i, f in (cfg.faults or {}).items()}
        for index in faults:
            if not 0 <= index < cfg.proxies:
                raise ValueError(f"fault for proxy {index}, but there are {cfg.proxies} proxies")
        self.config = dataclasses.replace(cfg, faults=faults)
        self._faults = [faults.get(i, ProxyFault()) for i in range(cfg.proxies)]
        self._world = World(cfg.seed, cfg.profiles, story_every=cfg.story_every)
        self._limiter = RateLimiter(cfg.rate, cfg.burst)
        # the per-IP limits of single proxies (proxy_rates), checked before the one above
        self._ip_limiter = RateLimiter(0.0, cfg.burst, rates={f"proxy-{i}": r for i, r in cfg.proxy_rates.items()})
        self._rng = random.Random(cfg.seed)
        self._stats = _Stats(["direct"] + [f"proxy-{i}" for i in range(cfg.proxies)])
        self._api = Listener(cfg.host, cfg.port, self._handle_direct)
        self._proxies = [Listener(cfg.host, 0, self._proxy_handler(i)) for i in range(cfg.proxies)]
        self._loop: LoopThread | None = None

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Simulator":
        if self._loop is not None:
            return self
        loop = LoopThread()
        loop.start()
        self._loop = loop
        try:
            loop.run(self._open_all())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close every port and connection, cancel hanging answers, join the thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.run(self._close_all(), timeout=5)
        finally:
            loop.stop()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _open_all(self) -> None:
        await self._api.open()
        for index, listener in enumerate(self._proxies):
            await listener.open()  # bind even dead ones, so each keeps a stable port number
            if self._faults[index].kind == "dead":
                listener.close()

    async def _close_all(self) -> None:
        for listener in [self._api, *self._proxies]:
            listener.close()
        # Let the aborted transports run connection_lost (which closes their sockets).
        for _ in range(3):
            await asyncio.sleep(0)

    # URLs ------------------------------------------------------------------------------------

    def _url_host(self) -> str:
        host = self.config.host
        if host in _WILDCARD:
            return "127.0.0.1"
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @property
    def api_url(self) -> str:
        return f"http://{self._url_host()}:{self._api.port}"

    @property
    def stories_url_template(self) -> str:
        return self.api_url + "/v1/stories?username={username}"

    @property
    def health_url(self) -> str:
        return self.api_url + "/health"

    @property
    def proxy_urls(self) -> list[str]:
        urls = []
        for fault, listener in zip(self._faults, self._proxies):
            auth = ""
            if fault.requires_auth:
                auth = f"{quote(fault.username or '', safe='')}:{quote(fault.password or '', safe='')}@"
            urls.append(f"http://{auth}{self._url_host()}:{listener.port}")
        return urls

    # runtime control --------------------------------------------------------------------------

    def _on_loop(self, fn: Any, *args: Any) -> Any:
        loop = self._loop
        if loop is None or loop.in_loop_thread():
            return fn(*args)
        return loop.call(fn, *args)

    def stats(self) -> dict:
        return self._on_loop(self._stats_snapshot)

    def reset_stats(self) -> None:
        self._on_loop(self._stats.reset)

    def set_fault(self, index: int, fault: ProxyFault | str) -> None:
        """Change proxy ``index``'s fault; "dead" closes its port, leaving "dead" re-binds it."""
        if not 0 <= index < len(self._proxies):
            raise IndexError(f"no proxy {index}; there are {len(self._proxies)}")
        new = _as_fault(fault)
        loop = self._loop
        if loop is None:
            self._set_fault_now(index, new)
        else:
            loop.run(self._apply_fault(index, new))

    def update(self, **fields: Any) -> None:
        """Change SimConfig fields at runtime (rates, api_key, latency, profiles, seed, ...)."""
        names = {f.name for f in dataclasses.fields(SimConfig)}
        unknown = set(fields) - names
        if unknown:
            raise TypeError(f"unknown SimConfig fields: {sorted(unknown)}")
        fixed = set(fields) & _RUNTIME_FIXED
        if fixed:
            raise ValueError(f"cannot change {sorted(fixed)} at runtime (use set_fault for faults)")
        self._on_loop(self._apply_update, fields)

    def config_snippet(self) -> str:
        """A storycheck TOML ``[source]`` section that points at this simulator."""
        lines = [
            "[source]",
            'kind = "http"',
            f'url = "{self.stories_url_template}"',
            'items = "items"',
            'story_id = "pk"',
            'taken_at = "taken_at"',
            'expires_at = "expiring_at"',
            "not_found = [404]",
            "private = [403]",
            "rate_limited = [429]",
            "auth_failed = [401, 402]",
            f'health_url = "{self.health_url}"',
        ]
        if self.config.api_key is not None:
            lines.append('headers = { "x-access-key" = "${STORY_API_KEY}" }')
        return "\n".join(lines) + "\n"

    def outcome_for(self, username: str) -> str:
        """What the API answers for ``username`` now (one of world.OUTCOMES)."""
        return self._on_loop(self._world.outcome, username)

    def stories_of(self, username: str) -> list[dict]:
        """The active stories the API answers for ``username`` now (empty if it has none)."""
        return self._on_loop(self._world.stories, username)

    def post_story(self, username: str, taken_at: int | None = None) -> dict:
        """Post a new story for ``username`` (``taken_at``: epoch seconds, default now); returns
        the story item as the API will answer it. The profile becomes public with stories."""
        return self._on_loop(self._world.post, username, taken_at)

    def expire_stories(self, username: str, story_ids: list[str] | None = None) -> list[str]:
        """Take out active stories of ``username`` (all of them if None); the ids taken out."""
        return self._on_loop(self._world.expire, username, story_ids)

    def _stats_snapshot(self) -> dict:
        snap = self._stats.snapshot()
        snap["internal_errors"] = len(self._loop.errors) if self._loop else 0
        figures = [listener.connection_figures() for listener in (self._api, *self._proxies)]
        snap["connections"] = {"open": sum(n for n, _ in figures), "unsent_bytes": sum(b for _, b in figures)}
        return snap

    def _set_fault_now(self, index: int, fault: ProxyFault) -> None:
        self._faults[index] = fault
        self.config.faults[index] = fault

    async def _apply_fault(self, index: int, fault: ProxyFault) -> None:
        listener = self._proxies[index]
        self._set_fault_now(index, fault)
        # Other faults are read per request, so open connections follow the change at once.
        if fault.kind == "dead":
            listener.close()
        else:
            await listener.open()

    def _apply_update(self, fields: dict[str, Any]) -> None:
        self.config = dataclasses.replace(self.config, **fields)
        cfg = self.config
        self._limiter.rate, self._limiter.burst = cfg.rate, cfg.burst
        self._ip_limiter.burst = cfg.burst
        self._ip_limiter.rates = {f"proxy-{i}": r for i, r in cfg.proxy_rates.items()}
        if "seed" in fields or "profiles" in fields:  # a new world: stories posted or expired by hand are gone
            self._world = World(cfg.seed, cfg.profiles, now=self._world.now, story_every=cfg.story_every)
        self._world.story_every = float(cfg.story_every)

    # request handling -------------------------------------------------------------------------

    def _handle_direct(self, request: Request) -> Response | Coroutine[Any, Any, Response]:
        return self._route(request, "direct", request.target)

    def _proxy_handler(self, index: int):
        def handle(request: Request) -> Response | Coroutine[Any, Any, Response]:
            return self._handle_proxied(index, request)
        return handle

    def _handle_proxied(self, index: int, request: Request) -> Response | Coroutine[Any, Any, Response]:
        identity = f"proxy-{index}"
        fault = self._faults[index]
        if request.method == "CONNECT":
            return _json(501, {"error": "CONNECT is not supported: the sim proxies plain http only"},
                         close=True)
        target = request.target
        if not target.startswith("http://"):
            return _json(400, {"error": "a proxy expects an absolute http:// URL"}, close=True)
        authority, slash, rest = target[7:].partition("/")
        path = slash + rest or "/"
        counted = path.partition("?")[0]
        if fault.requires_auth and not self._proxy_auth_ok(request, fault):
            self._count(identity, counted, "rejected")
            return _json(407, {"error": "proxy authentication required"},
                         headers=[("Proxy-Authenticate", 'Basic realm="sim"')])
        if fault.kind == "banned":
            self._count(identity, counted, "rate_limited")
            return _json(429, {"error": "banned"}, headers=[("Retry-After", str(BAN_RETRY_AFTER))])
        if fault.kind == "flaky" and self._rng.random() < fault.error_rate:
            self._count(identity, counted, "errors")
            status = self._rng.choice((502, 503))
            return _json(status, {"error": "proxy error"})
        if not self._names_api(authority):
            self._count(identity, counted, "rejected")
            return _json(502, {"error": "the sim proxy only reaches the sim API"})
        response = self._route(request, identity, path)
        if fault.kind == "slow" and isinstance(response, Response):
            response.delay += fault.delay
        return response

    def _names_api(self, authority: str) -> bool:
        hostport = authority.rpartition("@")[2]
        host, sep, port = hostport.rpartition(":")
        if not sep or "]" in port:
            host, port = hostport, "80"
        host = host.lower()
        return port == str(self._api.port) and (
            host in _LOOPBACK or host == self.config.host or self.config.host in _WILDCARD)

    @staticmethod
    def _proxy_auth_ok(request: Request, fault: ProxyFault) -> bool:
        scheme, _, token = request.headers.get("proxy-authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except ValueError:
            return False
        return user == fault.username and password == (fault.password or "")

    def _count(self, identity: str, path: str, key: str) -> None:
        if path == "/health":
            self._stats.count(identity, "health")
        elif path == "/v1/stories":
            self._stats.count(identity, key)

    def _route(self, request: Request, identity: str, target: str) -> Response | Coroutine[Any, Any, Response]:
        path, _, query = target.partition("?")
        if path == "/v1/stories":
            if request.method != "GET":
                return _json(405, {"error": "method not allowed"})
            response = self._stories(request, identity, query)
            response.delay += self.config.latency
            return response
        if path == "/health":
            self._stats.count(identity, "health")
            return Response(200, b'{"ok": true}', delay=self.config.latency)
        if path.startswith("/_sim/"):
            return self._control(request, path)
        return _json(404, {"error": "no such endpoint"})

    def _stories(self, request: Request, identity: str, query: str) -> Response:
        cfg = self.config
        if cfg.api_key is not None and request.headers.get("x-access-key") != cfg.api_key:
            self._stats.count(identity, "rejected")
            return Response(401, b'{"error": "unauthorized"}')
        usernames = parse_qs(query).get("username")
        if not usernames or not usernames[0]:
            self._stats.count(identity, "rejected")
            return Response(400, b'{"error": "missing username"}')
        username = usernames[0]
        if (identity in self._ip_limiter.rates and not self._ip_limiter.take(identity)) \
                or not self._limiter.take("key" if cfg.global_limit else identity):
            self._stats.count(identity, "rate_limited")
            return Response(429, b'{"error": "rate_limited"}',
                            headers=[("Retry-After", self._retry_after_value())])
        fault_roll = self._rng.random() if (
            cfg.timeout_rate or cfg.error_rate or cfg.malformed_rate) else 1.0
        if fault_roll < cfg.timeout_rate:
            self._stats.count(identity, "errors")
            return Response(504, b'{"error": "timeout"}', delay=cfg.hang_seconds)
        fault_roll -= cfg.timeout_rate
        if fault_roll < cfg.error_rate:
            self._stats.count(identity, "errors")
            status = self._rng.choice((500, 502, 503))
            return _json(status, {"error": "server error"})
        fault_roll -= cfg.error_rate
        if fault_roll < cfg.malformed_rate:
            self._stats.count(identity, "errors")
            return Response(200, self._malformed_body(username))
        status, body = self._world.answer(username)
        self._stats.count(identity, "ok")
        return Response(status, body)

    def _retry_after_value(self) -> str:
        seconds = self.config.retry_after
        if self.config.retry_after_http_date:
            # HTTP-dates have whole seconds; round up so a client never comes back early.
            return email.utils.formatdate(time.time() + seconds + 0.999, usegmt=True)
        return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"

    def _malformed_body(self, username: str) -> bytes:
        if self._rng.random() < 0.5:
            return b"<html><body>502 Bad Gateway</body></html>"
        full = json.dumps({"user": {"username": username}, "items": self._world.stories(username)})
        return full[: len(full) // 2].encode()  # a strict prefix of an object is never valid JSON

    def _control(self, request: Request, path: str) -> Response | Coroutine[Any, Any, Response]:
        if path == "/_sim/stats" and request.method == "GET":
            return _json(200, self._stats_snapshot())
        if request.method != "POST":
            return _json(405 if path in _CONTROL_POSTS else 404,
                         {"error": "unknown control request"})
        refused = _control_refusal(request)
        if refused is not None:
            return refused
        if path == "/_sim/reset":
            self._stats.reset()
            return _json(200, {"ok": True})
        try:
            data = json.loads(request.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if path == "/_sim/fault":
                index = int(data.pop("index"))
                if not 0 <= index < len(self._proxies):
                    raise ValueError(f"no proxy {index}")
                return self._control_fault(index, ProxyFault(**data))
            if path == "/_sim/config":
                self.update(**data)
                return _json(200, {"ok": True})
            if path == "/_sim/post":
                story = self._world.post(_username(data), data.get("taken_at"))
                return _json(200, {"ok": True, "story": story})
            if path == "/_sim/expire":
                ids = data.get("story_ids")
                if ids is not None and not isinstance(ids, list):
                    raise ValueError("story_ids must be a list")
                return _json(200, {"ok": True, "expired": self._world.expire(_username(data), ids)})
        except (ValueError, TypeError, KeyError) as err:
            return _json(400, {"error": f"{type(err).__name__}: {err}"})
        return _json(404, {"error": "unknown control request"})

    async def _control_fault(self, index: int, fault: ProxyFault) -> Response:
        await self._apply_fault(index, fault)
        return _json(200, {"ok": True, "proxy_url": self.proxy_urls[index]})

