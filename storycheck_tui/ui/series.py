"""Recent rates as bars for the charts: counts in fixed time buckets over the last minutes.

:class:`Series` adds amounts into 5-second buckets and gives the last ``BARS`` of them as
rates (per second). :class:`ChartData` keeps the series the charts view draws: per batch
(checks, by outcome, failed), 429s, the source's pace (requests/s: this console's engine and
the live workers', as the status bar says it), and per worker (its checks/s as its heartbeat
says).
It is fed by what the console reads anyway: the engine snapshot's batch counters, outcome
counts read with the database reads while the charts are open, the log records (429s), and
the worker rows.

Owned by the UI thread.
"""

from __future__ import annotations

from collections import deque

BUCKET = 5.0  # seconds per bar
BARS = 60  # bars kept: the last 5 minutes


class Series:
    def __init__(self) -> None:
        self._buckets: deque[tuple[int, float]] = deque()  # (bucket number, amount), oldest first
        self.gauge = False  # a level (last value wins) instead of a count (amounts add up)

    def add(self, t: float, amount: float) -> None:
        b = int(t // BUCKET)
        if self._buckets and self._buckets[-1][0] == b:
            last = self._buckets[-1][1]
            self._buckets[-1] = (b, amount if self.gauge else last + amount)
        elif not self._buckets or b > self._buckets[-1][0]:
            self._buckets.append((b, amount))
        while self._buckets and self._buckets[0][0] <= b - BARS:
            self._buckets.popleft()

    def bars(self, now: float) -> list[float]:
        """The last BARS buckets up to ``now`` (a count per second, or the level), oldest first."""
        end = int(now // BUCKET)
        by = dict(self._buckets)
        scale = 1.0 if self.gauge else 1.0 / BUCKET
        return [by.get(b, 0.0) * scale for b in range(end - BARS + 1, end + 1)]


def gauge() -> Series:
    s = Series()
    s.gauge = True
    return s


class ChartData:
    #: the batch series, in the order the charts show them
    BATCH_SERIES = ("checks", "has_stories", "no_stories", "private", "not_found", "failed")

    def __init__(self) -> None:
        self.batch: dict[int, dict[str, Series]] = {}
        self.rate_limited = Series()
        self.workers: dict[str, Series] = {}
        self.pace = gauge()
        self.source_pace = gauge()  # requests/s to the source
        self._last_counts: dict[int, tuple[int, int]] = {}  # batch -> (completed, failed)
        self._last_outcomes: dict[int, dict[str, int]] = {}

    def series_of(self, batch_id: int) -> dict[str, Series]:
        return self.batch.setdefault(batch_id, {name: Series() for name in self.BATCH_SERIES})

    def counters(self, t: float, batch_id: int, completed: int, failed: int) -> None:
        """A batch's counters at ``t`` (the difference to the last ones is what was checked)."""
        last = self._last_counts.get(batch_id)
        self._last_counts[batch_id] = (completed, failed)
        if last is None:
            return
        s = self.series_of(batch_id)
        s["checks"].add(t, max(0, completed - last[0]))
        s["failed"].add(t, max(0, failed - last[1]))

    def outcomes(self, t: float, batch_id: int, counts: dict[str, int]) -> None:
        last = self._last_outcomes.get(batch_id)
        self._last_outcomes[batch_id] = dict(counts)
        if last is None:
            return
        s = self.series_of(batch_id)
        for name in ("has_stories", "no_stories", "private", "not_found"):
            s[name].add(t, max(0, counts.get(name, 0) - last.get(name, 0)))

    def workers_seen(self, t: float, rates: dict[str, float]) -> None:
        for worker, rate in rates.items():
            self.workers.setdefault(worker, gauge()).add(t, rate)
        self.pace.add(t, sum(rates.values()))
