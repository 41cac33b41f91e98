"""The built-in demo: the simulator, demo proxies (a few faulty) and ~500 demo profiles."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import tempfile
from dataclasses import dataclass
from typing import Iterator

from storycheck_tui.config import EngineSettings, ProxySettings, RetrySettings, Settings
from storycheck_tui.inputs.proxies import ProxySpec, parse_proxy_line

_FIRST = ["alex", "maria", "sam", "lena", "omar", "yuki", "noah", "ines", "leo", "zoe", "ravi", "mia",
          "tom", "ana", "kai", "eva", "ben", "lia", "max", "ida"]
_SECOND = ["travels", "cooks", "runs", "paints", "codes", "sings", "shoots", "reads", "rides", "dives"]


def demo_usernames(n: int = 500, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{rng.choice(_FIRST)}.{rng.choice(_SECOND)}{rng.randint(1, 999)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


@dataclass
class Demo:
    """A running simulator plus the settings and proxies that point at it."""

    sim: object
    settings: Settings
    proxies: list[ProxySpec]

    def stop(self) -> None:
        self.sim.stop()  # type: ignore[attr-defined]


def start_demo(*, proxies: int = 12, rate: float = 4.0, seed: int = 1) -> Demo:
    """Start the simulator with healthy, slow, flaky and dead proxy ports."""
    from storycheck_tui.sim import ProxyFault, SimConfig, Simulator
    from storycheck_tui.sources.presets import sim_settings

    faults = {0: ProxyFault(kind="slow", delay=0.4), 1: ProxyFault(kind="slow", delay=0.8),
              2: ProxyFault(kind="flaky", error_rate=0.3), 3: ProxyFault(kind="dead")}
    sim = Simulator(SimConfig(seed=seed, proxies=proxies, rate=rate, burst=rate, error_rate=0.02,
                              faults=faults)).start()
    specs = [parse_proxy_line(u) for u in sim.proxy_urls]
    settings = Settings(
        source=sim_settings(sim.api_url),
        retry=RetrySettings(max_attempts=4, base_wait=0.2, max_wait=5.0, deadline=60.0),
        proxies=ProxySettings(rate=rate * 0.9, burst=2.0, cooldown=3.0, max_cooldown=30.0, dead_after=3,
                              validate_every=5.0),
        engine=dataclasses.replace(EngineSettings(), workers=16, lease_seconds=30.0),
        path="demo",
    )
    return Demo(sim=sim, settings=settings, proxies=specs)


@dataclass
class DemoRun:
    """A started demo with its database, ready for a runner."""

    demo: Demo
    store: object  # storycheck_tui.store.db.Store
    batch_id: int
    where: str  # "a throwaway database" or the database's secret-free name
    profiles: int

    @property
    def hello(self) -> str:
        return (f"demo: the simulator at {self.demo.sim.api_url}, {len(self.demo.proxies)} proxies (2 slow, "  # type: ignore[attr-defined]
                f"1 flaky, 1 dead) and {self.profiles} profiles, in {self.where}")


@contextlib.contextmanager
def demo_run(db_url: str | None, profiles: int = 500, *, log_sink=None) -> Iterator[DemoRun]:
    """The simulator, its proxies and a demo batch in ``db_url`` (a throwaway database if None)."""
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    demo = start_demo()
    tmp = None if db_url else tempfile.TemporaryDirectory(prefix="storycheck-demo-")
    try:
        store = open_store(db_url or f"{tmp.name}/demo.db", pool_size=demo.settings.engine.workers + 6,
                           log_sink=log_sink)
        try:
            ops.add_proxies(store, demo.proxies)
            batch_id = ops.create_batch(store, "demo", demo_usernames(profiles))
            yield DemoRun(demo, store, batch_id, "a throwaway database" if tmp else store.display, profiles)
        finally:
            store.close()
    finally:
        demo.stop()
        if tmp:
            tmp.cleanup()
