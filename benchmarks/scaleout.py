"""Scale-out throughput: checks/s with 1, 2 and 4 `storycheck worker` processes on PostgreSQL.

    source .ci/start-postgres.sh          # or any PostgreSQL URL whose user may CREATE DATABASE
    python benchmarks/scaleout.py --db "$STORYCHECK_TEST_PG" --profiles 5000 --processes 1 2 4

What it does, for each process count N (``--repeat`` times):

* the simulator runs in its own process (``storycheck sim``) with many proxy ports and a
  rate limit far above what is asked of it, so the limit is the engine, not the source;
* a fresh database (``CREATE DATABASE``), the sim's proxies and one batch of ``--profiles``
  usernames are set up through the CLI (not timed);
* N ``storycheck worker --until-idle`` processes start at once against it;
* throughput = checks finished / (last finish - first finish), read from ``job.finished_at``
  (the database clock), so process start-up and the one-second idle check at the end do
  not count; the wall time from spawn to the last exit is printed too, as is how busy the
  machine's CPUs were meanwhile (from /proc/stat) and the CPU seconds of workers and sim.

Prints a table, and with ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from storycheck_tui.states import JobState

ROOT = Path(__file__).resolve().parent.parent
STORYCHECK = [sys.executable, "-m", "storycheck_tui"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Sim:
    """`storycheck sim` in its own process; its banner gives the proxy URLs and the [source]."""

    def __init__(self, proxies: int, rate: float, workdir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*STORYCHECK, "sim", "--port", str(self.port), "--proxies", str(proxies), "--rate", str(rate)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir)
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("storycheck sim exited:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        self.proxy_urls = re.findall(r"^  (http://127\.0\.0\.1:\d+)$", text, re.M)
        self.source = text[text.index("[source]"):text.index("Press Ctrl-C")].strip() + "\n"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Admin:
    def __init__(self, url: str):
        import psycopg2

        self.url = url
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True
        self.postmaster: int | None = None
        try:  # a local server: its CPU time can be read from /proc
            with self.conn.cursor() as cur:
                cur.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
                datadir = cur.fetchone()[0]
            self.postmaster = int(Path(datadir, "postmaster.pid").read_text().split()[0])
        except Exception:
            pass

    def server_cpu(self) -> float | None:
        """CPU seconds of the server: postmaster, live backends, and (via cutime) exited ones."""
        if self.postmaster is None:
            return None
        total = cpu_seconds(self.postmaster)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as fh:
                        ppid = int(fh.read().rpartition(")")[2].split()[1])
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if ppid == self.postmaster:
                    total += cpu_seconds(int(pid))
        return total

    def fresh(self, name: str) -> str:
        with self.conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(urlsplit(self.url)._replace(path="/" + name))

    def drop(self, name: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(*args: str, env: dict) -> str:
    p = subprocess.run([*STORYCHECK, *args], capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"storycheck {' '.join(args[:2])} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def measure(admin: Admin, sim: Sim, workdir: Path, *, processes: int, profiles: int, threads: int,
            claim_size: int) -> dict:
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(workdir / "logs"), "STORYCHECK_DB": ""}
    name = f"sc_bench_scaleout_{os.getpid()}"
    url = admin.fresh(name)
    try:
        (workdir / "proxies.txt").write_text("\n".join(sim.proxy_urls) + "\n")
        (workdir / "profiles.txt").write_text("\n".join(f"bench{i:07d}" for i in range(profiles)) + "\n")
        config = workdir / "bench.toml"
        config.write_text(sim.source + f"""
[proxies]
rate = 10000
burst = 1000

[engine]
workers = {threads}
claim_size = {claim_size}
lease_seconds = 60
""")
        run_cli("proxies", "add", str(workdir / "proxies.txt"), "--db", url, env=env)
        run_cli("add", str(workdir / "profiles.txt"), "--name", "bench", "--db", url, env=env)

        busy0 = machine_busy()
        sim_cpu0 = cpu_seconds(sim.proc.pid)
        pg_cpu0 = admin.server_cpu()
        t0 = time.monotonic()
        procs = [subprocess.Popen([*STORYCHECK, "worker", "--until-idle", "--db", url, "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(processes)]
        worker_cpu = {p.pid: 0.0 for p in procs}
        while any(p.poll() is None for p in procs):
            for p in procs:
                if p.poll() is None:
                    worker_cpu[p.pid] = max(worker_cpu[p.pid], cpu_seconds(p.pid))
            time.sleep(0.2)
        wall = time.monotonic() - t0
        busy1 = machine_busy()
        sim_cpu = cpu_seconds(sim.proc.pid) - sim_cpu0
        pg_cpu1 = admin.server_cpu()
        pg_cpu = None if pg_cpu0 is None or pg_cpu1 is None else round(pg_cpu1 - pg_cpu0, 2)
        errors = [p.stderr.read()[-1500:] for p in procs if p.returncode != 0]
        if errors:
            raise RuntimeError("a worker failed:\n" + "\n".join(errors))

        import psycopg2

        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*), MIN(finished_at), MAX(finished_at), "
                        "COUNT(*) FILTER (WHERE state = %s) FROM job", (JobState.SUCCEEDED,))
            n, first, last, ok = cur.fetchone()
            cur.execute("SELECT completed_profiles, successful_checks, failed_checks FROM batch")
            completed, succeeded, failed = cur.fetchone()
        conn.close()
        assert n == profiles and completed == profiles and succeeded == ok, (n, completed, succeeded, ok)
        span = float(last) - float(first)
        return {
            "processes": processes, "threads_per_process": threads, "profiles": profiles,
            "checks_per_s": round((n - 1) / span, 1) if span > 0 else None,
            "span_s": round(span, 2), "wall_s": round(wall, 2), "failed": failed,
            "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
            "worker_cpu_s": round(sum(worker_cpu.values()), 2), "sim_cpu_s": round(sim_cpu, 2),
            "postgres_cpu_s": pg_cpu,
        }
    finally:
        admin.drop(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=os.environ.get("STORYCHECK_TEST_PG"),
                    help="PostgreSQL URL whose user may CREATE DATABASE (default $STORYCHECK_TEST_PG)")
    ap.add_argument("--profiles", type=int, default=5000)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=16, help="check threads per worker process")
    ap.add_argument("--claim-size", type=int, default=32)
    ap.add_argument("--proxies", type=int, default=32, help="simulator proxy ports")
    ap.add_argument("--rate", type=float, default=100_000, help="simulator requests/s per proxy identity")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if not args.db:
        ap.error("give --db postgresql://… (or source .ci/start-postgres.sh)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="storycheck-scaleout-") as tmp:
        workdir = Path(tmp)
        sim = Sim(args.proxies, args.rate, workdir)
        admin = Admin(args.db)
        try:
            for _ in range(args.repeat):
                for n in args.processes:
                    row = measure(admin, sim, workdir, processes=n, profiles=args.profiles, threads=args.threads,
                                  claim_size=args.claim_size)
                    rows.append(row)
                    print(f"{n} worker process{'es' if n > 1 else '  '} x {args.threads} threads: "
                          f"{row['checks_per_s']:>7} checks/s  ({row['profiles']} checks in {row['span_s']} s; "
                          f"wall {row['wall_s']} s; CPUs {100 * row['machine_cpu_busy']:.0f}% busy; "
                          f"CPU-s: workers {row['worker_cpu_s']}, PostgreSQL {row['postgres_cpu_s']}, sim {row['sim_cpu_s']})",
                          flush=True)
        finally:
            sim.stop()
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
