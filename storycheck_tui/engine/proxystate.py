"""One proxy's health: its states, which of them may be handed out, and every transition.

States::

    unchecked/healthy --failure--> cooling --(dead_after failures in a row)--> dead
    cooling/dead/unchecked --success or validated ok--> healthy
    any --credentials refused (407, SOCKS5 auth)--> auth_rejected
    auth_rejected --new credentials or operator's enable--> unchecked
    auth_rejected --operator's retry, then validated ok--> healthy
    any --disable--> disabled --enable--> unchecked   (disable wins until enable)

* ``unchecked`` and ``healthy`` routes are usable; so is a ``cooling`` route whose cooldown
  has passed (it stays ``cooling`` until its next success or failure, so a proxy that keeps
  failing still reaches ``dead``).
* ``dead`` routes are only brought back by the validator (every ``validate_every`` seconds)
  or by the operator.
* ``auth_rejected`` routes will not heal by themselves (the same password is refused again
  however long one waits): no cooldown, no validation; only new credentials (the proxy
  imported again with another password) or an operator brings one back.
* A 429 is not a health failure: it may cut the route's pace (``engine/pacing.py``) and blocks it for Retry-After
  (the pool does that with the route's bucket).

Owner: the :class:`~storycheck_tui.engine.proxies.ProxyPool` holding the entry. Every method
here is called with the pool's lock held; nothing here locks, waits or logs. A transition
returns the reason to list in the pool's changes (None when the state did not change).
Times are on the pool's monotonic clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from storycheck_tui.config import ProxySettings
from storycheck_tui.engine.pacing import TokenBucket
from storycheck_tui.sources.base import Route
from storycheck_tui.states import ProxyState

UNCHECKED, HEALTHY, COOLING, DEAD, DISABLED, AUTH_REJECTED = (
    ProxyState.UNCHECKED, ProxyState.HEALTHY, ProxyState.COOLING, ProxyState.DEAD, ProxyState.DISABLED,
    ProxyState.AUTH_REJECTED)
#: states only an operator (or new credentials) can bring a route back from
STUCK = (DISABLED, AUTH_REJECTED)

#: how many recent latencies a view carries (for a sparkline)
LATENCY_HISTORY = 30
#: a validation handed out by due_for_validation() and never reported back is given up
#: after this many seconds, so a crashed validator cannot park a proxy forever
VALIDATION_LEASE = 120.0

# reasons listed in the pool's changes for transitions that carry no error text
REASON_FIRST_SUCCESS = "first success"
REASON_RECOVERED = "recovered"
REASON_VALIDATED = "validated"
REASON_DISABLED = "disabled by operator"
REASON_ENABLED = "enabled by operator"
REASON_NEW_CREDENTIALS = "new credentials"


def is_usable(state: str, cooldown_until: float | None, now: float, validating: bool = False) -> bool:
    """The one rule for "could this route be handed out now" (pacing aside): unchecked and
    healthy routes are; a cooling one is once its cooldown has passed (``cooldown_until`` and
    ``now`` on the same clock) and no validation of it is in flight; dead, disabled and
    auth_rejected are not."""
    if state == UNCHECKED or state == HEALTHY:
        return True
    return state == COOLING and (cooldown_until is None or now >= cooldown_until) and not validating


@dataclass(frozen=True)
class ProxyView:
    """An immutable copy of one route's state, for snapshots and the console."""

    key: str
    label: str
    state: str
    successes: int
    failures: int
    fail_streak: int
    last_latency_ms: float | None
    latencies: tuple[float, ...]  # recent (last ~30), oldest first
    cooldown_until: float | None  # wall-clock epoch seconds (time.time based) or None
    last_error: str | None
    rate: float  # current paced rate, requests per second
    validating: bool = False  # a validation of this route is in flight


