"""The pace of requests to the source: found by the engine itself, per API key.

A paid API limits per key, not per proxy. :class:`SourcePace` is one token bucket in front of
every request of this process, whose rate follows additive-increase/multiplicative-decrease:

* **slow start**: from ``start`` requests/s (the pace other workers on the key learned, or
  :data:`START_RATE`), every answer adds one more request in flight (1/latency requests/s,
  between :data:`SLOW_START_STEP` and :data:`SLOW_START_MAX_STEP`) while the pace is what holds
  requests back: the rate doubles every round trip, as TCP's window does, until the first 429
  (an API answering in 20 ms is reached within a few tenths of a second, a slow one is not
  overshot by much); it grows only while the pace held a request back within the last 50 ms:
  past what the threads can send, a higher pace means nothing;
* **increase**: after that, answers add :data:`INCREASE` of the rate at the last cut per second
  (with other workers on the key: of the mean of their paces, the same step for all); once the
  rate is clean past the rate that met the last 429 (:data:`PLATEAU`), the step doubles every
  :data:`PROBE_DOUBLING` seconds: the limit was not where that 429 said (a 429 of one proxy's
  IP, a moment of congestion), and a pace cut far below a fast API would otherwise take
  minutes to climb back;
* **decrease**: a 429 for a request sent after the last cut multiplies the rate by
  :data:`DECREASE`; the first, which ends slow start, cuts it to :data:`DECREASE_FIRST` of
  itself or to :data:`DECREASE` of the rate answered lately, whichever is lower; requests
  sent before the last cut reflect the old rate and cut nothing, nor does a 429 for the
  profile that caused the last cut (one profile answered 429 again and again says nothing of
  the key's limit). (A ``Retry-After`` blocks the
  route it came through: see the proxy pool.)
* ``cap`` (``[source] max_rate``) bounds it when set; it never drops below :data:`MIN_RATE`.

Several processes on one key each run this and share what they learned through the database
(the keeper's heartbeat writes the key's name with the pace only while there is one to share):
:meth:`SourcePace.published` is the pace this worker learned, or None while it has learned
nothing (slow start) or its pace is not what holds it back (few threads, slow proxies: such a
worker takes what it needs and is no measure of the key). At each heartbeat
:meth:`SourcePace.share` moves a worker held back by its pace three quarters of the way to the
mean of the published paces on its key, and the additive increase of every worker on the key is the
same share of that mean: equal increases and proportional cuts make AIMD converge to equal
shares, and the move to the mean does it within a few heartbeats instead of dozens of cuts
(started together, workers leave slow start at paces far apart). A worker that starts late
begins at its share of the pace the others learned. :meth:`SourcePace.view` says the current
rate and why it last changed, for the console and the log.

Owner: none; one lock guards the state (every check thread calls it). Times come from the
injected monotonic ``clock``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

#: the log event of a change of the pace worth a record (a start from a learned pace)
PACE_CHANGED = "PACE_CHANGED"

#: requests/s of a key nobody has learned yet
START_RATE = 5.0
#: the rate never drops below this (requests/s)
MIN_RATE = 0.2
#: a cut multiplies the rate by this
DECREASE = 0.9
#: the first cut, which ends slow start (the rate overshot a little), by this
DECREASE_FIRST = 0.7
#: in slow start, each answer adds one more request in flight: 1/latency requests/s (as TCP's
#: slow start adds a segment to its window per acknowledgement, doubling it every round trip),
#: at least this many (a slow API: the rate still grows fourfold every half second) ...
SLOW_START_STEP = 3.0
#: ... and at most this many: the step of a source answering in 40 ms. A source a few ms away
#: (a simulator on loopback, a service on the LAN) went further past a limit before its first 429
#: came back with a larger step, and its first cut landed lower: keys of 60-400/s with bursts of
#: 2-10, 5 s batches, the engine took 1.35 times the ideal time at 3/s per answer, 1.61 at 25/s,
#: 1.75 at 50/s (``python -m benchmarks.pacemodel --step 3 25 50``). Against an API answering in
#: 20 ms with no limit, 8 threads reach 360/s in 0.2 s instead of 1.4 s (3/s per answer), which
#: cost a 2,000-profile run a sixth of its time. At 100-400 ms, as paid APIs answer, the cap does
#: not bind: 1.15 times the ideal against 1.18 at 3/s.
SLOW_START_MAX_STEP = 25.0
#: per second, the rate grows by this share of the rate at the last cut
INCREASE = 0.05
#: ... but only this share per second near the rate that met the last 429 (between these
#: shares of it): the pace lingers just below the limit it found instead of meeting it again
#: every two seconds (a 20/s limit met a 429 in every 40 requests), and probes past it at the
#: full step again
INCREASE_NEAR = 0.01
PLATEAU = (0.95, 1.05)
#: past the top of the plateau with no 429, the additive step doubles every this many seconds
#: (one 429 at 56/s from a proxy's IP, against a key allowing 200/s, cut the pace to 29/s, which
#: then grew 2.8/s a second: a minute to get back)
PROBE_DOUBLING = 2.0
#: ... at most this many times
PROBE_MAX_DOUBLINGS = 5
#: in slow start, a request held back asks again after at most this many seconds: the rate may
#: have grown many times over meanwhile (at 5/s the wait is 0.2 s, and 8 threads slept through
#: the answers that raised the rate to 100/s)
SLOW_START_WAIT = 0.01
#: ... and grows only while it held a request back within this many seconds (held-back requests ask
#: again every SLOW_START_WAIT): 8 threads against a 20 ms API without a limit left it at 17,000/s
#: a second after they could send no more than 360/s, a pace that says nothing
SLOW_START_BOUND = 0.05
#: the pace counts as the bottleneck when it held a request back within this many seconds
BOTTLENECK_WINDOW = 1.0
#: the bucket holds this many seconds' worth of requests: after a pause (a route blocked by a
#: Retry-After) no more than that leaves at once (a tenth of a second's worth, 17 requests at
#: 170/s, met a limit's burst of 5 with a dozen 429s, each blocking its route again)
BURST_SECONDS = 0.02
#: in slow start, answers are counted over slots of this many seconds: the first 429 cuts the
#: rate to :data:`DECREASE` of what was answered over the last one to two slots (the limit
#: that answered them), if that is below :data:`DECREASE_FIRST` of the rate
SLOT = 0.25
#: ... when at least this many were answered (fewer say nothing of the limit)
ANSWERED_MIN = 4
#: at each heartbeat, a worker moves this share of the way to the mean pace of its key (half
#: the way left one of three workers started together with 52 % of a short batch)
REBALANCE = 0.75
#: the mean of the key sets the additive increase for this many seconds after it was read
SHARED_FOR = 10.0


@dataclass(frozen=True)
class PaceView:
    rate: float  # requests/s now
    reason: str  # why it last changed
    changed_at: float  # clock time of that change
    blocked_for: float  # seconds left of a Retry-After block (0: none)
    cuts: int  # 429s that cut the pace since start


def key_of(url: str, headers: dict[str, str]) -> str:
    """A name for the API key the source's requests carry (host and credentials, hashed: the
    key itself is never stored)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    material = "\n".join([parts.hostname or "", *(f"{k.lower()}={v}" for k, v in sorted(headers.items())),
                          parts.query])
    return f"{parts.hostname}#{hashlib.sha256(material.encode()).hexdigest()[:12]}"


