"""The source's pace (engine/pace.py): AIMD on a fake clock, then a rate-limited simulator
found by the engine with default settings."""

from __future__ import annotations

import dataclasses

from helpers import Engine, logsetup, sim_source, wait_for  # noqa: F401  (logsetup is a fixture)
from storycheck_tui.config import Settings, parse_settings
from storycheck_tui.engine.pace import (
    DECREASE, DECREASE_FIRST, MIN_RATE, SLOW_START_MAX_STEP, SLOW_START_STEP, SLOW_START_WAIT, START_RATE, SourcePace,
    key_of,
)
from storycheck_tui.sim import SimConfig, Simulator


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def drive(pace: SourcePace, clock: Clock, seconds: float, latency: float | None = None) -> int:
    """Send as fast as the pace allows for ``seconds``, every request answered (``latency``
    seconds after its token, as the checker says; None: not said); returns how many."""
    end, sent = clock.t + seconds, 0
    while clock.t < end and sent < 20_000:
        wait = pace.reserve()
        if wait:
            clock.t += max(wait, 1e-6)  # past the float resolution of the clock
            continue
        sent += 1
        pace.answered(latency)
    return sent


def test_slow_start_grows_fast_while_the_pace_holds_requests_back():
    clock = Clock()
    pace = SourcePace(clock=clock)
    assert pace.rate == START_RATE
    drive(pace, clock, 1.0)
    assert pace.rate > 10 * START_RATE  # a fast API is reached within a second or two


def test_in_slow_start_each_answer_adds_one_request_in_flight():
    """1/latency requests/s per answer, between the floor (a slow API) and the cap (a source a few
    ms away). Before, every answer added 3/s: 8 threads against an API answering in 20 ms took
    1.4 s to reach its 360/s, a sixth of a 2,000-profile run."""
    for latency, step in ((0.05, 20.0), (0.04, 25.0), (0.001, SLOW_START_MAX_STEP), (2.0, SLOW_START_STEP)):
        clock = Clock()
        pace = SourcePace(clock=clock)
        assert pace.reserve() == 0.0 and pace.reserve() > 0.0  # the pace holds the second request back
        pace.answered(latency)
        assert pace.rate == START_RATE + step, latency
    clock = Clock()
    pace = SourcePace(clock=clock)
    drive(pace, clock, 0.5, latency=0.02)
    assert pace.rate > 8 / 0.02  # 8 threads' worth within half a second (3/s per answer: 17/s)


def test_in_slow_start_a_request_held_back_asks_again_soon():
    """At 5/s a held-back request was told to wait 0.2 s, and 8 threads slept through the answers
    that raised the pace twentyfold. Out of slow start the pace changes slowly: the full wait."""
    clock = Clock()
    pace = SourcePace(clock=clock)
    assert pace.reserve() == 0.0
    assert 0.0 < pace.reserve() <= SLOW_START_WAIT
    pace.limited(clock.t, None, "a")  # the first 429 ends slow start
    clock.t += 0.01
    assert pace.reserve() > 0.1  # at 3.5/s, the next token is 0.28 s away


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


def test_the_first_429_cuts_to_what_the_source_answered_lately():
    """Slow start overshoots a slow limit before its first 429 comes back: cutting by 30 % left
    the pace above the limit, and a short batch met a 429 in every round of cuts."""
    clock = Clock()
    pace = SourcePace(start=60.0, clock=clock)
    for _ in range(20):  # answered at 20/s for a second
        clock.t += 0.05
        assert pace.reserve() == 0.0
        pace.answered()
    assert pace.limited(clock.t, None, "a")
    assert 0.8 * 20 * DECREASE <= pace.rate <= 1.2 * 20 * DECREASE  # not 60 * DECREASE_FIRST = 42


def test_after_a_cut_the_pace_grows_back_additively():
    clock = Clock()
    pace = SourcePace(start=40.0, clock=clock)
    pace.limited(clock.t, None, "a")
    cut = pace.rate
    drive(pace, clock, 2.0)
    assert cut < pace.rate <= cut + 2 * 0.06 * 40.0  # ~5 % of the rate at the cut per second


