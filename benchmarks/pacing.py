"""Section 8: the engine finds an unknown limit per API key by itself (engine/pace.py).

The simulator allows L requests/s in all (one bucket for every proxy: a limit per key, not
per IP); two proxy ports; the engine runs with default settings (no ``rate`` anywhere), in one
process and in two and four processes sharing one SQLite file (each with its own batch), all
started together. Checks/s and 429s are the simulator's own counts over the window, for all
processes together; each process's share is its own count of checks in the window, and
Jain's index (sum x)^2 / (n sum x^2) sums them up (1: equal shares; 1/n: one process has all).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from benchmarks.common import run_child
from benchmarks.report import Section, fmt, pct
from benchmarks.simproc import SimProcess

#: the unknown limit, requests/s for the key
LIMIT = 200.0
PROXIES = 2
THREADS = 16


def pacing(quick: bool) -> Section:
    warmup, duration = (5.0, 8.0) if quick else (8.0, 20.0)
    s = Section("pacing", "8. Pacing: an unknown limit per key")
    s.setup = (f"The simulator allows L = {LIMIT:g} requests/s in all (one token bucket for every identity, burst 5, "
               f"`Retry-After: 1` on 429), {PROXIES} proxy ports, 10 ms latency. The engine with default settings "
               f"(no `[source] max_rate`, no `[proxies] rate`), {THREADS} threads a process; one process, then two and "
               f"four processes on one SQLite file started together, each with its own batch. The simulator's counts "
               f"of answers and 429s over a {duration:g} s window after {warmup:g} s of warm-up, all processes "
               f"together; each process's checks/s is its own count over its window.")
    s.headers = ["engine processes", "checks/s", "achieved / L", "requests", "429 share",
                 "each process (checks/s)", "Jain's index"]
    with SimProcess(proxies=PROXIES, rate=LIMIT, burst=5.0, latency=0.01, global_limit=True) as sim:
        for procs in (1, 2, 4):
            with tempfile.TemporaryDirectory(prefix="storycheck-bench-pace-") as tmp:
                base = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": THREADS, "warmup": warmup,
                        "duration": duration, "profiles": int(LIMIT * (warmup + duration + 5)),
                        "db": str(Path(tmp) / "pace.db")}
                results: list[dict] = []
                errors: list[BaseException] = []

                def one(index: int) -> None:
                    try:
                        results.append(run_child("enginerun:run", base))
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        errors.append(exc)

                threads = [threading.Thread(target=one, args=(i,)) for i in range(procs)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if errors:
                    raise errors[0]
                r = results[0]  # the simulator's totals: the same for all
                each = sorted(x["client_rate"] for x in results)
                jain = sum(each) ** 2 / (len(each) * sum(x * x for x in each)) if any(each) else 0.0
                s.rows.append([str(procs), fmt(r["rate"], 1), f"**{r['rate'] / LIMIT:.3f}**", fmt(r["requests"]),
                               pct(r["share_429"], 2), " / ".join(fmt(x, 1) for x in each), f"{jain:.3f}"])
                s.headline.append(f"{procs} process{'es' if procs > 1 else ''}: {r['rate'] / LIMIT:.3f} of the "
                                  f"unknown limit with {pct(r['share_429'], 2)} 429s (target >= 0.9, <= 3 %)"
                                  + (f", shares {each[0] / max(each):.2f} min/max, Jain {jain:.3f}" if procs > 1 else ""))
    s.notes = ["Each process starts at 5 requests/s (or at its share of the pace the running workers on the key "
               "learned), grows in slow start until the first 429 (which cuts it to 90 % of the rate answered "
               "lately), then cuts 10 % per 429 and grows back by 5 % of the pace at the cut per second, 1 % within "
               "5 % of the rate that met the last 429 (README, \"The pace\").",
               "Processes on one key each run the same rule and share it through the database: at each heartbeat "
               "a process held back by its pace moves three quarters of the way to the mean pace of the key's processes, and all grow "
               "by the same step; the sum is what the simulator sees."]
    return s
