"""Sections 1-3: engine overhead, the rate-limit ceiling, and faults, against the simulator."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, child_env, run_child, usernames
from benchmarks.report import Section, fmt, pct
from benchmarks.simproc import SimProcess

THREADS = 16  # the engine's default [engine] workers; every client gets the same concurrency

# Sections 2 and 3: P proxies, each allowed R requests/s (burst 2) by the simulator.
P, R, SIM_BURST = 10, 20.0, 2.0
#: [proxies] rate for the engine, as a share of R (see the note in section 2)
PACE = 0.98
FAULTS = {0: {"kind": "dead"}, 1: {"kind": "dead"}, 2: {"kind": "slow", "delay": 0.5}}


def _pacing(share: float) -> dict:
    """[proxies] for the engine: rate = share x R, burst left at its default (2)."""
    return {"rate": share * R}


def _window(quick: bool) -> tuple[float, float]:
    return (2.0, 5.0) if quick else (3.0, 10.0)


def overhead(quick: bool) -> Section:
    """1. Engine vs a bare threaded httpx loop, same concurrency, no rate limit, no database."""
    warmup, duration = (2.0, 4.0) if quick else (2.0, 8.0)
    reps = 1 if quick else 3
    proxies = 8
    s = Section("overhead", "1. Engine overhead")
    s.setup = (f"Simulator without rate limit, {proxies} proxy ports, no added latency (so both clients are "
               f"CPU-bound: the worst case for overhead). {THREADS} threads each. Bare loop: round-robin over one "
               f"`httpx.Client` per proxy, GET + `json()`, a counter; no database, pacing, retry or logging. "
               f"Engine: `storycheck run` wiring (SQLite file, log file at its default level INFO: one record per "
               f"check, group commit every 0.25 s); `--debug` adds a DEBUG record per check started. "
               f"`[proxies] rate` set out of the way. Checks/s counted by the simulator over a {duration:g} s "
               f"window after {warmup:g} s of warm-up. Pinned: the simulator on core 1, the client on core 0 "
               f"(each gets one core; least disturbed by other load); {reps} alternating repetition(s), median. "
               f"Unpinned (full run only): the scheduler's choice, one repetition.")
    runs: dict[tuple[str, bool], list[dict]] = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    pinned_modes = ([True] if quick else [True, False]) if cores >= 2 else [False]
    for pinned in pinned_modes:
        with SimProcess(proxies=proxies, rate=0, cpu=1 if pinned else None) as sim:
            base = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": THREADS, "warmup": warmup,
                    "duration": duration, "profiles": int(3000 * (warmup + duration + 4))}
            for _ in range(reps if pinned or len(pinned_modes) == 1 else 1):
                cpu = 0 if pinned else None
                runs.setdefault(("bare", pinned), []).append(run_child("clients:bare", base, cpu=cpu))
                runs.setdefault(("engine", pinned), []).append(run_child(
                    "enginerun:run", dict(base, pacing={"rate": 1e6, "burst": 1e6}), cpu=cpu))
                runs.setdefault(("debug", pinned), []).append(run_child(
                    "enginerun:run", dict(base, pacing={"rate": 1e6, "burst": 1e6}, debug=True), cpu=cpu))
    s.headers = ["client", "cores", "checks/s (median)", "runs", "CPU (cores)", "CPU us / check", "engine / bare"]
    for pinned in pinned_modes:
        b, e, dbg = runs[("bare", pinned)], runs[("engine", pinned)], runs[("debug", pinned)]
        mb, me, md = (statistics.median(x["rate"] for x in v) for v in (b, e, dbg))
        where = "pinned: 1 + sim 1" if pinned else "unpinned"
        for label, v, m in (("bare threaded httpx loop", b, mb), ("storycheck engine", e, me),
                            ("storycheck engine, `--debug`", dbg, md)):
            s.rows.append([label, where, fmt(m), ", ".join(fmt(x["rate"]) for x in v),
                           f"{statistics.median(x['cpu_share'] for x in v):.2f}",
                           f"{statistics.median(x['cpu_us_per_check'] for x in v):.0f}",
                           "" if v is b else f"**{m / mb:.2f}**" if v is e else f"{m / mb:.2f}"])
        s.headline.append(f"{'pinned' if pinned else 'unpinned'}: engine {fmt(me)} checks/s vs bare {fmt(mb)} = "
                          f"**{me / mb:.2f}** of bare ({md / mb:.2f} with `--debug`)")
    whole = _whole_runs(quick)
    s.rows += whole["rows"]
    s.headline[-1] += " (target >= 0.95)"
    s.headline.append(whole["headline"])
    s.notes = ["The simulator answers from its own core; the bare loop is the practical limit of this machine for a "
               "script on httpx's `Client`, not a theoretical one. `CPU us / check` is the client process's CPU time "
               "per check. The engine's own work per check (claim, checker, a log record (two with `--debug`), fenced "
               "group commit, stories and log rows) is paid for by a leaner request: its source sends through "
               "httpcore's pool without httpx's `Client`, `Request` and `Response` (`sources/http/client.py`), about "
               "110 us less CPU per request than `Client.get` on one thread.",
               "Other engineers' test runs shared this machine; the load average is in the machine section.",
               _by_thread(runs.get(("engine", True)) or runs.get(("engine", False)) or []),
               whole["note"]]
    return s


def _by_thread(engine_runs: list[dict]) -> str:
    """Where the engine's CPU per check goes, by thread (medians over the engine's runs)."""
    roles = sorted({k for r in engine_runs for k in r.get("thread_cpu_us_per_check", {})},
                   key=lambda k: -statistics.median(r.get("thread_cpu_us_per_check", {}).get(k, 0.0)
                                                     for r in engine_runs))
    parts = [f"{k} {statistics.median(r.get('thread_cpu_us_per_check', {}).get(k, 0.0) for r in engine_runs):.0f}"
             for k in roles]
    return ("The engine's CPU us per check by thread (first engine row, median of its runs): " + ", ".join(parts)
            + ". The check threads do what the bare loop does, on the leaner request (and the checker's pacing, "
              "routes and breaker); "
              "the others are the engine's own work: the fenced group commit with its story and log rows and the "
              "result records (writer), claims (claimer), the log file's lines (log file), leases and heartbeats "
              "(keeper).")


#: the second case of section 1: a whole run against a slow Python API
WHOLE_PROFILES, WHOLE_THREADS = 2000, 8
#: seconds the slow API takes to answer a profile
WHOLE_LATENCY = 0.02


class _SlowApi:
    """``benchmarks.slowapi`` in its own process (stops when its stdin closes)."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.slowapi", str(WHOLE_LATENCY)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=child_env(),
                                     text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the slow API did not start")
        if self.cpu is not None:
            os.sched_setaffinity(self.proc.pid, {self.cpu})
        return json.loads(line)["api_url"]

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _timed(cmd: list[str], env: dict, cwd: str, cpu: int | None) -> tuple[float, float]:
    """Wall seconds from spawn to exit, and the process's CPU seconds (user + system)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, preexec_fn=pin)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _whole_runs(quick: bool) -> dict:
    """Section 1's second case: ``storycheck run`` as a user runs it against a slow Python API
    (the standard library's threaded HTTP server), against the bare loop as a process."""
    reps = 3 if quick else 5
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    client_cpu, api_cpu = (0, 1) if cores >= 2 else (None, None)
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "engine": []}
    # storycheck's modules compiled once, as `pip install` leaves them (with PYTHONDONTWRITEBYTECODE
    # set, a source checkout would compile every module again in every run: 60 ms of start-up)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "storycheck_tui")], check=True)
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp, _SlowApi(api_cpu) as api_url:
        profiles = Path(tmp) / "profiles.txt"
        profiles.write_text("\n".join(usernames(WHOLE_PROFILES)) + "\n", encoding="utf-8")
        config = Path(tmp) / "storycheck.toml"
        config.write_text(f'[source]\nkind = "sim"\nurl = "{api_url}"\n', encoding="utf-8")
        for i in range(reps):  # alternating, a fresh database and log directory for every run
            times["bare"].append(_timed([sys.executable, "-m", "benchmarks.bareloop", api_url, str(profiles),
                                         str(WHOLE_THREADS)], child_env(), str(ROOT), client_cpu))
            run_dir = Path(tmp) / f"run{i}"
            run_dir.mkdir()
            env = dict(child_env(), STORYCHECK_LOG_DIR=str(run_dir / "logs"))
            times["engine"].append(_timed([sys.executable, "-m", "storycheck_tui", "run", str(profiles), "--config",
                                           str(config), "--db", str(run_dir / "sc.db"), "--workers",
                                           str(WHOLE_THREADS)], env, str(run_dir), client_cpu))
    where = "pinned: 1 + API 1" if client_cpu is not None else "unpinned"
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    ratio = med["bare"][0] / med["engine"][0]
    rows = []
    for key, label in (("bare", "bare loop as a process, slow API, whole run"),
                       ("engine", "`storycheck run`, slow API, whole run")):
        wall, cpu = med[key]
        rows.append([label, where, fmt(WHOLE_PROFILES / wall), "s: " + ", ".join(f"{w:.2f}" for w, _ in times[key]),
                     f"{cpu / wall:.2f}", f"{1e6 * cpu / WHOLE_PROFILES:.0f}",
                     "" if key == "bare" else f"**{ratio:.2f}**"])
    return {"rows": rows,
            "headline": f"whole run against a slow Python API ({WHOLE_PROFILES:,} profiles, {WHOLE_THREADS} threads, "
                        f"start-up included): `storycheck run` {med['engine'][0]:.2f} s vs bare loop "
                        f"{med['bare'][0]:.2f} s = **{ratio:.2f}** of bare (target >= 0.95)",
            "note": f"Whole run (the last two rows): a slow Python API (`benchmarks/slowapi.py`: the standard "
                    f"library's `ThreadingHTTPServer` as its documentation shows it, answering as the simulator after "
                    f"{WHOLE_LATENCY * 1000:.0f} ms, the time a real API takes to look a profile up) on its own "
                    f"core; {WHOLE_PROFILES:,} profiles, {WHOLE_THREADS} threads each, timed from spawn to exit. "
                    f"`storycheck run PROFILES --config C --db D --workers {WHOLE_THREADS}` with default settings "
                    f"(a fresh database and log directory each run, no proxies: direct) against the bare loop as a "
                    f"process (`benchmarks/bareloop.py`: read the file, one `httpx.Client`, GET + `json()`); "
                    f"{reps} alternating runs, median; checks/s = profiles / wall seconds, CPU = the process's "
                    f"user + system time."}


