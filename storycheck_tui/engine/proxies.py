"""The in-memory proxy pool: which route a check may use now, and how healthy each one is.

Pure Python and threads: no HTTP and no database in here. The runner hands the pool the
outcome of every request (:meth:`ProxyPool.success`, :meth:`~ProxyPool.failure`,
:meth:`~ProxyPool.rate_limited`), runs the validator with :meth:`~ProxyPool.due_for_validation`
and :meth:`~ProxyPool.validated`, persists :meth:`~ProxyPool.drain_changes`, and feeds
states written by other processes back in with :meth:`~ProxyPool.apply_shared`.

Each route's health, its states and transitions are in :mod:`.proxystate`; the pool hands
routes out (least recently used first, paced by each route's bucket) and applies the
transitions. Owner: none; every thread calls it.

Timing uses the injected monotonic ``clock``; wall-clock time (``wall``) is used only to
express cooldowns in :class:`ProxyView` and to read ``cooldown_until`` from the database.
One :class:`threading.Condition` guards all state; waiting acquirers are woken by every
change that can make a route usable.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, NamedTuple

from storycheck_tui.config import ProxySettings
from storycheck_tui.engine import pacing
from storycheck_tui.engine.pacing import TokenBucket
from storycheck_tui.engine.proxystate import (
    AUTH_REJECTED, COOLING, DEAD, DISABLED, HEALTHY, LATENCY_HISTORY, REASON_DISABLED, REASON_ENABLED,
    REASON_FIRST_SUCCESS, REASON_NEW_CREDENTIALS, REASON_RECOVERED, REASON_VALIDATED, STUCK,
    UNCHECKED, VALIDATION_LEASE, ProxyView, RouteHealth, is_usable,
)
from storycheck_tui.sources.base import DIRECT, Route
from storycheck_tui.states import ProxyState

class RateLimit(NamedTuple):
    """What :meth:`ProxyPool.rate_limited` did with a 429."""

    blocked_for: float  # seconds the route is blocked for
    ip_limited: bool  # the 429 is the route's IP's, not the source's key's: the source's pace stays


class ProxyPool:
    """Routes with per-route pacing and health; safe to share between many threads.

    An empty ``routes`` list means "direct": the pool then holds the single
    :data:`~storycheck_tui.sources.base.DIRECT` route, paced and tracked the same way.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        settings: ProxySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self._rng = rng if rng is not None else random.Random()
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[str, RouteHealth] = {}  # in the order added (views)
        # the same entries, least recently handed out first: acquire() takes the first ready one
        # and moves it to the end, so a hand-out costs O(1) however many proxies there are.
        # Never-used routes start in random order, so processes sharing a pool spread out.
        self._lru: OrderedDict[str, RouteHealth] = OrderedDict()
        self._changes: list[tuple[str, str, str | None]] = []
        routes = list(routes)
        self._direct = not routes
        for route in routes or [DIRECT]:
            if route.key not in self._entries:
                self._entries[route.key] = self._new_entry(route)
        order = list(self._entries.values())
        self._rng.shuffle(order)
        for e in order:
            self._lru[e.route.key] = e

    @property
    def direct(self) -> bool:
        """True when the pool was built without proxies and sends requests direct."""
        return self._direct

    def _new_entry(self, route: Route) -> RouteHealth:
        s = self.settings
        # no [proxies] rate: no pacing per proxy (the source's pace is found per key), only the
        # blocks a Retry-After asks for
        return RouteHealth(route, TokenBucket(s.rate or math.inf, s.burst, clock=self._clock))

    # -- handing out routes --------------------------------------------------------------

    def acquire(self, exclude: frozenset[str] = frozenset(), timeout: float = 0.0, *,
                wait_for_revival: bool = True, stop: threading.Event | None = None) -> Route | None:
        """A usable route with a token, least recently used first; None if none within ``timeout``.

        Waits (woken by state changes and by the next token/cooldown due) up to ``timeout``
        seconds. Returns None at once when every route is in ``exclude``, and, without
        ``wait_for_revival``, when no route outside it is usable or cooling: every one is
        dead, disabled or being validated, which only a validation or an operator can change.
        Returns None once ``stop`` is set (:meth:`wake_waiters` ends the wait at once).
        """
        deadline = self._clock() + max(0.0, timeout)
        real_deadline = time.monotonic() + max(0.0, timeout)  # a fake clock must not wait forever
        with self._cond:
            while True:
                now = self._clock()
                soonest = math.inf
                candidates = 0
                for key, e in self._lru.items():
                    if key in exclude:
                        continue
                    candidates += 1
                    if e.usable(now):
                        wait = e.bucket.reserve(now)
                        if wait == 0.0:
                            self._lru.move_to_end(key)
                            return e.route
                        soonest = min(soonest, wait)
                    elif e.state == COOLING and e.cooldown_until is not None and not e.validating(now):
                        soonest = min(soonest, e.cooldown_until - now)
                if candidates == 0 or (soonest == math.inf and not wait_for_revival):
                    return None
                remaining = min(deadline - now, real_deadline - time.monotonic())
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return None
                self._cond.wait(min(remaining, max(soonest, 0.001)))

    def wake_waiters(self) -> None:
        """Wake every :meth:`acquire` waiting, so those whose ``stop`` is set return now."""
        with self._cond:
            self._cond.notify_all()

    def next_ready_in(self, exclude: frozenset[str] = frozenset()) -> float | None:
        """Seconds until some route could be acquired (0.0: now); None if none is usable at all.

        None means every route outside ``exclude`` is dead, disabled or being validated:
        only a validation or an operator can bring one back.
        """
        with self._cond:
            now = self._clock()
            soonest: float | None = None
            for e in self._entries.values():
                if e.route.key in exclude:
                    continue
                if e.usable(now):
                    wait = e.bucket.ready_in(now)
                elif e.state == COOLING and e.cooldown_until is not None and not e.validating(now):
                    start = e.cooldown_until
                    wait = max(start - now, e.bucket.ready_in(start) if start > now else 0.0)
                else:
                    continue
                soonest = wait if soonest is None else min(soonest, wait)
            return soonest

    def retry_after_wait(self) -> float:
        """Seconds until the first usable route's Retry-After block ends, when every usable
        route is blocked by one (0.0 otherwise: some route is free, or none is usable)."""
        with self._cond:
            now = self._clock()
            ends = [e.bucket.blocked_until for e in self._entries.values() if e.usable(now)]
            if not ends or any(t is None for t in ends):
                return 0.0
            return max(0.0, min(ends) - now)

    def usable_count(self) -> int:
        """Routes that could be acquired now or after their token is due (not dead, disabled, cooling)."""
        with self._cond:
            now = self._clock()
            return sum(1 for e in self._entries.values() if e.usable(now))

    # -- outcomes of requests ------------------------------------------------------------

    def success(self, key: str, latency_ms: float) -> None:
        """A parsed, valid answer came through ``key``: healthy, streak reset, pace recovers."""
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return
            e.successes += 1
            e.record_latency(latency_ms)
            e.fail_streak = 0
            e.bucket.recover()
            if e.state != DISABLED and e.state != HEALTHY:
                reason = REASON_FIRST_SUCCESS if e.state == UNCHECKED else REASON_RECOVERED
                self._change(e, e.to_healthy(reason))
                self._cond.notify_all()  # only a transition can make a route usable sooner

    def rate_limited(self, key: str, retry_after: float | None, sent_at: float | None = None, *,
                     key_limit: bool = False) -> RateLimit:
        """A 429 through ``key`` (its request sent at ``sent_at``): cut its pace (a configured
        rate halves; a learned one only when the 429 is its IP's) and block it for
        ``retry_after`` seconds. ``key_limit``: the source's pace was past the key's limit when the
        request left (``SourcePace.overshot``): the 429 is the key's and blames no route's IP
        now (the burst of 429s that ends slow start fell 5 to 2 on two proxies and, with a
        few dozen answers counted, paced one of them at 19/s for good). It is counted all the
        same: a proxy whose IP is limited, the only one that met such 429s, is blamed at its
        next 429 (not counting them left one unpaced in a run of the per-IP test).

        Whether the 429 is the route's IP's rather than the source's key's
        (``engine/pacing.py``, ``ip_limited``) is decided before any cut: after a configured
        rate halved, the route's send rate would look near the new, halved pace, and a limit
        for the whole key would be blamed on the IP. Such a 429 cuts the route's pace, not the
        source's; the caller cuts the source's when ``ip_limited`` is False.

        The source's ``Retry-After`` is untrusted: the block never exceeds ``max_cooldown``
        (the caller logs the cap). Without ``retry_after`` the block is one interval at the new
        rate. Not a health failure: state, streak and counters are untouched.
        """
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return RateLimit(0.0, False)
            e.bucket.limited()
            ip = not key_limit and self._ip_limited(e)
            if not e.bucket.learns:
                rate = e.bucket.cut()
            elif ip:
                rate = e.bucket.learn_cut(sent_at)
            else:
                rate = e.bucket.rate
            if retry_after is None or math.isnan(retry_after):
                wait = 1.0 / rate
            else:
                wait = min(max(0.0, retry_after), self.settings.max_cooldown)
            if wait > 0:
                e.bucket.block_until(self._clock() + wait)
            return RateLimit(wait, ip)

    def _ip_limited(self, e: RouteHealth) -> bool:
        return pacing.ip_limited(e.bucket, (o.bucket for o in self._entries.values() if o is not e))

    def failure(self, key: str, error: str, *, auth: bool = False, url: str | None = None) -> str:
        """The proxy failed (connect, tunnel, ban): cooling with a growing cooldown, or dead;
        with ``auth`` (it refused its credentials: 407, SOCKS5 auth) ``auth_rejected`` at once.
        The direct route is never ``auth_rejected``: it has no credentials, and nothing would
        ever try it again; its ``auth`` failure is an ordinary one.

        ``error`` must already be scrubbed of secrets. Returns the route's new state
        (``disabled`` for a disabled or unknown/removed key). Failures reported while the
        route is still cooling, or already dead (requests that were in flight when it went
        down), are counted but change nothing else: one outage is one step towards ``dead``.
        A refusal of credentials the route no longer has (``url``, the URL the request used, is
        not the route's: new credentials arrived meanwhile) changes nothing either.
        """
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return DISABLED
            if auth and e.route.url is not None:  # the direct route has no credentials to refuse
                if url is None or url == e.route.url:
                    self._change(e, e.reject(error))
                return e.state
            now = self._clock()
            if e.state == AUTH_REJECTED:  # its credentials were never accepted: a later failure is not news
                e.failures += 1
                return e.state
            if e.state == DEAD or (e.state == COOLING and e.cooldown_until is not None and now < e.cooldown_until):
                e.failures += 1
                e.last_error = error
                return e.state
            return self._fail(e, error, now)

    # -- operator ------------------------------------------------------------------------

    def disable(self, key: str) -> None:
        """Operator: never hand out ``key`` until :meth:`enable`; wins over every other transition."""
        with self._cond:
            e = self._entries.get(key)
            if e is None or e.state == DISABLED:
                return
            e.set_state(DISABLED)
            self._change(e, REASON_DISABLED)

    def enable(self, key: str) -> None:
        """Operator: a disabled (or dead/cooling/auth_rejected) route becomes ``unchecked``, streak reset.

        Enabling an ``unchecked`` or ``healthy`` route changes nothing.
        """
        with self._cond:
            e = self._entries.get(key)
            if e is None or e.state in (UNCHECKED, HEALTHY):
                return
            e.reset()
            self._change(e, REASON_ENABLED)
            self._cond.notify_all()

    def retry(self, key: str) -> None:
        """Operator: re-validate ``key`` now. The state is unchanged (a DISABLED route stays so).

        Dead: due for validation now. Cooling: the cooldown ends now (usable and due).
        Disabled: validated once (latency and error are updated, the state is not).
        Auth_rejected: validated once (healthy if its credentials work now; still refused: no change).
        Unchecked/healthy: nothing to do.
        """
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return
            now = self._clock()
            if e.state == DEAD:
                e.next_validation = now
            elif e.state == COOLING:
                e.cooldown_until = now
                self._cond.notify_all()
            elif e.state in STUCK:
                e.validate_requested = True
            else:
                return
            e.validating_since = None  # an operator's retry overrides a stuck validation

    # -- validator -----------------------------------------------------------------------

    def due_for_validation(self) -> list[Route]:
        """Routes the validator should probe now; each is marked in flight until :meth:`validated`.

        Cooling routes whose cooldown has passed, dead routes every ``validate_every``
        seconds, and disabled or auth_rejected routes the operator asked to :meth:`retry`.
        """
        with self._cond:
            now = self._clock()
            due: list[Route] = []
            for e in self._entries.values():
                if e.validating(now):
                    continue
                if (
                    (e.state == COOLING and (e.cooldown_until is None or now >= e.cooldown_until))
                    or (e.state == DEAD and (e.next_validation is None or now >= e.next_validation))
                    or (e.state in STUCK and e.validate_requested)
                ):
                    e.validating_since = now
                    due.append(e.route)
            return due

    def validated(self, key: str, ok: bool, latency_ms: float | None, error: str | None, *,
                  auth: bool = False, url: str | None = None) -> None:
        """The validator's verdict on ``key``: ok -> healthy; not ok -> longer cooldown or dead;
        refused credentials (``auth``) -> auth_rejected.

        A disabled route keeps its state (only latency/error are recorded); so does an
        auth_rejected one whose validation failed for another reason than its credentials.
        """
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return
            now = self._clock()
            e.validating_since = None
            e.validate_requested = False
            if ok:
                if latency_ms is not None:
                    e.record_latency(latency_ms)
                if e.state == DISABLED:
                    return
                e.fail_streak = 0
                if e.state != HEALTHY:
                    self._change(e, e.to_healthy(REASON_VALIDATED))
                self._cond.notify_all()
                return
            error = error or "validation failed"
            if auth and e.route.url is not None:  # the direct route has no credentials to refuse
                if url is None or url == e.route.url:  # not credentials replaced meanwhile
                    self._change(e, e.reject(error))
                return
            if e.state == DISABLED:
                e.last_error = error
                return
            if e.state == AUTH_REJECTED:
                # an operator's retry that failed for another reason (the proxy is down): its
                # credentials were never accepted, so checks must not go through it; it stays
                # auth_rejected, its last error still the refusal
                e.failures += 1
                return
            if e.state == DEAD:
                e.failures += 1
                e.fail_streak += 1
                e.last_error = error
                e.next_validation = now + self.settings.validate_every
                return
            self._fail(e, error, now)

    # -- other processes -----------------------------------------------------------------

    def apply_shared(
        self,
        key: str,
        state: str,
        *,
        cooldown_until: float | None = None,
        fail_streak: int | None = None,
        last_error: str | None = None,
        reason: str | None = None,
        record: bool = False,
    ) -> bool:
        """Adopt a state another process wrote to the database; return True if anything changed.

        ``cooldown_until`` is wall-clock epoch seconds (as stored). A local ``disabled``
        route leaves ``disabled`` only for ``unchecked``/``healthy`` (an operator enabled it
        elsewhere); ``cooling``/``dead`` do not override a disable. By
        default the adoption is not put in :meth:`drain_changes` (the other process has
        already persisted and logged it); pass ``record=True`` to have it listed.

        Apply only rows another process changed since this one last wrote them: a stale
        row read back before this process's own drained changes were persisted would undo them.
        """
        if state not in tuple(ProxyState):
            raise ValueError(f"unknown proxy state {state!r}")
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                return False
            now = self._clock()
            if last_error is not None:
                e.last_error = last_error
            if fail_streak is not None:
                e.fail_streak = max(0, int(fail_streak))
            mono_until: float | None = None
            if cooldown_until is not None and math.isfinite(cooldown_until):
                mono_until = now + (cooldown_until - self._wall())
            before = (e.state, e.cooldown_until)
            if e.state == DISABLED and state in (COOLING, DEAD, AUTH_REJECTED):
                # disable wins until an enable (written as unchecked) arrives
                return False
            if state in STUCK:
                e.set_state(state)
            elif state in (UNCHECKED, HEALTHY):
                if fail_streak is None:
                    e.fail_streak = 0
                e.state = state
                e.cooldown_until = None
                e.next_validation = None
            elif state == COOLING:
                if mono_until is None:
                    mono_until = now + self.settings.cooldown
                # the same stored time read again maps to a slightly different clock time
                if not (e.state == COOLING and e.cooldown_until is not None
                        and abs(e.cooldown_until - mono_until) < 0.5):
                    e.cooldown_until = mono_until
                e.state = COOLING
                e.next_validation = None
            else:  # DEAD
                if e.state != DEAD:
                    e.next_validation = now + self.settings.validate_every
                e.state = DEAD
                e.cooldown_until = None
            changed = (e.state, e.cooldown_until) != before
            if changed:
                if record:
                    self._changes.append((key, e.state, reason or "changed by another process"))
                self._cond.notify_all()
            return changed

    # -- views and changes ---------------------------------------------------------------

    def views(self) -> list[ProxyView]:
        """Immutable copies of every route, in the order they were added."""
        with self._cond:
            now = self._clock()
            wall = self._wall()
            return [e.view(now, wall) for e in self._entries.values()]

    def drain_changes(self) -> list[tuple[str, str, str | None]]:
        """``(key, new_state, reason)`` for every transition since the last call, in order.

        Reasons: ``"first success"`` / ``"recovered"`` / ``"validated"`` (to healthy),
        the error text with streak and cooldown (to cooling or dead),
        ``"disabled by operator"``, ``"enabled by operator"`` (to unchecked).
        """
        with self._cond:
            out, self._changes = self._changes, []
            return out

    def state_of(self, key: str) -> str | None:
        """The current state of ``key``, or None if the pool does not hold it."""
        with self._cond:
            e = self._entries.get(key)
            return e.state if e is not None else None

    def route(self, key: str) -> Route | None:
        with self._cond:
            e = self._entries.get(key)
            return e.route if e is not None else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    # -- membership ----------------------------------------------------------------------

    def add(self, *routes: Route) -> None:
        """Add routes (``unchecked``); an existing key keeps its state and takes the new URL/label.

        New routes are the least recently used, in random order among themselves (so workers
        adding the same proxies do not all try the same one first); views keep the order given.
        Adding a proxy to a direct pool removes the direct route: requests never mix the
        machine's own address with proxies.
        """
        with self._cond:
            new: list[RouteHealth] = []
            for route in routes:
                if self._direct and route.key != DIRECT.key:
                    self._entries.pop(DIRECT.key, None)
                    self._lru.pop(DIRECT.key, None)
                    self._direct = False
                e = self._entries.get(route.key)
                if e is not None:
                    changed_url = e.route.url != route.url
                    e.route = route
                    if changed_url and e.state == AUTH_REJECTED:
                        e.reset()
                        self._change(e, REASON_NEW_CREDENTIALS)
                else:
                    e = self._entries[route.key] = self._new_entry(route)
                    new.append(e)
            self._rng.shuffle(new)
            for e in new:
                self._lru[e.route.key] = e
                self._lru.move_to_end(e.route.key, last=False)
            self._cond.notify_all()

    def remove(self, key: str) -> None:
        """Forget ``key``; later reports about it are ignored. Removing the last proxy does
        not fall back to direct (that would expose this machine's address)."""
        with self._cond:
            self._entries.pop(key, None)
            self._lru.pop(key, None)

    # -- internals (lock held) -----------------------------------------------------------

    def _change(self, e: RouteHealth, reason: str | None) -> None:
        if reason is not None:
            self._changes.append((e.route.key, e.state, reason))

    def _fail(self, e: RouteHealth, error: str, now: float) -> str:
        self._change(e, e.fail(error, now, self.settings, self._rng))
        return e.state


__all__ = ["ProxyPool", "RateLimit", "ProxyView", "is_usable", "LATENCY_HISTORY", "VALIDATION_LEASE", "UNCHECKED", "HEALTHY",
           "COOLING", "DEAD", "DISABLED", "AUTH_REJECTED", "REASON_FIRST_SUCCESS", "REASON_RECOVERED", "REASON_VALIDATED",
           "REASON_DISABLED", "REASON_ENABLED"]