def test_clean_past_the_rate_that_met_the_last_429_the_pace_grows_faster():
    """One 429 (a proxy's IP, a moment of congestion) far below what the key allows: before, the
    pace then grew by 5 % of the rate at the cut per second, for a minute or more. Past the
    plateau with no 429 the step doubles every PROBE_DOUBLING seconds; a 429 ends it."""
    clock = Clock()
    pace = SourcePace(start=40.0, clock=clock)
    pace.limited(clock.t, None, "a")  # 40 -> 28, the plateau is 38-42
    drive(pace, clock, 25.0)  # additive only: about 48/s by now
    assert pace.rate > 80.0, pace.rate
    assert "growing faster" in pace.view().reason
    pace.limited(clock.t, None, "b")
    cut = pace.rate
    drive(pace, clock, 2.0)
    assert pace.rate <= cut * 1.01 + 2 * 0.06 * cut  # additive again (1-5 % of the cut a second)


def test_only_a_learned_pace_that_holds_requests_back_is_told_to_other_workers():
    clock = Clock()
    pace = SourcePace(clock=clock)
    drive(pace, clock, 0.5)
    assert pace.published() is None  # slow start: nothing learned yet (before, its start pace was)
    pace.limited(clock.t, None, "a")
    drive(pace, clock, 0.5)
    assert pace.published() == pace.rate
    clock.t += 5.0  # nothing sent for a while: its pace holds nothing back and says nothing of the key
    assert pace.published() is None


def test_workers_on_one_key_move_to_the_mean_and_grow_by_the_same_steps():
    clock = Clock()
    fast, slow = SourcePace(start=100.0, clock=clock), SourcePace(start=20.0, clock=clock)
    for p in (fast, slow):
        p.limited(clock.t, None, "a")
    for _ in range(4):  # four heartbeats, each reading the other's pace
        drive(fast, clock, 0.2)
        drive(slow, clock, 0.2)
        a, b = fast.rate, slow.rate
        fast.share(b, 1)
        slow.share(a, 1)
    assert abs(fast.rate - slow.rate) < 0.1 * fast.rate  # from five times apart to within a tenth
    assert 0.9 * 84.0 <= fast.rate + slow.rate <= 1.1 * 84.0  # the sum (the key's pace) stays
    before = fast.rate - slow.rate
    drive(fast, clock, 1.0)
    drive(slow, clock, 1.0)
    assert abs((fast.rate - slow.rate) - before) < 0.5  # equal additive steps: the gap stays closed
    clock.t += 5.0
    assert not fast.share(500.0, 1)  # not held back by its pace: it takes what it needs, no share


def test_the_pace_lingers_below_the_rate_that_met_the_last_429():
    """Growing back at 5 % per second, a pace met its limit every two seconds: a short batch
    against a slow limit (20/s) had a 429 in every 40 requests."""
    clock = Clock()
    pace = SourcePace(start=40.0, clock=clock)
    pace.limited(clock.t, None, "a")  # met at 40/s
    while pace.rate < 38.0:
        drive(pace, clock, 0.5)
    at = pace.rate
    drive(pace, clock, 2.0)
    assert pace.rate - at <= 2 * 0.015 * 40  # 1 % of 40/s per second here, not 5 %
    while pace.rate < 42.5:
        drive(pace, clock, 0.5)
    at = pace.rate
    drive(pace, clock, 1.0)
    assert pace.rate - at >= 0.8 * 0.05 * 40  # past it: probing at the full step again


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