def _ratelimit_clients(quick: bool) -> list[tuple[str, str, dict]]:
    rows = [
        (f"engine, `[proxies] rate` = {PACE:g} x R", "enginerun:run", {"pacing": _pacing(PACE)}),
        ("engine, `[proxies] rate` = R", "enginerun:run", {"pacing": _pacing(1.0)}),
        ("naive script (round-robin + tenacity)", "clients:naive", {}),
    ]
    if not quick:
        rows.insert(1, ("engine, `[proxies] rate` = 0.95 x R", "enginerun:run", {"pacing": _pacing(0.95)}))
    return rows


def ratelimit(quick: bool) -> tuple[Section, float]:
    """2. P proxies at R requests/s each: achieved / ceiling and the share of 429s."""
    warmup, duration = _window(quick)
    ceiling = P * R
    s = Section("ratelimit", "2. Rate-limit ceiling")
    s.setup = (f"{P} proxy ports, the simulator allows each R = {R:g} requests/s (token bucket, burst {SIM_BURST:g}, "
               f"`Retry-After: 1` on 429): ceiling P x R = {ceiling:g} checks/s. {THREADS} threads per client. "
               f"Checks/s and the simulator's own count of requests and 429s over a {duration:g} s window after "
               f"{warmup:g} s of warm-up.")
    s.headers = ["client", "checks/s", "achieved / ceiling", "requests", "429 share", "gave up"]
    engine_rate = 0.0
    with SimProcess(proxies=P, rate=R, burst=SIM_BURST) as sim:
        base = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": THREADS, "warmup": warmup,
                "duration": duration, "profiles": int(ceiling * (warmup + duration + 5))}
        for label, func, extra in _ratelimit_clients(quick):
            r = run_child(func, dict(base, **extra))
            s.rows.append([label, fmt(r["rate"], 1), f"**{r['rate'] / ceiling:.3f}**" if func.startswith("engine")
                           and extra["pacing"] == _pacing(PACE) else f"{r['rate'] / ceiling:.3f}",
                           fmt(r["requests"]), pct(r["share_429"], 2), fmt(r["failed"])])
            if func.startswith("engine") and extra["pacing"] == _pacing(PACE):
                engine_rate = r["rate"]
                s.headline.append(f"engine {r['rate'] / ceiling:.3f} of the {ceiling:g}/s ceiling with "
                                  f"{pct(r['share_429'], 2)} 429s (target >= 0.95, <= 1 %)")
            elif func.startswith("clients"):
                s.headline.append(f"naive script {r['rate'] / ceiling:.3f} of the ceiling with "
                                  f"{pct(r['share_429'], 1)} 429s")
    s.notes = [
        f"Why `rate` = {PACE:g} x R: the engine's bucket and the simulator's run on different clocks of "
        f"events: a request leaves a few ms after its token (GIL, scheduling) and may arrive early relative "
        f"to the previous one. Paced at exactly R, the simulator's spare (burst) token is spent by the first early "
        f"arrival and never comes back, so the next early one is a 429 (which halves the engine's pace and "
        f"blocks the proxy for Retry-After). At {PACE:g} x R the spare token refills within "
        f"1 / ({1 - PACE:.2f} x R) = {1 / ((1 - PACE) * R):.1f} s, at a cost of {100 * (1 - PACE):.0f} % of the ceiling.",
        "The naive script has no pacing: its threads fire as fast as the simulator answers, most requests beyond "
        "R per proxy are 429s, and tenacity's exponential backoff then parks the threads (up to 8 s a wait).",
    ]
    return s, engine_rate


