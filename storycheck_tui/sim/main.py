"""`storycheck sim`: run the simulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Iterator, TextIO

from .app import ProxyFault, SimConfig, Simulator


def read_profiles(path: str) -> list[str]:
    """One username a line; blank lines and ``#`` comments are skipped."""
    names = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            name = line.split("#", 1)[0].strip()
            if name:
                names.append(name)
    return names


def run_sim_command(
    port: int | argparse.Namespace = 0,
    proxies: int = 0,
    seed: int = 1,
    profiles_file: str | None = None,
    host: str = "127.0.0.1",
    rate: float = 5.0,
    error_rate: float = 0.0,
    *,
    burst: float | None = None,
    api_key: str | None = None,
    latency: float = 0.0,
    timeout_rate: float = 0.0,
    malformed_rate: float = 0.0,
    story_every: float = 0.0,
    faults: dict[int, ProxyFault | str] | None = None,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Start a Simulator, print how to reach it, block until stopped. Returns the exit code.

    ``stop_event`` (tests) stops it like a signal would. An argparse Namespace may be passed
    instead of keywords; its attributes use the same names (``profiles`` also accepted).
    """
    if isinstance(port, argparse.Namespace):
        return run_sim_command(**_from_namespace(port), out=out, stop_event=stop_event)
    out = out or sys.stdout
    profiles = None
    if profiles_file:
        try:
            profiles = read_profiles(profiles_file)
        except (OSError, UnicodeDecodeError) as err:
            print(f"storycheck sim: cannot read profiles file {profiles_file}: {err}", file=sys.stderr)
            return 2
    config = SimConfig(
        seed=seed, proxies=proxies, port=port, host=host, rate=rate,
        burst=rate if burst is None else burst, error_rate=error_rate, api_key=api_key,
        latency=latency, timeout_rate=timeout_rate, malformed_rate=malformed_rate,
        story_every=story_every, profiles=profiles, faults=dict(faults or {}),
    )
    try:
        sim = Simulator(config).start()
    except OSError as err:
        print(f"storycheck sim: cannot listen on {host}:{port}: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"storycheck sim: {err}", file=sys.stderr)
        return 2
    stop = stop_event or threading.Event()
    try:
        with _stop_signals(stop) as ctrl_c:  # before the banner: a Ctrl-C right after it is not lost
            _print_banner(sim, out, profiles)
            while not stop.wait(0.5):
                pass
        interrupted = ctrl_c.is_set()
    finally:
        sim.stop()
    print("storycheck sim: stopped", file=out, flush=True)
    return 130 if interrupted else 0


def _from_namespace(ns: argparse.Namespace) -> dict[str, Any]:
    names = ("port", "proxies", "seed", "host", "rate", "error_rate", "burst", "api_key",
             "latency", "timeout_rate", "malformed_rate", "story_every")
    kwargs = {n: getattr(ns, n) for n in names if getattr(ns, n, None) is not None}
    profiles = getattr(ns, "profiles_file", None) or getattr(ns, "profiles", None)
    if profiles is not None:
        kwargs["profiles_file"] = str(profiles)
    return kwargs


def _print_banner(sim: Simulator, out: TextIO, profiles: list[str] | None) -> None:
    cfg = sim.config
    world = f"{len(profiles)} listed profiles" if profiles is not None else "any username"
    lines = [
        f"storycheck sim: story API on {sim.api_url} (seed {cfg.seed}, {world})",
        f"  rate limit: {cfg.rate:g} req/s per identity, burst {cfg.burst:g}; "
        f"error rate {cfg.error_rate:g}",
        f"  stories:    {sim.stories_url_template}",
        f"  health:     {sim.health_url}",
        f"  stats:      {sim.api_url}/_sim/stats",
        f"proxies ({len(sim.proxy_urls)}):",
        *(f"  {url}" for url in sim.proxy_urls),
        "",
        "# storycheck config for this simulator:",
        sim.config_snippet().rstrip("\n"),
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), file=out, flush=True)


@contextlib.contextmanager
def _stop_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``; the event yielded says it was Ctrl-C (the
    command then exits 130, as ``run`` does). Handlers of their own, as ``run`` has: a
    SIGINT ignored by the parent (a job started with ``&`` in a script) still stops the sim.
    Installed in the main thread only; the previous handlers come back afterwards."""
    ctrl_c = threading.Event()

    def on_int(*_: object) -> None:
        ctrl_c.set()
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield ctrl_c
        return
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_int),
                signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: stop.set())}
    try:
        yield ctrl_c
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
