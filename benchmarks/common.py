"""Helpers shared by the benchmark sections: child processes, /proc readings, windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def usernames(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a process in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_child(func: str, params: dict, timeout: float = 300.0, cpu: int | None = None) -> dict:
    """Run ``benchmarks.<module>:<function>(params)`` in a fresh interpreter; return its dict.

    A fresh process per measurement: no logging handlers, threads or GIL contention left
    over from the previous one, and a peak RSS that belongs to this measurement alone.
    ``cpu``: pin the process (and its threads) to that core.
    """
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.run([sys.executable, "-m", "benchmarks.child", func, json.dumps(params)],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pin)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{func} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def sim_call(api_url: str, path: str, body: dict | None = None) -> dict:
    """GET a simulator control path, or POST ``body`` to it (as JSON: the simulator takes
    control calls in no other content type)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api_url + path, data=data, method="GET" if body is None else "POST",
                                 headers={} if body is None else {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def thread_cpu_seconds(roles: Callable[[str], str]) -> dict[str, float]:
    """User + system CPU seconds of this process's threads, summed by ``roles(thread name)``
    (threads that ended are not counted)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        role = roles(names.get(int(tid), ""))
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def measure_window(read: Callable[[], tuple[int, int]], p: dict, *, wait_first: bool = True,
                   threads: Callable[[], dict[str, float]] | None = None) -> dict:
    """Checks per second over a steady window, counted by the simulator and by the client.

    Sleeps ``warmup`` seconds, resets the simulator's counters, reads ``read()`` (checked,
    failed so far), sleeps ``duration`` seconds and reads both again. The simulator's
    counters say how many requests were made, answered, and answered 429 in the window.
    ``threads`` (e.g. :func:`thread_cpu_seconds`): CPU seconds by thread role, read at both
    ends of the window, reported as ``thread_cpu_us_per_check``.
    """
    time.sleep(p["warmup"])
    sim_call(p["api_url"], "/_sim/reset", {})
    cpu0 = cpu_seconds()
    by_thread0 = threads() if threads else {}
    (ok0, bad0), t0 = read(), time.monotonic()
    time.sleep(p["duration"])
    (ok1, bad1), t1 = read(), time.monotonic()
    cpu1 = cpu_seconds()
    by_thread1 = threads() if threads else {}
    stats = sim_call(p["api_url"], "/_sim/stats")["total"]
    seconds = t1 - t0
    # The rate is the simulator's count of answers that check a profile (200/403/404): exact at
    # both ends of the window, where the engine's own counters move in group-commit steps.
    return {"rate": stats["ok"] / seconds, "client_rate": (ok1 - ok0) / seconds, "checked": ok1 - ok0, "failed": bad1 - bad0, "seconds": seconds,
            "requests": stats["requests"], "rate_limited": stats["rate_limited"], "errors": stats["errors"],
            "share_429": stats["rate_limited"] / stats["requests"] if stats["requests"] else 0.0,
            "cpu_share": (cpu1 - cpu0) / seconds,
            "cpu_us_per_check": 1e6 * (cpu1 - cpu0) / stats["ok"] if stats["ok"] else float("nan"),
            "thread_cpu_us_per_check": {k: 1e6 * (v - by_thread0.get(k, 0.0)) / stats["ok"]
                                        for k, v in by_thread1.items()} if stats["ok"] else {}}