def faults(quick: bool, run2_rate: float) -> Section:
    """3. 10 % 5xx, two dead proxies, one slow proxy: share finally checked, throughput vs run 2."""
    warmup, duration = _window(quick)
    profiles = 1200 if quick else 2500
    s = Section("faults", "3. Faults")
    live = P - 2
    ideal = live * PACE * R * 0.9
    s.setup = (f"As run 2 (engine at `rate` = {PACE:g} x R) with faults: the simulator answers 10 % of requests with "
               f"500/502/503, proxy ports 0 and 1 are dead (connection refused), port 2 adds 0.5 s to every answer. "
               f"The engine runs a {profiles}-profile batch to the end with the default `[retry]` settings "
               f"(4 attempts, backoff 0.5-30 s with full jitter); throughput over a {duration:g} s window after "
               f"{warmup:g} s. The naive script runs over the same window.")
    s.headers = ["client", "checked (final)", "failed (final)", "checks/s (window)", "share of run 2",
                 "requests", "5xx answered", "429 share"]
    with SimProcess(proxies=P, rate=R, burst=SIM_BURST, error_rate=0.1, faults=FAULTS) as sim:
        base = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": THREADS, "warmup": warmup,
                "duration": duration, "profiles": profiles}
        e = run_child("enginerun:run", dict(base, complete=True, retry_failed=True, pacing=_pacing(PACE)), timeout=400)
        n = run_child("clients:naive", base)
    share = e["total_checked"] / e["profiles"]
    s.rows = [
        ["storycheck engine", f"**{e['total_checked']} / {e['profiles']} ({pct(share, 2)})**", fmt(e["total_failed"]),
         fmt(e["rate"], 1), f"**{e['rate'] / run2_rate:.2f}**" if run2_rate else "-", fmt(e["requests"]),
         fmt(e["errors"]), pct(e["share_429"], 2)],
        ["naive script", f"(window) {n['checked']} / {n['checked'] + n['failed']}", fmt(n["failed"]),
         fmt(n["rate"], 1), f"{n['rate'] / run2_rate:.2f}" if run2_rate else "-", fmt(n["requests"]),
         fmt(n["errors"]), pct(n["share_429"], 2)],
    ]
    s.headline = [f"engine checked {pct(share, 2)} of {e['profiles']} profiles (target 100 %), at "
                  f"{e['rate'] / run2_rate:.2f} of run 2's throughput" if run2_rate else "-"]
    s.notes = [
        f"Best possible here: {live} live proxies x {PACE:g} x R, of which 10 % are spent on 5xx answers = "
        f"{ideal:.0f} checks/s = {ideal / run2_rate:.2f} of run 2; the engine reached {e['rate'] / ideal:.2f} of that."
        if run2_rate else "",
        f"Whole run including the retry tail: {e['elapsed']:.1f} s for {e['profiles']} profiles "
        f"({e['overall_rate']:.0f} checks/s)."
        + (f" Failed for good: {', '.join(f'{n} {k}' for k, n in e['error_kinds'].items())}: with the default 4 attempts "
           f"a profile fails when 4 tries in a row get one of the 10 % of 5xx (1 in 10,000). After one "
           f"`retry-failed` (what the operator does next): {e['after_retry_checked']} / {e['profiles']} checked."
           if e.get("retried") else ""),
        "Engine's proxies at the end: " + ", ".join(f"{p['state']} {p['successes']}/{p['failures']}"
                                                     for p in e["proxies"]) + " (state successes/failures).",
    ]
    return s
