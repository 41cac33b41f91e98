"""The circuit breaker at the source: during an outage no check is sent and no profile fails.

States::

    closed --(failures of many different profiles dominate the window)--> open
    open --(probe interval passed: one check let through)--> probing
    probing --probe answered--> closed        probing --probe failed--> open (interval doubled)

* Only the source's own transient failures count (5xx, timeouts, resets: ``SourceUnavailable``),
  and only when at least ``min_profiles`` different profiles failed within ``window`` seconds
  AND failures are at least ``ratio`` of the last ``sample`` outcomes: one profile whose own
  answers are 5xx never opens it (it still fails after ``max_attempts``), nor does a low error
  rate; an outage opens it within a second or so, before checks in flight spend their attempts.
* While open, :meth:`allow` says no: the checker hands the job back to the queue with no
  attempt spent (the tries it had spent are carried to its next check in this process). One
  probe goes out after ``first_probe`` seconds, then after growing intervals (doubling, up to
  ``max_probe``): the claimer asks the source about a profile it answered recently
  (:meth:`probe_due` names it), so a tail of profiles whose own answers are 5xx cannot keep
  the circuit open.
* It arms with the source's first answer: a source that never answered (a wrong URL, a
  service down since before the run) fails its profiles as before instead of parking the
  batch forever.
* Transitions are returned to the caller, which logs CIRCUIT_OPEN / CIRCUIT_CLOSED.

Owner: none; every method takes the one lock that guards all state (any check thread calls
them). Times come from the injected monotonic ``clock``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from storycheck_tui import logs

CLOSED, OPEN, PROBING = "closed", "open", "probing"

CIRCUIT_OPEN = "CIRCUIT_OPEN"
CIRCUIT_CLOSED = "CIRCUIT_CLOSED"


@dataclass(frozen=True)
class BreakerView:
    state: str
    since: float  # clock time of the last transition
    failing_profiles: int  # different profiles that failed in the window
    next_probe_in: float | None  # seconds, while open
    reason: str | None  # the last failure that counted, while open or probing


class CircuitBreaker:
    def __init__(self, *, window: float = 10.0, min_profiles: int = 5, ratio: float = 0.5, sample: int = 20,
                 first_probe: float = 1.0, max_probe: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.min_profiles = min_profiles
        self.ratio = ratio
        self.first_probe = first_probe
        self.max_probe = max_probe
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._since = clock()
        self._failures: collections.deque[tuple[float, str]] = collections.deque()  # (time, username)
        # the last `sample` outcomes: (time, True for a failure)
        self._recent: collections.deque[tuple[float, bool]] = collections.deque(maxlen=sample)
        self._interval = first_probe
        self._next_probe = 0.0
        self._probe_since = 0.0
        self._reason: str | None = None
        self._last_good: str | None = None  # a profile the source answered recently

    @property
    def state(self) -> str:
        return self._state

    def allow(self) -> bool:
        """May a check be sent now? Only while closed (the probe is not a check)."""
        return self._state == CLOSED

    def probe_due(self) -> str | None:
        """The profile to probe the source with now (the caller reports with :meth:`success`,
        :meth:`failure` or :meth:`probe_abandoned`), or None: no probe due."""
        if self._state == CLOSED:
            return None
        with self._lock:
            if not self._start_probe(self._clock()):
                return None
            return self._last_good

    def success(self, username: str | None = None) -> str | None:
        """The source answered (``username``); returns CIRCUIT_CLOSED when this closes the circuit."""
        if self._state == CLOSED:  # the hot path: no lock (a deque append and an assignment are atomic)
            if username is not None:
                self._last_good = username
            self._recent.append((self._clock(), False))
            return None
        with self._lock:
            now = self._clock()
            if username is not None:
                self._last_good = username
            self._recent.append((now, False))
            self._trim(now)
            if self._state == CLOSED:
                return None
            self._state = CLOSED
            self._since = now
            self._interval = self.first_probe
            self._failures.clear()
            self._recent.clear()
            return CIRCUIT_CLOSED

    def failure(self, username: str, reason: str) -> str | None:
        """The source failed this profile transiently; returns CIRCUIT_OPEN when this opens it."""
        with self._lock:
            now = self._clock()
            self._failures.append((now, username))
            self._recent.append((now, True))
            self._trim(now)
            self._reason = reason
            if self._state == PROBING:
                self._interval = min(self.max_probe, self._interval * 2)
                self._open(now)
                return None  # still open: logged once, when it opened
            if self._state == OPEN or self._last_good is None:  # not armed before a first answer
                return None
            profiles = {u for _, u in self._failures}
            failed = sum(1 for _, bad in self._recent if bad)
            if len(profiles) >= self.min_profiles and failed >= self.ratio * len(self._recent):
                self._interval = self.first_probe
                self._open(now)
                self._since = now
                return CIRCUIT_OPEN
            return None

    def probe_abandoned(self) -> None:
        """The probe could not be sent (no route): the next one comes after the same interval."""
        with self._lock:
            if self._state == PROBING:
                self._open(self._clock())

    def wait(self) -> float:
        """Seconds until a check could be sent (0.0: now, or a probe is due)."""
        if self._state == CLOSED:
            return 0.0
        with self._lock:
            if self._state == PROBING:
                return max(0.0, self._probe_since + self.max_probe - self._clock())
            return max(0.0, self._next_probe - self._clock())

    def view(self) -> BreakerView:
        with self._lock:
            now = self._clock()
            self._trim(now)
            nxt = max(0.0, self._next_probe - now) if self._state == OPEN else None
            return BreakerView(self._state, self._since, len({u for _, u in self._failures}), nxt,
                               self._reason if self._state != CLOSED else None)

    # -- internals (lock held) -----------------------------------------------------------

    def _start_probe(self, now: float) -> bool:
        if self._state == PROBING and now - self._probe_since > self.max_probe:
            self._state = OPEN  # the probe never reported back: another one may go
        if self._state == OPEN and now >= self._next_probe:
            self._state = PROBING
            self._probe_since = now
            return True
        return False

    def _open(self, now: float) -> None:
        self._state = OPEN
        self._next_probe = now + self._interval

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        while self._failures and self._failures[0][0] < cutoff:
            self._failures.popleft()
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()


def log_transition(breaker: CircuitBreaker, change: str | None, username: str) -> None:
    """The CIRCUIT_OPEN / CIRCUIT_CLOSED record of a transition a call returned (None: nothing)."""
    if change == CIRCUIT_OPEN:
        view = breaker.view()
        logs.event(logging.ERROR, CIRCUIT_OPEN,
                   f"circuit open: the source failed {view.failing_profiles} different profiles within "
                   f"{breaker.window:.0f} s (last: {view.reason}); no checks are sent, claimed ones go back "
                   f"with no attempt spent; a probe in {view.next_probe_in or 0:.1f} s",
                   details={"failing_profiles": view.failing_profiles})
    elif change == CIRCUIT_CLOSED:
        logs.event(logging.WARNING, CIRCUIT_CLOSED,
                   f"circuit closed: the source answered the probe ({username}); checks resume")
