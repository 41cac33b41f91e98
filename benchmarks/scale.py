"""Section 4: a 100,000-profile batch on SQLite and PostgreSQL (child and parent sides).

* import: ``storycheck add``'s path (read and normalise the file, one transaction of jobs);
* queue: claims + finishes per second through the store API alone (claim 32, finish 32 with
  realistic results: stories, one log row each), the ceiling the database puts on a worker;
* engine, DB-bound: the whole engine (threads, group commit, logging) with an in-process
  source that answers at once, so only the database and the engine's own work remain;
* peak RSS of a worker (the engine against the simulator, 100k batch) and of the console
  (the app with its engine running flat out on a 100k batch).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, cpu_seconds, peak_rss_mb, run_child, usernames
from benchmarks.report import Section, fmt
from benchmarks.simproc import SimProcess
from storycheck_tui.states import JobState

N = 100_000


# -- child side ---------------------------------------------------------------------------------

def _logging(tmp: str) -> None:
    from storycheck_tui import logs

    logs.setup_logging(Path(tmp) / "logs", stderr_level=logging.CRITICAL)


def import_batch(p: dict) -> dict:
    """Write an N-line profiles file, then time `storycheck add`'s read + create_batch."""
    from storycheck_tui.inputs.profiles import load_profiles
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        _logging(tmp)
        path = Path(tmp) / "profiles.txt"
        path.write_text("\n".join(f"@{u}" for u in usernames(p["profiles"])) + "\n", encoding="utf-8")
        t0 = time.perf_counter()
        store = open_store(p["db"])
        t1 = time.perf_counter()
        plist = load_profiles(path)
        t2 = time.perf_counter()
        batch_id = ops.create_batch(store, "bench-import", plist.usernames, source_file=str(path))
        t3 = time.perf_counter()
        store.close()
    return {"open_s": t1 - t0, "read_s": t2 - t1, "create_s": t3 - t2, "total_s": t3 - t0, "batch_id": batch_id,
            "profiles": len(plist.usernames), "peak_rss_mb": peak_rss_mb()}


def _outcome(username: str):
    from storycheck_tui.sources.base import Outcome, Story
    from storycheck_tui.states import OutcomeKind as K

    roll = hashlib.blake2b(username.encode(), digest_size=2).digest()[0] % 100
    if roll < 45:
        return Outcome(K.HAS_STORIES, stories=(Story(f"{username}-1", 1.7e9), Story(f"{username}-2", 1.7e9 + 60)),
                       latency_ms=1.0)
    kind, status = (K.NO_STORIES, 200) if roll < 80 else (K.PRIVATE, 403) if roll < 90 else (K.NOT_FOUND, 404)
    return Outcome(kind, http_status=status, latency_ms=1.0)


def queue_ops(p: dict) -> dict:
    """claim(32) + finish(32) in a loop on batch ``batch_id`` for ``duration`` seconds."""
    from storycheck_tui.store import queue as q
    from storycheck_tui.store.db import open_store

    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        _logging(tmp)
        store = open_store(p["db"])
        done = claim_s = finish_s = 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < p["duration"]:
            t = time.perf_counter()
            claimed = q.claim(store, "bench-worker:1:0", 60.0, 32, [p["batch_id"]])
            claim_s += time.perf_counter() - t
            if not claimed:
                break
            results = [q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=_outcome(c.username), proxy="bench",
                                   http_status=200, latency_ms=1.0, tries=1) for c in claimed]
            t = time.perf_counter()
            q.finish(store, "bench-worker:1:0", results)
            finish_s += time.perf_counter() - t
            done += len(claimed)
        elapsed = time.perf_counter() - t0
        store.close()
    return {"jobs": done, "seconds": elapsed, "rate": done / elapsed, "claim_us": 1e6 * claim_s / max(1, done),
            "finish_us": 1e6 * finish_s / max(1, done)}


class InstantSource:
    """A StorySource that answers at once, in process: only the engine and the database remain."""

    def check(self, username: str, via):
        return _outcome(username)

    def health(self, via) -> float:
        return 1.0

    def close(self) -> None:
        pass


def engine_instant(p: dict) -> dict:
    """The whole engine on batch ``batch_id`` with the instant source, for ``duration`` seconds."""
    import dataclasses

    from storycheck_tui.config import EngineSettings, ProxySettings, Settings
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.inputs.proxies import parse_proxy_line
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        _logging(tmp)
        store = open_store(p["db"], pool_size=22)
        ops.add_proxies(store, [parse_proxy_line(f"http://127.0.0.1:{9000 + i}") for i in range(8)])
        settings = Settings(proxies=ProxySettings(rate=1e6, burst=1e6),
                            engine=dataclasses.replace(EngineSettings(), workers=16))
        runner = build_runner(store, settings, batch_ids=[p["batch_id"]], source=InstantSource())
        b0 = ops.get_batch(store, p["batch_id"]).completed
        cpu0, t0 = cpu_seconds(), time.monotonic()
        runner.start()
        done = runner.wait_done([p["batch_id"]], timeout=p["duration"], poll=0.1)
        elapsed = time.monotonic() - t0
        n = ops.get_batch(store, p["batch_id"]).completed - b0
        cpu = cpu_seconds() - cpu0
        runner.stop(1.0)
        store.close()
    return {"jobs": n, "seconds": elapsed, "rate": n / elapsed, "finished_batch": done, "cpu_share": cpu / elapsed,
            "peak_rss_mb": peak_rss_mb()}


