"""Per-route pacing: a token bucket for each proxy's IP, whose rate follows its 429s.

One :class:`TokenBucket` per proxy (or for the direct route). It holds up to ``burst``
tokens and refills at the *current* rate; each request takes one token; a ``Retry-After``
blocks it until then.

* With a configured rate (``[proxies] rate``, a cap): a 429 cuts the rate in half (never
  below 1/16 of the cap); every success raises it again by 5 % of the cap, up to the cap.
* Without one (the default) the route's pace is found like the source's (``engine/pace.py``):
  no pacing until a 429 is blamed on the route's IP (:func:`ip_limited`); then the rate
  starts at :data:`~storycheck_tui.engine.pace.DECREASE_FIRST` of what the route was sending,
  each later blamed 429 for a request sent after the last cut multiplies it by
  :data:`~storycheck_tui.engine.pace.DECREASE`, and each answer while the bucket holds
  requests back adds :data:`~storycheck_tui.engine.pace.INCREASE` of the rate at the last cut
  per second.

A 429 is blamed on a route's IP (:func:`ip_limited`) when the route sends near its own pace
(a cap or a learned pace: it runs at its IP's limit), or when that route is
answered 429 distinctly more often than the other routes (a limit per key answers every route
alike: that is the source's pace's to find). Each bucket keeps decaying counts of its answers
and 429s for that comparison.

Times are seconds on the bucket's clock (``time.monotonic`` unless a test injects one).
Every method is thread-safe (a small private lock); :class:`~storycheck_tui.engine.proxies.ProxyPool`
also calls them under its own lock, which only ever nests *outside* this one.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Iterable

from storycheck_tui.engine.pace import BOTTLENECK_WINDOW, DECREASE, DECREASE_FIRST, INCREASE, MIN_RATE

#: the rate never drops below ``configured / MIN_RATE_DIVISOR`` however many 429s arrive.
MIN_RATE_DIVISOR = 16.0
#: each :meth:`TokenBucket.recover` adds this share of the configured rate.
RECOVER_STEP = 0.05
#: the counts of answers and 429s that compare routes halve every this many seconds
HALF_LIFE = 5.0
#: a route not yet paced for its IP is blamed when its 429 share beats the others' by this much
BLAME_MARGIN = 0.05
#: ... and it had at least this many 429s lately (decayed count): two 429s within one
#: :data:`HALF_LIFE` (the second finds the first decayed, so 2.0 needed three, and a route
#: met twice in a burst stayed unpaced while its 429s cut the source's pace)
BLAME_MIN = 1.5
#: the send rate a first blamed 429 starts from is counted over slots of this many seconds
SLOT = 0.5
#: a paced route sending at this share of its pace or more is near its IP's limit
NEAR = 0.5


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
        now = clock()
        self._last = now
        self._blocked_until = -math.inf
        # learned pace (no configured rate): see the module docstring
        self._scale = 0.0  # the rate at the last cut
        self._last_cut = -math.inf
        self._held_back_at = -math.inf
        self._slot_start, self._slot_sent, self._prev_sent = now, 0, 0  # the send rate, two slots
        self._answers = self._limits = 0.0  # decayed counts, as of _counted_at
        self._counted_at = now

    # -- reading -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current rate in tokens per second (configured rate, or less after 429s)."""
        return self._rate

    @property
    def min_rate(self) -> float:
        return self.configured_rate / MIN_RATE_DIVISOR

    @property
    def learns(self) -> bool:
        """True without a configured rate: the route's pace is found from its 429s."""
        return self.configured_rate == math.inf

    def near_limit(self) -> bool:
        """Whether this route sends at :data:`NEAR` of its pace or more (a cap or a learned pace):
        a 429 then is its IP's, not the source's key's."""
        with self._lock:
            return self._rate < math.inf and self._sending(self._clock()) >= NEAR * self._rate

    def limited_share(self) -> tuple[float, float]:
        """(answers, 429s) lately, decayed with :data:`HALF_LIFE`."""
        with self._lock:
            self._decay(self._clock())
            return self._answers, self._limits

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
                if now - self._slot_start >= SLOT:
                    self._prev_sent = self._slot_sent if now - self._slot_start < 2 * SLOT else 0
                    self._slot_start, self._slot_sent = now, 0
                self._slot_sent += 1
            else:
                self._held_back_at = now
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
        """A request through the route was answered: raise the rate (see the module docstring);
        return the new rate."""
        with self._lock:
            now = self._clock()
            self._decay(now)
            self._answers += 1.0
            if self.learns:
                if self._rate < math.inf and now - self._held_back_at <= BOTTLENECK_WINDOW:
                    self._refill(now)
                    self._rate += INCREASE * self._scale / self._rate
            elif self._rate < self.configured_rate:
                self._refill(now)
                self._rate = min(self.configured_rate, self._rate + self.configured_rate * RECOVER_STEP)
            return self._rate

    def limited(self) -> None:
        """A request through the route was answered 429 (counted for :func:`ip_limited`)."""
        with self._lock:
            self._decay(self._clock())
            self._limits += 1.0
            self._answers += 1.0

    def learn_cut(self, sent_at: float | None = None) -> float:
        """A 429 blamed on this route's IP, its request sent at ``sent_at``: start pacing the
        route, or cut its pace once per round; return the new rate. A configured bucket halves."""
        if not self.learns:
            return self.cut()
        with self._lock:
            now = self._clock()
            if sent_at is not None and sent_at < self._last_cut:
                return self._rate  # sent at the old pace: cut already
            self._refill(now)
            if self._rate == math.inf:
                before = max(MIN_RATE, self._sending(now))
                self._rate = max(MIN_RATE, before * DECREASE_FIRST)
                self._tokens = min(self._tokens, 1.0)
            else:
                before = self._rate
                self._rate = max(MIN_RATE, before * DECREASE)
            self._scale = before
            self._last_cut = now
            return self._rate

    # -- internals (lock held) -----------------------------------------------------------

    def _refill(self, now: float) -> None:
        if self._rate == math.inf:
            self._tokens = self.capacity
            self._last = now
        elif now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def _sending(self, now: float) -> float:
        """Requests/s this route sent over the last one to two slots."""
        if now - self._slot_start >= 2 * SLOT:
            return 0.0
        elapsed = now - self._slot_start
        return (self._prev_sent + self._slot_sent) / (SLOT + max(elapsed, 1e-3))

    def _decay(self, now: float) -> None:
        if now > self._counted_at:
            f = 0.5 ** ((now - self._counted_at) / HALF_LIFE)
            self._answers *= f
            self._limits *= f
            self._counted_at = now

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


def ip_limited(route: TokenBucket, others: Iterable[TokenBucket]) -> bool:
    """Whether the 429s of ``route`` are its IP's (after :meth:`TokenBucket.limited` counted the
    latest): it sends near its own pace (a cap or a learned one), or (a route that learns its pace) its share
    of 429s lately beats the other routes' share by :data:`BLAME_MARGIN` (by any margin once its
    pace is learned), with at least :data:`BLAME_MIN` 429s. A limit per key answers every route
    alike; with no other route the two cannot be told apart and the source's pace takes it."""
    if route.near_limit():
        return True
    if not route.learns:
        return False
    answers, limits = route.limited_share()
    if limits < BLAME_MIN or answers <= 0:
        return False
    other_answers = other_limits = 0.0
    for b in others:
        a, lim = b.limited_share()
        other_answers += a
        other_limits += lim
    if other_answers < 1.0:
        return False
    margin = 0.0 if route.rate < math.inf else BLAME_MARGIN
    return limits / answers > 2 * other_limits / other_answers + margin
