"""Recent checks per second of each batch, from its counters as snapshots show them.

The counters live in the database, so the rates include work done by other processes.
"""

from __future__ import annotations

from collections import deque


class RateTracker:
    def __init__(self, window: float = 15.0, min_span: float = 2.0) -> None:
        self.window = window
        self.min_span = min_span
        self._samples: dict[int, deque[tuple[float, int]]] = {}

    def observe(self, batch_id: int, t: float, completed: int) -> None:
        q = self._samples.setdefault(batch_id, deque())
        if q and completed < q[-1][1]:  # retry-failed took counters back: start again
            q.clear()
        q.append((t, completed))
        while len(q) > 2 and t - q[0][0] > self.window:
            q.popleft()

    def rate(self, batch_id: int, now: float | None = None) -> float:
        q = self._samples.get(batch_id)
        if not q or len(q) < 2:
            return 0.0
        (t0, c0), (t1, c1) = q[0], q[-1]
        end = max(t1, now) if now is not None else t1
        span = end - t0
        if span < self.min_span:
            return 0.0
        return max(0, c1 - c0) / span

    def forget(self, keep: set[int]) -> None:
        for b in list(self._samples):
            if b not in keep:
                del self._samples[b]