def pool_handout(p: dict) -> dict:
    """CPU per check of the proxy pool's part (acquire + success) for pools of several sizes."""
    from storycheck_tui.config import ProxySettings
    from storycheck_tui.engine.proxies import ProxyPool
    from storycheck_tui.sources.base import Route

    out = {}
    for n in p["sizes"]:
        pool = ProxyPool([Route(key=str(i), url=f"http://10.{i // 250}.{i % 250}.1:8080", label=str(i))
                          for i in range(n)], ProxySettings(rate=1e6, burst=1e6))
        reps = p.get("reps", 20_000)
        t0 = time.process_time()
        for _ in range(reps):
            route = pool.acquire(timeout=1.0, wait_for_revival=False)
            pool.success(route.key, 1.0)
        out[str(n)] = 1e6 * (time.process_time() - t0) / reps
    return out


# -- PostgreSQL -----------------------------------------------------------------------------------

class Postgres:
    """A PostgreSQL server to use: --pg, $STORYCHECK_TEST_PG, or a throwaway one (.ci/start-postgres.sh)."""

    def __init__(self, url: str | None) -> None:
        self.url = url or os.environ.get("STORYCHECK_TEST_PG")
        self.own_dir: str | None = None
        self.why_not = ""
        self.admin = None

    def start(self) -> bool:
        if not self.url:
            script = ROOT / ".ci" / "start-postgres.sh"
            if not script.exists():
                self.why_not = "no PostgreSQL: set STORYCHECK_TEST_PG or pass --pg URL"
                return False
            r = subprocess.run(["bash", "-c", f'source "{script}" >/dev/null && '
                                'echo "$STORYCHECK_TEST_PG $STORYCHECK_TEST_PG_DIR"'],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0 or not r.stdout.strip():
                self.why_not = f"could not start PostgreSQL with .ci/start-postgres.sh: {r.stderr.strip()[-300:]}"
                return False
            self.url, self.own_dir = r.stdout.split()
        try:
            from benchmarks.scaleout import Admin

            self.admin = Admin(self.url)
        except Exception as exc:
            self.why_not = f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}".splitlines()[0]
            return False
        return True

    def fresh(self, name: str) -> str:
        return self.admin.fresh(name)

    def drop(self, name: str) -> None:
        self.admin.drop(name)

    def stop(self) -> None:
        if self.admin is not None:
            try:
                self.admin.conn.close()
            except Exception:
                pass
        if self.own_dir:
            pg_ctl = shutil.which("pg_ctl") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))), None)
            cmd = [str(pg_ctl), "-D", f"{self.own_dir}/data", "-m", "immediate", "-w", "stop"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            subprocess.run(cmd, capture_output=True, timeout=60)
            shutil.rmtree(self.own_dir, ignore_errors=True)


# -- parent side ----------------------------------------------------------------------------------

def _backend_rows(label: str, url: str, quick: bool) -> tuple[list[str], dict]:
    imp = run_child("scale:import_batch", {"db": url, "profiles": N})
    qo = run_child("scale:queue_ops", {"db": url, "batch_id": imp["batch_id"], "duration": 3.0 if quick else 10.0})
    imp2 = run_child("scale:import_batch", {"db": url, "profiles": N})
    eng = run_child("scale:engine_instant", {"db": url, "batch_id": imp2["batch_id"],
                                            "duration": 4.0 if quick else 15.0})
    row = [label, f"{imp['total_s']:.2f} s (read {imp['read_s']:.2f} + insert {imp['create_s']:.2f})",
           fmt(qo["rate"]), f"{qo['claim_us']:.0f} + {qo['finish_us']:.0f}", fmt(eng["rate"]),
           f"{eng['peak_rss_mb']:.0f} MB"]
    return row, {"import": imp, "queue": qo, "engine": eng}


def scale(quick: bool, pg_url: str | None = None) -> Section:
    s = Section("scale", "4. Scale")
    s.setup = (f"A {N:,}-profile batch. Import: `storycheck add`'s path (read and normalise a {N:,}-line file, "
               f"insert the jobs in one transaction). Queue: claim 32 + fenced finish of 32 (45 % with two stories, "
               f"one log row each) in a loop through the store API, one connection. Engine, DB-bound: the whole "
               f"engine (16 threads, group commit, log file) with an in-process source that answers at once, "
               f"{'4' if quick else '15'} s on a fresh {N:,} batch. Peak RSS = VmHWM of the process.")
    s.headers = ["database", "import 100k", "queue claims+finishes/s", "us per job (claim + finish)",
                 "engine checks/s (DB-bound)", "engine peak RSS"]
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        row, sq = _backend_rows("SQLite (WAL, file)", str(Path(tmp) / "scale.db"), quick)
        s.rows.append(row)
    s.headline.append(f"SQLite: import {sq['import']['total_s']:.1f} s, {fmt(sq['queue']['rate'])} claims+finishes/s")
    pg = Postgres(pg_url)
    try:
        if pg.start():
            name = f"storycheck_bench_{os.getpid()}"
            try:
                row, pq = _backend_rows("PostgreSQL 15 (local)", pg.fresh(name), quick)
                s.rows.append(row)
                s.headline.append(f"PostgreSQL: import {pq['import']['total_s']:.1f} s, "
                                  f"{fmt(pq['queue']['rate'])} claims+finishes/s")
            finally:
                pg.drop(name)
            if not quick:
                s.notes.append(_scaleout(pg))
        else:
            s.rows.append(["PostgreSQL", pg.why_not, "-", "-", "-", "-"])
            s.headline.append(f"PostgreSQL not measured ({pg.why_not})")
    finally:
        pg.stop()
    # peak RSS: a worker against the simulator, and the console with its engine, on a 100k batch
    worker_s = 4.0 if quick else 20.0
    with SimProcess(proxies=8, rate=0) as sim:
        w = run_child("enginerun:run", {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": 16,
                                         "profiles": N, "warmup": 1.0, "duration": worker_s,
                                         "pacing": {"rate": 1e6, "burst": 1e6}})
        try:
            c = run_child("console_child:soak", {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls,
                                                  "profiles": N, "seconds": worker_s})
            console_rss = f"{c['peak_rss_mb']:.0f} MB"
            console_note = (f"console: StorycheckApp (headless, rendering every frame) with its engine running flat out "
                            f"on a {N:,}-profile batch for {worker_s:g} s ({c['checks']:,} checks, "
                            f"{c['log_records']:,} log records)")
        except Exception as exc:
            console_rss, console_note = "not measured", f"console: {str(exc).splitlines()[-1][:200]}"
    s.notes.insert(0, f"Peak RSS: worker {w['peak_rss_mb']:.0f} MB (the engine against the simulator on a {N:,}-profile "
                      f"batch, {worker_s + 1:g} s, {w['checked']:,}+ checks at {fmt(w['rate'])}/s); {console_note}: "
                      f"{console_rss}. Target <= 300 MB each.")
    s.headline.append(f"peak RSS worker {w['peak_rss_mb']:.0f} MB, console {console_rss} (target <= 300 MB)")
    sizes = [8, 100, 1000, 10_000]
    handout = run_child("scale:pool_handout", {"sizes": sizes})
    s.notes.append("Proxy pool size: the pool's part of a check (acquire a route + record its success) costs "
                   + ", ".join(f"{handout[str(n)]:.1f} us with {n:,}" for n in sizes)
                   + " proxies: a hand-out takes the least recently used ready route in O(1).")
    return s


def _scaleout(pg: Postgres) -> str:
    """benchmarks/scaleout.py (PostgreSQL engineer's): 1 and 2 `storycheck worker` processes."""
    from benchmarks import scaleout

    rates = {}
    with tempfile.TemporaryDirectory(prefix="storycheck-scaleout-") as tmp:
        sim = scaleout.Sim(32, 100_000, Path(tmp))
        try:
            for n in (1, 2):
                r = scaleout.measure(pg.admin, sim, Path(tmp), processes=n, profiles=5000, threads=16, claim_size=32)
                rates[n] = (r["checks_per_s"], r["machine_cpu_busy"])
        finally:
            sim.stop()
    (one, busy1), (two, busy2) = rates[1], rates[2]
    return (f"Scale-out on PostgreSQL (`benchmarks/scaleout.py`: `storycheck worker` processes x 16 threads, 5,000 "
            f"profiles, simulator without limit, all on these 2 cores): 1 process {fmt(one)} checks/s "
            f"(CPUs {100 * busy1:.0f} % busy), 2 processes {fmt(two)} checks/s ({two / one:.2f}x; CPUs "
            f"{100 * busy2:.0f} % busy).")


def prepare_db(p: dict) -> dict:
    """A database as a big run leaves it: a 100k batch, ``finished`` of it checked through the
    store API (job results, stories, one log row each), the rest pending."""
    from storycheck_tui.inputs.proxies import parse_proxy_line
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store import queue as q
    from storycheck_tui.store.db import open_store

    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        _logging(tmp)
        store = open_store(p["db"])
        ops.add_proxies(store, [parse_proxy_line(f"http://127.0.0.1:{9000 + i}") for i in range(8)])
        batch_id = ops.create_batch(store, "bench-100k", usernames(p["profiles"]))
        done = 0
        while done < p["finished"]:
            claimed = q.claim(store, "bench-prepare:1:0", 60.0, 500, [batch_id])
            if not claimed:
                break
            q.finish(store, "bench-prepare:1:0", [
                q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=_outcome(c.username),
                            proxy=f"http://127.0.0.1:{9000 + c.id % 8}", http_status=200,
                            latency_ms=1.0 + c.id % 50, tries=1) for c in claimed])
            done += len(claimed)
        store.close()
    return {"batch_id": batch_id, "finished": done}