class RouteHealth:
    """One route's health, counters and pacing bucket (see the module docstring for the owner)."""

    __slots__ = (
        "route", "state", "successes", "failures", "fail_streak", "last_latency_ms", "latencies",
        "cooldown_until", "next_validation", "validating_since", "validate_requested", "last_error",
        "bucket",
    )

    def __init__(self, route: Route, bucket: TokenBucket) -> None:
        self.route = route
        self.state = UNCHECKED
        self.successes = 0
        self.failures = 0
        self.fail_streak = 0
        self.last_latency_ms: float | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.cooldown_until: float | None = None  # monotonic; set while COOLING
        self.next_validation: float | None = None  # monotonic; set while DEAD
        self.validating_since: float | None = None  # monotonic; set while handed to a validator
        self.validate_requested = False  # operator retry() on a DISABLED or AUTH_REJECTED route
        self.last_error: str | None = None
        self.bucket = bucket

    # -- reading -------------------------------------------------------------------------

    def validating(self, now: float) -> bool:
        return self.validating_since is not None and now - self.validating_since < VALIDATION_LEASE

    def usable(self, now: float) -> bool:
        """Could be acquired now, tokens aside."""
        state = self.state
        if state == UNCHECKED or state == HEALTHY:  # the common case, without a call
            return True
        return is_usable(state, self.cooldown_until, now, self.validating(now))

    def reviving_at(self, now: float) -> float | None:
        """The clock time a cooling route (not being validated) may be handed out again."""
        if self.state == COOLING and self.cooldown_until is not None and not self.validating(now):
            return self.cooldown_until
        return None

    def view(self, now: float, wall: float) -> ProxyView:
        until = None
        if self.state == COOLING and self.cooldown_until is not None:
            until = wall + (self.cooldown_until - now)
        return ProxyView(
            key=self.route.key, label=self.route.label, state=self.state, successes=self.successes,
            failures=self.failures, fail_streak=self.fail_streak, last_latency_ms=self.last_latency_ms,
            latencies=tuple(self.latencies), cooldown_until=until, last_error=self.last_error,
            rate=self.bucket.rate, validating=self.validating(now),
        )

    # -- transitions ---------------------------------------------------------------------

    def record_latency(self, latency_ms: float) -> None:
        latency_ms = float(latency_ms)
        self.last_latency_ms = latency_ms
        self.latencies.append(latency_ms)

    def set_state(self, state: str) -> None:
        """Enter ``state`` with no cooldown and no validation scheduled (fail() schedules its own)."""
        self.state = state
        self.cooldown_until = None
        self.next_validation = None

    def to_healthy(self, reason: str) -> str:
        self.set_state(HEALTHY)
        return reason

    def reset(self) -> None:
        """Back to ``unchecked`` with a clean streak (an operator's enable)."""
        self.set_state(UNCHECKED)
        self.fail_streak = 0
        self.validate_requested = False

    def reject(self, error: str) -> str | None:
        """The proxy refused its credentials: ``auth_rejected`` at once (a disabled route stays so)."""
        self.failures += 1
        self.fail_streak += 1
        self.last_error = error
        if self.state in STUCK:
            return None
        self.set_state(AUTH_REJECTED)
        return error

    def fail(self, error: str, now: float, settings: ProxySettings, rng: random.Random) -> str | None:
        """One more failure in a row: cooling with a growing, jittered cooldown, or dead."""
        s = settings
        self.failures += 1
        self.fail_streak += 1
        self.last_error = error
        if self.state == DISABLED:
            return None
        if self.fail_streak >= s.dead_after:
            if self.state == DEAD:
                return None
            self.set_state(DEAD)
            self.next_validation = now + s.validate_every
            return f"{self.fail_streak} failures in a row: {error}"
        base = min(s.max_cooldown, s.cooldown * 2.0 ** (self.fail_streak - 1))
        cooldown = base * rng.uniform(0.5, 1.0)
        self.set_state(COOLING)
        self.cooldown_until = now + cooldown
        return f"failure {self.fail_streak} of {s.dead_after}, cooling {cooldown:.1f}s: {error}"


__all__ = ["UNCHECKED", "HEALTHY", "COOLING", "DEAD", "DISABLED", "AUTH_REJECTED", "STUCK", "LATENCY_HISTORY",
           "VALIDATION_LEASE", "REASON_FIRST_SUCCESS", "REASON_RECOVERED", "REASON_VALIDATED", "REASON_DISABLED",
           "REASON_ENABLED", "REASON_NEW_CREDENTIALS", "is_usable", "ProxyView", "RouteHealth"]
