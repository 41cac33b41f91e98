"""The simulator in its own process, so it never shares the GIL with the client under test.

Parent side: :class:`SimProcess` starts ``python -m benchmarks.simproc CONFIG_JSON``, reads the
URLs the child prints as one JSON line, and drives it over HTTP (``/_sim/stats``,
``/_sim/reset``, ``/_sim/config``). The child stops when its stdin closes (the parent
died or called :meth:`SimProcess.stop`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

from benchmarks.common import ROOT, child_env, sim_call


class SimProcess:
    def __init__(self, *, proxies: int = 8, rate: float = 0.0, burst: float | None = None,
                 error_rate: float = 0.0, latency: float = 0.0, retry_after: float = 1.0,
                 faults: dict[int, dict] | None = None, seed: int = 1, cpu: int | None = None,
                 story_every: float = 0.0, global_limit: bool = False) -> None:
        self.config = {"proxies": proxies, "rate": rate, "burst": rate if burst is None else burst,
                       "error_rate": error_rate, "latency": latency, "retry_after": retry_after,
                       "faults": {str(k): v for k, v in (faults or {}).items()}, "seed": seed,
                       "story_every": story_every, "global_limit": global_limit}
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.api_url = ""
        self.proxy_urls: list[str] = []
        self.health_url = ""

    def start(self) -> "SimProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.simproc", json.dumps(self.config)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=child_env(),
                                     text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the simulator process did not start")
        info = json.loads(line)
        self.api_url, self.proxy_urls, self.health_url = info["api_url"], info["proxy_urls"], info["health_url"]
        if self.cpu is not None:
            try:
                os.sched_setaffinity(self.proc.pid, {self.cpu})
            except OSError:
                pass
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stats(self) -> dict:
        """``{"total": {...}, "identities": {name: {requests, ok, rate_limited, errors, ...}}}``"""
        return sim_call(self.api_url, "/_sim/stats")

    def reset(self) -> None:
        sim_call(self.api_url, "/_sim/reset", {})

    def update(self, **fields: Any) -> None:
        sim_call(self.api_url, "/_sim/config", fields)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(10)
        except Exception:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "SimProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child(config_json: str) -> None:
    from storycheck_tui.sim import ProxyFault, SimConfig, Simulator

    cfg = json.loads(config_json)
    faults = {int(k): ProxyFault(**v) for k, v in cfg.pop("faults", {}).items()}
    sim = Simulator(SimConfig(**cfg, faults=faults)).start()
    print(json.dumps({"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "health_url": sim.health_url}),
          flush=True)
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    sim.stop()


if __name__ == "__main__":
    _child(sys.argv[1])
