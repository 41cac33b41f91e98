"""Per-identity token buckets: the simulator's stand-in for a source's per-IP rate limit."""

from __future__ import annotations

import time
from typing import Callable


class RateLimiter:
    """One token bucket per identity, all sharing ``rate`` (tokens/s) and ``burst``.

    ``rate <= 0`` disables limiting. Changing ``rate``/``burst`` takes effect at the next
    ``take``; a bucket never holds more than the current ``burst``. Not thread-safe: the
    simulator calls it from its event loop only.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 rates: dict[str, float] | None = None):
        self.rate = float(rate)
        self.burst = float(burst)
        self.rates = dict(rates or {})  # identity -> its own rate, in place of ``rate``
        self._clock = clock
        # identity -> [tokens, last refill time]; a new identity starts with a full bucket.
        self._buckets: dict[str, list[float]] = {}

    def take(self, identity: str) -> bool:
        """Spend one token of ``identity``'s bucket; False when it is empty (answer 429)."""
        rate = self.rates.get(identity, self.rate)
        if rate <= 0:
            return True
        now = self._clock()
        burst = max(self.burst, 1.0)
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def reset(self) -> None:
        """Refill every bucket (forget all identities)."""
        self._buckets.clear()
