"""Per-route pacing: a token bucket whose rate halves on "too many requests".

One :class:`TokenBucket` per proxy (or for the direct route). It holds up to ``burst``
tokens and refills at the *current* rate; each request takes one token. A 429 cuts the
rate in half (never below 1/16 of the configured rate) and may block the bucket until a
``Retry-After`` time; every success then raises the rate again by 5% of the configured
rate, up to the configured rate.

Times are seconds on the bucket's clock (``time.monotonic`` unless a test injects one).
Every method is thread-safe (a small private lock); :class:`~storycheck_tui.engine.proxies.ProxyPool`
also calls them under its own lock, which only ever nests *outside* this one.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

#: the rate never drops below ``configured / MIN_RATE_DIVISOR`` however many 429s arrive.
MIN_RATE_DIVISOR = 16.0
#: each :meth:`TokenBucket.recover` adds this share of the configured rate.
RECOVER_STEP = 0.05


class TokenBucket:
    """A token bucket with an adjustable rate and a "not before" time.

    ``burst`` is the capacity; a capacity below one token would never allow a request,
    so it is treated as 1. The bucket starts full.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:  # math.inf: no pacing, only the blocks of Retry-After
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        if not (burst > 0 and math.isfinite(burst)):
            raise ValueError(f"burst must be a positive number, got {burst!r}")
        self._clock = clock
        self._lock = threading.Lock()
        self.configured_rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._rate = float(rate)
        self._tokens = self.capacity
        self._last = clock()
        self._blocked_until = -math.inf

    # -- reading -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current rate in tokens per second (configured rate, or less after 429s)."""
        return self._rate

    @property
    def min_rate(self) -> float:
        return self.configured_rate / MIN_RATE_DIVISOR

    @property
    def blocked_until(self) -> float | None:
        """Clock time before which no token is handed out, or None when not blocked."""
        with self._lock:
            return self._blocked_until if self._blocked_until > self._clock() else None

    def tokens(self, now: float | None = None) -> float:
        """Tokens available at ``now`` (for tests and views)."""
        with self._lock:
            now = self._clock() if now is None else now
            self._refill(now)
            return self._tokens if now >= self._blocked_until else 0.0

    # -- taking --------------------------------------------------------------------------

    def reserve(self, now: float | None = None) -> float:
        """Take a token and return 0.0, or return the seconds until one is due (taking nothing)."""
        with self._lock:
            now = self._clock() if now is None else now
            wait = self._wait(now)
            if wait == 0.0:
                self._tokens -= 1.0
            return wait

    def ready_in(self, now: float | None = None) -> float:
        """Like :meth:`reserve` but never takes a token: 0.0 means one is available now."""
        with self._lock:
            now = self._clock() if now is None else now
            return self._wait(now)

    # -- steering ------------------------------------------------------------------------

    def block_until(self, t: float) -> None:
        """No token before clock time ``t`` (a ``Retry-After``); one token is ready at ``t``.

        Tokens do not pile up while blocked, so the end of a block releases one request,
        not a burst. A block that ends earlier than the current one changes nothing.
        """
        with self._lock:
            now = self._clock()
            if not math.isfinite(t) or t <= now or t <= self._blocked_until:
                return
            self._refill(now)
            self._blocked_until = t
            self._tokens = 1.0
            self._last = t

    def cut(self) -> float:
        """Halve the current rate (floor: configured/16); return the new rate."""
        with self._lock:
            self._refill(self._clock())
            self._rate = max(self.min_rate, self._rate / 2.0)
            return self._rate

    def recover(self) -> float:
        """Raise the rate by 5% of the configured rate (cap: configured); return the new rate."""
        with self._lock:
            if self._rate < self.configured_rate:
                self._refill(self._clock())
                self._rate = min(self.configured_rate, self._rate + self.configured_rate * RECOVER_STEP)
            return self._rate

    # -- internals (lock held) -----------------------------------------------------------

    def _refill(self, now: float) -> None:
        if self._rate == math.inf:
            self._tokens = self.capacity
            self._last = now
        elif now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def _wait(self, now: float) -> float:
        if now < self._blocked_until:
            # a token is set aside for the moment the block ends (see block_until)
            return self._blocked_until - now
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"TokenBucket(rate={self._rate:g}/{self.configured_rate:g}, capacity={self.capacity:g})"