class SourcePace:
    def __init__(self, *, start: float = START_RATE, cap: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._rate = self._bounded(start)
        self._tokens = 1.0
        self._last = now
        self._blocked_until = -math.inf
        self._slow_start = True
        self._scale = self._rate  # the additive increase is INCREASE of this per second
        self._met = math.inf  # the rate that met the last 429 (see PLATEAU)
        self._probing_since: float | None = None  # when the rate went clean past the plateau
        #: (rate, scale) learned before a cap cut the rate: the engine's own pace, back when the cap
        #: goes or rises (a 429 meanwhile forgets it: the limit said something newer)
        self._uncapped: tuple[float, float] | None = None
        self._shared_at = -math.inf  # when other workers on the key last set the scale
        self._last_cut = -math.inf
        self._slow_start_cut = -math.inf  # when the first 429 ended slow start (none: a learned start)
        self._last_cut_by = ""
        self._held_back_at = -math.inf
        # answers in slow start: this slot's since _slot_start, the previous one's over _prev_span
        self._slot_start, self._slot_answers, self._prev_answers, self._prev_span = now, 0, 0, 0.0
        self._reason = f"slow start from {self._rate:.1f}/s: grows while answers are clean, until a 429"
        self._changed_at = now
        self._cuts = 0

    @property
    def rate(self) -> float:
        return self._rate

    def _bounded(self, rate: float) -> float:
        rate = max(MIN_RATE, rate)
        return min(rate, self.cap) if self.cap else rate

    # -- taking ------------------------------------------------------------------------------

    def reserve(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is due (taking nothing)."""
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                self._held_back_at = now
                return self._blocked_until - now
            if now > self._last:
                capacity = max(1.0, self._rate * BURST_SECONDS)  # no bursts: see BURST_SECONDS
                self._tokens = min(capacity, self._tokens + (now - self._last) * self._rate)
                self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            self._held_back_at = now
            wait = (1.0 - self._tokens) / self._rate
            return min(wait, SLOW_START_WAIT) if self._slow_start else wait

    # -- steering ----------------------------------------------------------------------------

    def answered(self, latency: float | None = None) -> None:
        """The source answered a request (anything but a 429), ``latency`` seconds after it took
        its token (None: not known)."""
        now = self._clock()
        bound = now - self._held_back_at <= (SLOW_START_BOUND if self._slow_start else BOTTLENECK_WINDOW)
        if not bound and not self._slow_start:
            return  # something else holds requests back: a higher pace would mean nothing (no lock)
        with self._lock:
            if self._slow_start:
                if now - self._slot_start >= SLOT:  # answers per slot, for the first cut
                    fresh = now - self._slot_start < 2 * SLOT
                    self._prev_answers = self._slot_answers if fresh else 0
                    self._prev_span = now - self._slot_start if fresh else 0.0
                    self._slot_start, self._slot_answers = now, 0
                self._slot_answers += 1
                step = SLOW_START_STEP
                if latency:
                    step = min(SLOW_START_MAX_STEP, max(SLOW_START_STEP, 1.0 / latency))
            else:
                near = PLATEAU[0] * self._met <= self._rate <= PLATEAU[1] * self._met
                step = (INCREASE_NEAR if near else INCREASE) * self._scale / self._rate
                if self._rate > PLATEAU[1] * self._met:
                    step *= self._probe(now)
            if bound:
                self._rate = self._bounded(self._rate + step)

    def _probe(self, now: float) -> float:
        """The factor on the additive step past the plateau (lock held): 1 at first, doubling every
        :data:`PROBE_DOUBLING` seconds while no 429 comes."""
        if self._probing_since is None:
            self._probing_since = now
            self._reason = (f"no 429 past {PLATEAU[1] * self._met:.1f}/s, where the last one was met: "
                            f"growing faster")
            self._changed_at = now
        return 2.0 ** min(PROBE_MAX_DOUBLINGS, (now - self._probing_since) / PROBE_DOUBLING)

    def limited(self, sent_at: float, retry_after: float | None, who: str = "") -> bool:
        """A 429 for profile ``who``, its request sent at ``sent_at``; True if it cut the pace."""
        with self._lock:
            now = self._clock()
            if retry_after is not None and retry_after > 0:
                self._blocked_until = max(self._blocked_until, now + retry_after)
                self._tokens = min(self._tokens, 1.0)
            if sent_at < self._last_cut or (who and who == self._last_cut_by):
                return False  # sent at the old pace (cut already), or the same profile again
            self._last_cut_by = who
            before = self._rate
            if now - self._shared_at > SHARED_FOR:
                self._scale = before  # alone on the key: the rate at the last cut
            self._met = before
            if self._slow_start and self._prev_answers + self._slot_answers >= ANSWERED_MIN:
                # the first 429: the limit is about what was answered lately, below the rate that met it
                answered = (self._prev_answers + self._slot_answers) / max(self._prev_span + now - self._slot_start,
                                                                           SLOT)
                self._rate = self._bounded(min(before * DECREASE_FIRST, answered * DECREASE))
            else:
                self._rate = self._bounded(before * (DECREASE_FIRST if self._slow_start else DECREASE))
            if self._slow_start:
                self._slow_start_cut = now
            self._last_cut = now
            self._probing_since = None
            self._slow_start = False
            self._uncapped = None
            self._cuts += 1
            self._reason = (f"429 at {before:.1f}/s: cut to {self._rate:.1f}/s"
                            + (f", Retry-After {retry_after:.1f} s" if retry_after else ""))
            self._changed_at = now
            return True

    def overshot(self, sent_at: float) -> bool:
        """Whether a request sent at ``sent_at`` left while slow start was past the key's limit:
        in slow start, or before the cut that ended it (at its first 429). Its 429 is the key's.
        A worker that began at a pace learned by others had no slow start to overshoot."""
        return self._slow_start or sent_at < self._slow_start_cut

    def adopt(self, rate: float, reason: str) -> None:
        """Start from a pace learned elsewhere (other workers on the key), before any request."""
        with self._lock:
            self._rate = self._bounded(rate)
            self._scale = self._rate
            self._uncapped = None
            self._slow_start = False
            self._reason = reason
            self._changed_at = self._clock()

    def set_cap(self, cap: float | None, reason: str) -> None:
        """A new cap while running (the pace-cap knob): the rate is bounded by it at once. The rate
        and the step of growth it cut are kept: when the cap is cleared or raised, the pace goes
        back to them (as far as the new cap allows), not up from the cap by 5 % of the cap a second."""
        with self._lock:
            before = self._rate
            rate, scale = self._uncapped if self._uncapped is not None else (self._rate, self._scale)
            self.cap = cap
            self._rate = self._bounded(rate)
            self._scale = min(scale, self._rate)
            self._uncapped = (rate, scale) if self._rate < rate else None
            if self._rate < before:
                reason += f": {before:.1f}/s cut to {self._rate:.1f}/s"
            elif self._rate > before:
                reason += f": back from {before:.1f}/s to {self._rate:.1f}/s, the pace learned before the cap"
            self._reason = reason
            self._changed_at = self._clock()

    def bound(self) -> bool:
        """Whether the pace held a request back lately (it, not threads or proxies, sets the speed)."""
        return self._clock() - self._held_back_at <= BOTTLENECK_WINDOW

    def published(self) -> float | None:
        """The pace to tell other workers on the key: the learned rate while it is what holds this
        worker back; None in slow start (nothing learned yet) or while something else does."""
        with self._lock:
            return None if self._slow_start or not self.bound() else self._rate

    def share(self, others: float, count: int) -> bool:
        """``count`` other workers on the key published ``others`` requests/s in all: move three
        quarters of the way to the mean, and grow by the same steps as they do. True if the rate
        moved by a tenth or more."""
        with self._lock:
            if count <= 0 or self._slow_start or not self.bound():
                return False
            mean = (others + self._rate) / (count + 1)
            before = self._rate
            self._rate = self._bounded(before + REBALANCE * (mean - before))
            self._scale = mean
            self._met *= self._rate / before  # its share of the rate the key met a 429 at
            self._shared_at = self._clock()
            if abs(self._rate - before) < 0.1 * before:
                return False
            self._reason = (f"{count + 1} workers share the key at {mean:.1f}/s each on average: "
                            f"moved from {before:.1f}/s to {self._rate:.1f}/s")
            self._changed_at = self._clock()
            return True

    def view(self) -> PaceView:
        with self._lock:
            now = self._clock()
            return PaceView(self._rate, self._reason, self._changed_at, max(0.0, self._blocked_until - now),
                            self._cuts)