def test_a_cleared_or_raised_pace_cap_gives_back_the_pace_learned_before_it():
    """The pace-cap knob cuts the rate at once; cleared, the pace is the engine's own again at
    once (it crawled up from the cap by 5 % of the cap a second: 2/s cleared after 70/s was
    learned was 8/s a minute later); raised, it goes as far as the new cap allows; a 429 under
    the cap is news of the limit, and what was learned before the cap is forgotten."""
    clock = Clock()
    pace = SourcePace(start=100.0, clock=clock)
    pace.limited(clock.t, None, "a")  # slow start over: 70/s learned
    drive(pace, clock, 1.0)
    learned = pace.rate
    assert learned > 70.0
    pace.set_cap(2.0, "pace cap 2/s set by an operator")
    drive(pace, clock, 5.0)
    assert pace.rate == 2.0
    pace.set_cap(30.0, "pace cap 30/s set by an operator")
    assert pace.rate == 30.0
    pace.set_cap(None, "pace cap cleared by an operator")
    assert pace.rate == learned and "back from 30.0/s to" in pace.view().reason
    drive(pace, clock, 2.0)
    assert learned < pace.rate <= learned + 2 * 0.06 * 70.0  # grows by the steps learned before the cap
    pace.set_cap(2.0, "pace cap 2/s set by an operator")
    clock.t += 1
    pace.limited(clock.t, None, "b")  # 429 at 2/s: the limit is lower than anything learned before
    pace.set_cap(None, "pace cap cleared by an operator")
    assert pace.rate == 2.0 * DECREASE


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
    source. Before, the engine sent 1 request/s per route by default: 100 profiles took minutes."""
    with Simulator(SimConfig(seed=8, rate=20.0, burst=5.0, retry_after=0.5)) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        names = [f"pace.user{i:03d}" for i in range(100)]
        with Engine(tmp_path, settings, names) as eng:
            batch = eng.done(timeout=40)  # 5 s at the limit
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
                assert runner.pace.published() is None  # it has no batch: its pace holds nothing back
            finally:
                runner.stop(1.0)
        finally:
            store.close()


def test_workers_started_together_on_one_key_get_fair_shares(tmp_path):
    """Three `storycheck worker` processes with default settings, one key whose limit the
    simulator holds for all of them (one bucket, two proxy ports), one batch made once all three
    are up. Before, the first worker's heartbeat carried its starting pace, the others began at
    a share of it out of slow start and crawled up from 2.5/s: one of four got 37 of 1,500.

    The bound, each worker at least half its fair share (a third): the workers leave slow start
    at paces up to a few times apart (they start a few hundred ms apart, slow start grows about
    fourfold in half a second); each heartbeat (2 s by default) cuts the gap to a quarter, so over a
    batch of about three seconds the first seconds stay uneven. Without the fix one got 0.4."""
    import os
    import subprocess
    import sys

    from storycheck_tui.masking import proxy_label
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store
    from storycheck_tui.store.models import Worker

    n, limit, profiles = 3, 300.0, 900
    with Simulator(SimConfig(seed=12, proxies=2, rate=limit, burst=5.0, latency=0.01, global_limit=True)) as sim:
        db = str(tmp_path / "fair.db")
        store = open_store(db)
        try:
            ops.add_proxies(store, [type("Spec", (), {"url": u, "label": proxy_label(u)}) for u in sim.proxy_urls])
            config = tmp_path / "worker.toml"
            config.write_text(sim.config_snippet())
            env = {**os.environ, "STORYCHECK_LOG_DIR": str(tmp_path / "logs"), "STORYCHECK_DB": ""}
            procs = [subprocess.Popen([sys.executable, "-m", "storycheck_tui", "worker", "--db", db, "--config",
                                       str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                     for _ in range(n)]
            try:
                wait_for(lambda: Worker.select().count() == n, 30, "the workers to register")
                batch_id = ops.create_batch(store, "fair", [f"fair{i:04d}" for i in range(profiles)])
                wait_for(lambda: ops.get_batch(store, batch_id).completed == profiles, 30, "the batch to finish")
                wait_for(lambda: sum(w.checks for w in Worker.select()) == profiles, 10, "the last heartbeats")
            finally:
                for p in procs:
                    p.terminate()
                errs = [p.communicate(timeout=20)[1].decode()[-2000:] for p in procs]
            assert [p.returncode for p in procs] == [0] * n, errs
            checks = sorted(w.checks for w in Worker.select())
            assert sum(checks) == profiles, checks
            assert checks[0] >= 0.5 * profiles / n, f"shares of {profiles} checks: {checks}"
        finally:
            store.close()


# -- per-proxy pacing: a limit per IP ------------------------------------------------------

def test_a_route_without_a_rate_learns_its_ips_limit_from_the_429s_blamed_on_it():
    import math

    from storycheck_tui.engine.pacing import TokenBucket, ip_limited

    clock = Clock()
    limited, fine = TokenBucket(math.inf, 2.0, clock=clock), TokenBucket(math.inf, 2.0, clock=clock)
    for _ in range(20):  # both send 20/s for a second; only one is answered 429, and not at first
        clock.t += 0.05
        for b in (limited, fine):
            assert b.reserve() == 0.0  # no pacing until a 429 is blamed on the route
            b.recover()
    assert limited.rate == math.inf
    limited.limited()
    assert not ip_limited(limited, [fine])  # one 429 is not evidence enough
    limited.limited()
    assert ip_limited(limited, [fine]) and not ip_limited(fine, [limited])
    rate = limited.learn_cut(clock.t - 0.01)
    assert 0.5 * 20 * DECREASE_FIRST <= rate <= 2 * 20 * DECREASE_FIRST  # from what it was sending
    assert limited.learn_cut(clock.t - 0.01) == rate  # sent before the cut: cut already
    clock.t += 0.01
    assert limited.learn_cut(clock.t) == rate * DECREASE
    fine.limited()
    fine.limited()
    assert not ip_limited(fine, [limited])  # 2 of 42 against 2 of 42: both alike, the key's limit


def test_two_429s_a_moment_apart_are_evidence_enough():
    """The decayed count of a route's 429s: the second 429 half a second after the first finds
    the first at 0.93. Before, the bar was 2.0: a route met twice in slow start stayed unpaced,
    and its 429s kept cutting the source's pace (the engine test below failed in one run of
    four to ten)."""
    import math

    from storycheck_tui.engine.pacing import TokenBucket, ip_limited

    clock = Clock()
    limited, fine = TokenBucket(math.inf, 2.0, clock=clock), TokenBucket(math.inf, 2.0, clock=clock)
    for _ in range(20):
        clock.t += 0.05
        for b in (limited, fine):
            b.reserve()
            b.recover()
    limited.limited()
    assert not ip_limited(limited, [fine])
    clock.t += 0.5
    limited.limited()
    assert ip_limited(limited, [fine])


def test_a_proxy_whose_ip_is_limited_is_paced_and_does_not_hold_back_the_others(tmp_path, logsetup):
    """Three proxy ports, the first one's IP allowed 5 requests/s, no other limit; default
    settings. Before, every route went unpaced: proxy 0 kept meeting its limit and each of its
    429s cut the source's pace (5-6 cuts in 200 profiles, the pace under 45/s for all three).
    240 profiles, about 4 s: the 429s of slow start's burst blame no route, so proxy 0 is told
    apart at a 429 after slow start's cut and its Retry-After. A batch of 120 ended once, in a
    full suite run, with all three routes unpaced: most likely before proxy 0 met that 429."""
    import math

    from storycheck_tui.masking import proxy_label

    with Simulator(SimConfig(seed=13, proxies=3, rate=0, burst=5.0, latency=0.01, proxy_rates={0: 5.0})) as sim:
        settings = dataclasses.replace(Settings(), source=sim_source(sim), path="test")
        names = [f"ip.user{i:03d}" for i in range(240)]
        with Engine(tmp_path, settings, names, proxies=sim.proxy_urls) as eng:
            batch = eng.done(timeout=40)
            assert batch.successful_checks == len(names)
            snap = eng.runner.snapshot()
            rates = {v.label: v.rate for v in snap.proxies}
            first = rates[proxy_label(sim.proxy_urls[0])]
            assert 1.0 <= first <= 15.0, rates  # paced near its IP's limit (5/s, burst 5)
            assert sorted(rates.values()).count(math.inf) == 2, rates  # the others are not paced
            # only the 429s that came before the route's were told apart may have cut the source's pace
            assert snap.pace is not None and snap.pace.cuts <= 3, snap.pace
        stats = sim.stats()["identities"]
        assert stats["proxy-1"]["rate_limited"] == stats["proxy-2"]["rate_limited"] == 0, stats


def test_slow_start_grows_only_while_the_pace_holds_requests_back_now():
    """Past what the threads can send, slow start stops growing within 50 ms: 8 threads against a
    20 ms API without a limit left the pace at 17,000/s (it grew for a second after the threads
    were the limit), a pace that says nothing of the key."""
    clock = Clock()
    pace = SourcePace(clock=clock)
    assert pace.reserve() == 0.0 and pace.reserve() > 0.0  # held back now
    clock.t += 0.06
    before = pace.rate
    pace.answered(0.02)
    assert pace.rate == before  # the hold-back was 60 ms ago: the threads are the limit
    clock.t += 0.2  # a token's worth at 5/s
    assert pace.reserve() == 0.0 and pace.reserve() > 0.0  # held back now
    pace.answered(0.02)
    assert pace.rate == before + SLOW_START_MAX_STEP


def test_only_the_requests_before_slow_starts_cut_count_as_its_overshoot():
    """Their 429s are the key's (see the proxy pool's test of the burst that ends slow start);
    a worker that began at a pace others learned had no slow start: its 429s may blame a proxy."""
    clock = Clock()
    pace = SourcePace(clock=clock)
    assert pace.overshot(clock.t)
    sent = clock.t
    clock.t += 0.01
    pace.limited(sent, None, "a")  # ends slow start
    assert pace.overshot(sent) and not pace.overshot(clock.t)
    late = SourcePace(clock=clock)
    late.adopt(40.0, "learned")
    assert not late.overshot(clock.t)
