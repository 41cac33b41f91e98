"""Section 7: monitoring. One worker checks a watch's round (story history and ``story.new``
events written in the transaction of every fenced finish) or the same profiles as a plain
batch, against the simulator with stories that change on its schedule."""

from __future__ import annotations

import os

from benchmarks.common import run_child
from benchmarks.report import Section, fmt
from benchmarks.simproc import SimProcess
from benchmarks.throughput import THREADS

STORY_EVERY = 5.0  # the simulator: each profile with stories posts one every 5 s, its oldest expires
TARGET = 100_000 / (15 * 60)  # a watch of 100,000 profiles every 15 minutes: 111 checks/s


def monitoring(quick: bool) -> Section:
    warmup, duration = (2.0, 4.0) if quick else (2.0, 8.0)
    reps = 1 if quick else 3
    proxies = 8
    pinned = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False
    s = Section("monitoring", "7. Monitoring")
    s.setup = (f"As section 1 (simulator without rate limit, {proxies} proxy ports, {THREADS} threads, "
               f"`storycheck run` wiring on a SQLite file{', pinned: simulator on core 1, client on core 0' if pinned else ''}), "
               f"with the simulator's stories changing (`story_every` = {STORY_EVERY:g} s). Plain batch: the profiles "
               f"as an ordinary batch. Watch round: the same profiles as a watch, checked as its first round, so "
               f"every fenced finish also writes the story history and one `story.new` event per story (no "
               f"webhook: delivery is not measured). Checks/s counted by the simulator over a {duration:g} s window "
               f"after {warmup:g} s; {reps} alternating repetition(s), median.")
    s.headers = ["batch", "checks/s (median)", "runs", "CPU us / check", "watch / plain", "events", "history rows"]
    runs: dict[str, list[dict]] = {"plain": [], "watch": []}
    with SimProcess(proxies=proxies, rate=0, story_every=STORY_EVERY, cpu=1 if pinned else None) as sim:
        base = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": THREADS, "warmup": warmup,
                "duration": duration, "profiles": int(3000 * (warmup + duration + 4)),
                "pacing": {"rate": 1e6, "burst": 1e6}}
        for _ in range(reps):
            for kind in ("plain", "watch"):
                runs[kind].append(run_child("enginerun:run", dict(base, watch=kind == "watch"),
                                            cpu=0 if pinned else None))

    def median(kind: str) -> dict:
        return sorted(runs[kind], key=lambda r: r["rate"])[len(runs[kind]) // 2]

    plain, watch = median("plain"), median("watch")
    ratio = watch["rate"] / plain["rate"] if plain["rate"] else float("nan")
    for kind, r in (("plain batch", plain), ("watch round", watch)):
        s.rows.append([kind, fmt(r["rate"]), ", ".join(fmt(x["rate"]) for x in runs[kind.split()[0]]),
                       fmt(r["cpu_us_per_check"]), f"**{ratio:.2f}**" if r is watch else "",
                       fmt(r["event"]) if "event" in r else "-", fmt(r["watch_story"]) if "watch_story" in r else "-"])
    s.headline = [f"a watch round at {fmt(watch['rate'])} checks/s with history and events on vs "
                  f"{fmt(plain['rate'])} as a plain batch = **{ratio:.2f}**; one worker sustains "
                  f"{watch['rate'] / TARGET:.0f}x a 100,000-profile watch every 15 minutes ({TARGET:.0f} checks/s)"]
    s.notes = [f"Events and history rows are counted at the end of the run (window, warm-up and the stop), "
               f"for the median watch run."]
    return s
