"""The circuit breaker at the source (engine/breaker.py): its rules on a fake clock, then a
real outage of the simulator in the middle of a batch, with default settings."""

from __future__ import annotations

import dataclasses
import threading

from helpers import Engine, logsetup, ring_events, sim_source, wait_for  # noqa: F401  (logsetup is a fixture)
from storycheck_tui.config import Settings
from storycheck_tui.engine.breaker import CIRCUIT_CLOSED, CIRCUIT_OPEN, CLOSED, OPEN, PROBING, CircuitBreaker
from storycheck_tui.sim import SimConfig, Simulator


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_profile_whose_own_answers_are_5xx_never_opens_the_circuit():
    b = CircuitBreaker(clock=Clock())
    b.success("someone.else")
    for _ in range(50):
        assert b.failure("only.this.one", "HTTP 503") is None
    assert b.state == CLOSED and b.allow()


def test_a_low_error_rate_across_many_profiles_does_not_open_it():
    b = CircuitBreaker(clock=Clock())
    for i in range(400):
        if i % 20 == 0:  # 5 % of answers fail, each for another profile
            assert b.failure(f"u{i}", "HTTP 500") is None
        else:
            b.success(f"u{i}")
    assert b.state == CLOSED


def test_many_profiles_failing_open_it_then_probes_at_growing_intervals_close_it():
    clock = Clock()
    b = CircuitBreaker(clock=clock, first_probe=1.0, max_probe=8.0)
    b.success("known.good")
    clock.t += 20  # that answer is out of the window: only failures weigh now
    opened = [b.failure(f"u{i}", "HTTP 503") for i in range(5)]
    assert opened == [None] * 4 + [CIRCUIT_OPEN] and b.state == OPEN
    assert not b.allow() and b.wait() == 1.0 and b.probe_due() is None
    intervals = []
    for _ in range(4):  # each probe fails: the next one comes twice as late (up to max_probe)
        clock.t += b.wait()
        assert b.probe_due() == "known.good" and b.state == PROBING
        assert b.probe_due() is None and not b.allow()  # one probe at a time, no check meanwhile
        b.failure("known.good", "HTTP 503")
        intervals.append(b.wait())
    assert intervals == [2.0, 4.0, 8.0, 8.0]
    clock.t += b.wait()
    assert b.probe_due() == "known.good"
    assert b.success("known.good") == CIRCUIT_CLOSED and b.state == CLOSED and b.allow()


def test_a_source_that_never_answered_does_not_open_it():
    b = CircuitBreaker(clock=Clock())
    for i in range(20):
        assert b.failure(f"u{i}", "HTTP 503") is None
    assert b.state == CLOSED


def test_the_probe_asks_about_a_profile_the_source_answered_recently():
    clock = Clock()
    b = CircuitBreaker(clock=clock, first_probe=1.0)
    b.success("known.good")
    for i in range(8):
        b.failure(f"u{i}", "HTTP 503")
    assert b.state == OPEN and b.probe_due() is None and not b.allow()
    clock.t += 1.0
    assert b.probe_due() == "known.good" and b.state == PROBING
    assert not b.allow()  # no ordinary check goes through as a probe while one is known
    assert b.success("known.good") == CIRCUIT_CLOSED


def test_a_total_outage_mid_batch_fails_no_profile_and_the_batch_finishes_by_itself(tmp_path, logsetup):
    """Default settings (the sim's [source] only): every answer is 503 for 5 s in the middle of
    the batch. Before the breaker, the checks in flight spent their attempts and failed as
    source_unavailable (4 attempts and their backoff, at most 0.5 + 1 + 2 s, fit in the 5 s);
    now they go back to the queue, one probe at a time tests the source (probes 1 s and 3 s
    after the circuit opens fail, the one at 7 s passes), and the batch finishes by itself
    once it answers again."""
    with Simulator(SimConfig(seed=4, proxies=20, rate=0, latency=0.05)) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        names = [f"outage.user{i:03d}" for i in range(240)]
        with Engine(tmp_path, settings, names, proxies=sim.proxy_urls) as eng:
            wait_for(lambda: eng.batch().completed_profiles >= 40, 30, "the batch to get going")
            sim.update(error_rate=1.0)
            outage = threading.Timer(5.0, lambda: sim.update(error_rate=0.0))  # the scenario: 5 s down
            outage.start()
            try:
                wait_for(lambda: ring_events(logsetup, CIRCUIT_OPEN), 10, "the circuit to open")
                assert eng.runner.snapshot().circuit.state != CLOSED
                errors_at_open = sim.stats()["total"]["errors"]
                wait_for(lambda: not outage.is_alive(), 15, "the outage to end")
                sent_while_open = sim.stats()["total"]["errors"] - errors_at_open
                assert sent_while_open <= 20, f"{sent_while_open} requests sent while the circuit was open"
                batch = eng.done(timeout=90)
            finally:
                outage.cancel()
            failed = [(j.username, j.error_kind, j.error_message) for j in eng.jobs() if j.state == "failed"]
            assert batch.failed_checks == 0 and not failed, failed[:5]
            assert batch.successful_checks == len(names)
        assert ring_events(logsetup, CIRCUIT_CLOSED)
