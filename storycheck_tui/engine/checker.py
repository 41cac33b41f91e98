"""One story check: pick a route, ask the source, retry what is transient.

Retry policy (tenacity, a fresh ``Retrying`` per check so statistics are never shared):

* ``RateLimited`` is not the profile's fault: the proxy is slowed and blocked for
  ``Retry-After``, and the next try goes through another route; it spends no attempt.
* ``ProxyFailed`` fails over to another proxy; it spends no attempt either. A proxy that
  refused its credentials (``ProxyAuthRejected``) is marked ``auth_rejected`` at once. A 407
  to a request sent direct is the source's ``AuthFailed``: the batch pauses.
* ``SourceUnavailable`` and ``BadResponse`` spend one of ``max_attempts``, with
  exponential backoff and full jitter between tries.
* The total ``deadline`` bounds every check, waits included.
* ``AuthFailed`` and anything unexpected end the check at once.
* Every request first takes a token of the source's pace (engine/pace.py), which a 429 cuts
  and answers raise again; a wait longer than a try may take hands the job back.
* ``SourceUnavailable`` is also reported to the circuit breaker; while it is open no request
  is sent and ``CircuitOpen`` hands the job back with no attempt spent.

Every retry, failover and rate limit is a log record with the username, masked proxy,
try number, HTTP status and exception type.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception

from storycheck_tui import logs
from storycheck_tui.config import RetrySettings
from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.engine.breaker import CIRCUIT_CLOSED, CircuitBreaker, log_transition
from storycheck_tui.engine.pace import SourcePace
from storycheck_tui.errors import (
    AuthFailed, BadResponse, CheckError, CircuitOpen, NoProxyAvailable, ProxyAuthRejected, ProxyFailed, RateLimited,
    SourceUnavailable, Unexpected,
)
from storycheck_tui.masking import scrub
from storycheck_tui.sources.base import Outcome, Route, StorySource
from storycheck_tui.states import JobState
from storycheck_tui.store.queue import Claimed, JobResult

#: how long one try waits for a paced proxy before the job is handed back to the queue
ACQUIRE_TIMEOUT = 15.0
#: a Retry-After this long through a proxy is a ban, not pacing: the proxy's health suffers
BAN_SECONDS = 600.0


@dataclass
class _Progress:
    job: Claimed
    deadline: float
    tries: int = 0
    carried: int = 0  # tries of earlier claims (an open circuit handed the job back), counted then
    spent: int = 0  # tries that count against max_attempts
    exclude: set[str] = field(default_factory=set)
    route: Route | None = None
    last_error: CheckError | None = None
    sent_at: float = 0.0  # when the last request took its token of the source's pace


class Checker:
    def __init__(self, source: StorySource, pool: ProxyPool, settings: RetrySettings, *,
                 stop: threading.Event | None = None, clock=time.monotonic, rng: random.Random | None = None,
                 on_send: Callable[[Claimed], None] | None = None, breaker: CircuitBreaker | None = None,
                 pace: SourcePace | None = None):
        self.pace = pace or SourcePace(clock=clock)
        self.on_send = on_send  # called once per check, as its first request goes out
        self.breaker = breaker or CircuitBreaker(clock=clock)
        # job id -> attempts spent when an open circuit handed it back: a profile whose own
        # answers are 5xx still fails after max_attempts, however often the circuit opens
        self._carried: dict[int, tuple[int, int]] = {}  # (spent, tries)
        self._carried_lock = threading.Lock()
        self.source = source
        self.pool = pool
        self.settings = settings
        self.stop_event = stop or threading.Event()
        self.clock = clock
        self.rng = rng or random.Random()

    # -- public -------------------------------------------------------------------------------

    def check(self, job: Claimed) -> JobResult:
        """Check one job; returns a result, or raises NoProxyAvailable / CircuitOpen / AuthFailed
        for the runner, which hands the job back. Such an error says in ``requests_sent`` how many
        requests this claim sent: they are counted as spent with the hand-back."""
        prog = _Progress(job=job, deadline=self.clock() + self.settings.deadline)
        if self._carried:  # tries spent before an open circuit handed this job back
            with self._carried_lock:
                prog.spent, prog.tries = self._carried.pop(job.id, (0, 0))
        prog.carried = prog.tries
        try:
            return self._check(prog)
        except (NoProxyAvailable, CircuitOpen, AuthFailed) as err:
            err.requests_sent = prog.tries - prog.carried
            raise

    def _check(self, prog: _Progress) -> JobResult:
        job = prog.job
        try:
            try:
                outcome = self._try_once(prog)  # most checks end here: no tenacity set-up for them
            except Exception as first:  # tenacity takes over, starting from this first try's error
                outcome = self._retrying(prog)(_replay(first, self._try_once), prog)
        except CircuitOpen:
            if prog.tries:
                with self._carried_lock:
                    self._carried[job.id] = (prog.spent, prog.tries)
            raise
        except (NoProxyAvailable, AuthFailed):
            raise
        except CheckError as err:
            return self._failed(prog, err)
        except Exception as exc:  # a bug: fail this job loudly, with the traceback
            err = Unexpected(f"{type(exc).__name__}: {scrub(str(exc))}", proxy=prog.route.label if prog.route else None)
            return self._failed(prog, err, tb=scrub(traceback.format_exc()))
        route = prog.route
        return JobResult(job=job, state=JobState.SUCCEEDED, outcome=outcome, proxy=route.label if route else None,
                         http_status=outcome.http_status, latency_ms=outcome.latency_ms, tries=prog.tries,
                         carried=prog.carried)

    def _retrying(self, prog: _Progress) -> Retrying:
        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, CheckError) and e.transient),
            stop=lambda rs: self._should_stop(prog),
            wait=lambda rs: self._wait(prog, rs),
            before_sleep=lambda rs: self._log_retry(prog, rs),
            sleep=self._sleep,
            reraise=True,
        )

    # -- one try ------------------------------------------------------------------------------

    def _try_once(self, prog: _Progress) -> Outcome:
        if not self.breaker.allow():
            raise CircuitOpen("the source is failing for many profiles: circuit open, check handed back")
        route = self._acquire(prog)
        self._take_pace(prog)  # after the route: a request never waits out a route's block holding a token
        first = prog.route is None
        prog.route = route
        if first and self.on_send is not None:
            self.on_send(prog.job)
        prog.tries += 1
        try:
            outcome = self.source.check(prog.job.username, route)
        except RateLimited as err:
            blocked, ip_limited = self.pool.rate_limited(route.key, err.retry_after, prog.sent_at,
                                                         key_limit=self.pace.overshot(prog.sent_at))
            if not ip_limited:  # a limit for the source's key: its pace is cut, not only the route's
                self.pace.limited(prog.sent_at, None, prog.job.username)
            prog.exclude.add(route.key)
            if route.url is not None and err.retry_after is not None and err.retry_after >= BAN_SECONDS:
                state = self.pool.failure(route.key, f"banned: rate limited for {err.retry_after:.0f} s")
                self._note(logging.WARNING, logs.PROXY_FAILOVER, prog, err,
                           f"{prog.job.username}: proxy {route.label} looks banned (Retry-After "
                           f"{err.retry_after:.0f} s); proxy is now {state}, failing over to another proxy")
                raise
            prog.last_error = err  # a ban above is the proxy's failure, not the profile's
            wait = ""
            details = None
            if err.retry_after is not None:
                wait = f", retry after {err.retry_after:.1f} s"
                if err.retry_after > blocked:  # the source's value is untrusted: capped, and said so
                    wait += f", capped at {blocked:.0f} s ([proxies] max_cooldown)"
                    details = {"retry_after_s": err.retry_after, "capped_s": blocked}
            self._note(logging.WARNING, logs.RATE_LIMITED, prog, err,
                       f"{prog.job.username}: rate limited via {route.label}{wait}", details=details)
            raise
        except ProxyFailed as err:
            if route.url is None and isinstance(err, ProxyAuthRejected):
                raise _direct_407(err) from err
            prog.last_error = err
            state = self.pool.failure(route.key, err.message, auth=isinstance(err, ProxyAuthRejected), url=route.url)
            prog.exclude.add(route.key)
            self._note(logging.WARNING, logs.PROXY_FAILOVER, prog, err,
                       f"{prog.job.username}: proxy {route.label} failed ({err.message}); proxy is now {state}, "
                       f"failing over to another proxy")
            raise
        except (SourceUnavailable, BadResponse) as err:
            prog.last_error = err
            prog.spent += 1
            if isinstance(err, SourceUnavailable):
                log_transition(self.breaker, self.breaker.failure(prog.job.username, err.message), prog.job.username)
            prog.exclude.add(route.key)  # prefer another route next time; the proxy's health is not at stake
            raise
        except CheckError:
            raise
        self.pool.success(route.key, outcome.latency_ms)
        self.pace.answered(self.clock() - prog.sent_at)
        if self.breaker.success(prog.job.username) is not None:  # a check let through as the probe
            log_transition(self.breaker, CIRCUIT_CLOSED, prog.job.username)
        return outcome

    def _take_pace(self, prog: _Progress) -> None:
        """Wait for a token of the source's pace; hand the job back rather than wait long."""
        waited = 0.0
        while True:
            wait = self.pace.reserve()
            if wait == 0.0:
                prog.sent_at = self.clock()
                return
            if self.clock() + wait >= prog.deadline and prog.last_error is not None \
                    and not isinstance(prog.last_error, ProxyFailed):
                raise prog.last_error  # the source kept failing this profile until its deadline
            if waited + wait > ACQUIRE_TIMEOUT or self.clock() + wait >= prog.deadline:
                raise NoProxyAvailable(f"the source's pace ({self.pace.rate:.1f}/s) has no room now")
            if self.stop_event.wait(wait):
                raise NoProxyAvailable("worker stopping")
            waited += wait

    def _acquire(self, prog: _Progress) -> Route:
        remaining = max(0.0, prog.deadline - self.clock())
        timeout = min(ACQUIRE_TIMEOUT, remaining)
        # Prefer a route this check has not failed on; when none is ready right now, take
        # whichever is ready first (cooling and blocked routes are never handed out).
        route = self.pool.acquire(exclude=frozenset(prog.exclude), timeout=0.0) if prog.exclude else None
        if route is None:
            # When every route is dead, disabled or being validated, only the validator or the
            # operator can bring one back: acquire() says so at once, and the job goes back.
            route = self.pool.acquire(timeout=timeout, wait_for_revival=False, stop=self.stop_event)
        if route is None:
            last = prog.last_error
            if last is not None and not isinstance(last, ProxyFailed) and self.clock() >= prog.deadline:
                # the source itself kept failing (or rate limiting) this profile until the
                # deadline: report that, or the job would start over with every claim forever
                raise last
            raise NoProxyAvailable("no usable proxy: all are cooling, dead, disabled or refused their credentials")
        return route

    # -- tenacity hooks -------------------------------------------------------------------------

    def _should_stop(self, prog: _Progress) -> bool:
        if self.stop_event.is_set():
            return True
        if prog.spent >= self.settings.max_attempts:
            return True
        return self.clock() >= prog.deadline

    def _wait(self, prog: _Progress, rs: RetryCallState) -> float:
        err = rs.outcome.exception() if rs.outcome else None
        if isinstance(err, (RateLimited, ProxyFailed)):
            return 0.0  # the pool paces the next route; no need to sleep here
        cap = min(self.settings.max_wait, self.settings.base_wait * (2 ** max(0, prog.spent - 1)))
        wait = self.rng.uniform(0, cap)  # full jitter
        return max(0.0, min(wait, prog.deadline - self.clock()))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop_event.wait(seconds)

    def _log_retry(self, prog: _Progress, rs: RetryCallState) -> None:
        err = rs.outcome.exception() if rs.outcome else None
        if not isinstance(err, (SourceUnavailable, BadResponse)):
            return  # rate limits and failovers were logged where they happened
        wait = rs.upcoming_sleep
        self._note(logging.WARNING, logs.RETRY_SCHEDULED, prog, err,
                   f"{prog.job.username}: {err.kind}: {err.message}; try {prog.tries} failed, "
                   f"retrying in {wait:.1f} s ({prog.spent}/{self.settings.max_attempts} attempts spent)",
                   details={"wait_s": round(wait, 4), "spent": prog.spent})

    # -- results ----------------------------------------------------------------------------------

    def _failed(self, prog: _Progress, err: CheckError, tb: str | None = None) -> JobResult:
        if self.stop_event.is_set() and err.transient:
            # shutting down: not the profile's fault; the runner hands it back to the queue
            raise NoProxyAvailable("worker stopping")
        return JobResult(job=prog.job, state=JobState.FAILED, error_kind=err.kind, error_message=scrub(err.message),
                         proxy=err.proxy or (prog.route.label if prog.route else None), http_status=err.status,
                         tries=prog.tries, carried=prog.carried, traceback=tb)

    def _note(self, level: int, event: str, prog: _Progress, err: CheckError, message: str,
              details: dict | None = None) -> None:
        extra = {"details": details} if details else {}
        logs.event(level, event, message, batch_id=prog.job.batch_id, job_id=prog.job.id,
                   username=prog.job.username, proxy=prog.route.label if prog.route else None,
                   attempt=prog.tries, status=err.status, error_type=type(err).__name__, **extra)


def _direct_407(err: ProxyAuthRejected) -> AuthFailed:
    """A 407 to a request sent direct: no proxy of ours refused anything; the source (or a proxy
    on this machine's network) wants credentials storycheck does not have. Retrying is
    pointless, like a 401: the batch pauses with the reason."""
    return AuthFailed(f"{err.message} with no proxy configured: the source, or a proxy on this machine's "
                      f"network, wants proxy credentials", status=err.status, proxy=err.proxy)


def _replay(first: Exception, try_once):
    """``try_once`` for tenacity, whose first call raises ``first`` (that try already ran)."""
    pending = [first]

    def attempt(prog: _Progress) -> Outcome:
        if pending:
            raise pending.pop()
        return try_once(prog)

    return attempt
