"""The source's pace (engine/pace.py): AIMD on a fake clock, then a rate-limited simulator
found by the engine with default settings."""

from __future__ import annotations

import dataclasses

from helpers import Engine, logsetup, sim_source, wait_for  # noqa: F401  (logsetup is a fixture)
from storycheck_tui.config import Settings, parse_settings
from storycheck_tui.engine.pace import DECREASE, DECREASE_FIRST, MIN_RATE, START_RATE, SourcePace, key_of
from storycheck_tui.sim import SimConfig, Simulator


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def drive(pace: SourcePace, clock: Clock, seconds: float) -> int:
    """Send as fast as the pace allows for ``seconds``, every request answered; returns how many."""
    end, sent = clock.t + seconds, 0
    while clock.t < end and sent < 20_000:
        wait = pace.reserve()
        if wait:
            clock.t += max(wait, 1e-6)  # past the float resolution of the clock
            continue
        sent += 1
        pace.answered()
    return sent


def test_slow_start_grows_fast_while_the_pace_holds_requests_back():
    clock = Clock()
    pace = SourcePace(clock=clock)
    assert pace.rate == START_RATE
    drive(pace, clock, 1.0)
    assert pace.rate > 10 * START_RATE  # a fast API is reached within a second or two


def test_the_pace_does_not_grow_when_something_else_holds_requests_back():
    clock = Clock()
    pace = SourcePace(clock=clock)
    for _ in range(50):  # two requests a second, far below the pace: never held back
        clock.t += 0.5
        assert pace.reserve() == 0.0
        pace.answered()
    assert pace.rate == START_RATE


def test_a_429_cuts_once_per_round_and_not_for_the_same_profile_again():
    clock = Clock()
    pace = SourcePace(start=40.0, clock=clock)
    sent_before = clock.t
    clock.t += 0.01
    assert pace.limited(sent_before, None, "a")
    assert pace.rate == 40.0 * DECREASE_FIRST  # the first cut ends slow start
    assert not pace.limited(sent_before, None, "b")  # sent at the old pace: cut already
    clock.t += 0.01
    assert not pace.limited(clock.t, None, "a")  # the same profile again says nothing new
    assert pace.limited(clock.t, None, "b") and pace.rate == 40.0 * DECREASE_FIRST * DECREASE
    view = pace.view()
    assert view.cuts == 2 and f"429 at {40.0 * DECREASE_FIRST:.1f}/s" in view.reason


def test_after_a_cut_the_pace_grows_back_additively():
    clock = Clock()
    pace = SourcePace(start=40.0, clock=clock)
    pace.limited(clock.t, None, "a")
    cut = pace.rate
    drive(pace, clock, 2.0)
    assert cut < pace.rate <= cut + 2 * 0.06 * 40.0  # ~5 % of the rate at the cut per second


def test_the_cap_and_the_floor_bound_it():
    clock = Clock()
    capped = SourcePace(cap=8.0, clock=clock)
    drive(capped, clock, 3.0)
    assert capped.rate == 8.0
    floor = SourcePace(start=1.0, clock=clock)
    for i in range(40):
        clock.t += 1
        floor.limited(clock.t, None, f"u{i}")
    assert floor.rate == MIN_RATE


def test_max_rate_and_a_proxy_rate_are_optional_caps_in_the_config():
    s = Settings()
    assert s.source.max_rate is None and s.proxies.rate is None  # default: found by the engine
    s = parse_settings('[source]\nurl = "http://x/{username}"\nmax_rate = 25\n[proxies]\nrate = 2.5\n')
    assert s.source.max_rate == 25.0 and s.proxies.rate == 2.5


def test_the_key_names_host_and_credentials_without_holding_them():
    a = key_of("https://api.example.net/v1?u={username}", {"x-access-key": "secret-1"})
    b = key_of("https://api.example.net/v1?u={username}", {"x-access-key": "secret-2"})
    assert a != b and a.startswith("api.example.net#") and "secret" not in a


def test_an_unknown_limit_is_found_with_default_settings(tmp_path, logsetup):
    """The simulator allows 20 requests/s (one identity: direct); nothing is configured but the
    source. Before, the engine sent 1 request/s per route by default: 160 profiles took minutes."""
    with Simulator(SimConfig(seed=8, rate=20.0, burst=5.0, retry_after=0.5)) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        names = [f"pace.user{i:03d}" for i in range(160)]
        with Engine(tmp_path, settings, names) as eng:
            batch = eng.done(timeout=40)  # 8 s at the limit
            assert batch.successful_checks == len(names)
            pace = eng.runner.snapshot().pace
            assert pace is not None and pace.cuts >= 1 and 5.0 <= pace.rate <= 40.0, pace
        stats = sim.stats()["total"]
        assert stats["rate_limited"] <= 0.15 * (stats["ok"] + stats["rate_limited"]), stats


def test_a_worker_that_starts_late_begins_at_its_share_of_the_pace_others_learned(tmp_path, logsetup):
    from helpers import ring_events, sqlite_store
    from storycheck_tui.engine.pace import PACE_CHANGED
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.store import workers as registry

    with Simulator(SimConfig(seed=9, rate=0)) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        store = sqlite_store(tmp_path)
        try:
            key = key_of(settings.source.url, settings.source.headers)
            for wid, pace in (("h:1:aaaaaa01", 30.0), ("h:2:aaaaaa02", 26.0)):  # two workers on the key
                registry.register_worker(store, wid, 4)
                registry.heartbeat(store, wid, checks=0, rate=0.0, lease_seconds=60, pace=pace, pace_key=key)
            registry.register_worker(store, "h:3:aaaaaa03", 4)  # another key: not counted
            registry.heartbeat(store, "h:3:aaaaaa03", checks=0, rate=0.0, lease_seconds=60, pace=99.0,
                               pace_key="elsewhere#0")
            runner = build_runner(store, settings).start()
            try:
                assert runner.pace.rate == (30.0 + 26.0) / 3
                said = ring_events(logsetup, PACE_CHANGED)
                assert said and "2 other workers on this key learned 56.0/s" in said[0].message
                wait_for(lambda: registry.learned_pace(store, key, fresh_within=30)[1] == 3, 10,
                         "this worker's heartbeat to carry its pace")
            finally:
                runner.stop(1.0)
        finally:
            store.close()
