"""Profile the engine at full speed: ``python -m benchmarks.profile [--seconds 10] [--top 30]``.

Starts the simulator in its own process (no rate limit), runs the engine (as in section 1)
under py-spy (``pip install py-spy``) and prints the functions with the most samples, by
own time and by total time, across all threads. ``--idle`` keeps idle frames (waits) in.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.common import ROOT
from benchmarks.simproc import SimProcess


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--proxies", type=int, default=8)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--idle", action="store_true", help="keep idle (waiting) samples")
    ap.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL "
                    "(where the one core goes; the default also counts threads blocked on locks)")
    ap.add_argument("--raw", help="also keep the collapsed stacks in this file")
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    with SimProcess(proxies=args.proxies, rate=0) as sim, tempfile.TemporaryDirectory() as tmp:
        params = {"api_url": sim.api_url, "proxy_urls": sim.proxy_urls, "threads": args.threads,
                  "warmup": 0.0, "duration": args.seconds, "profiles": 200_000,
                  "pacing": {"rate": 1e6, "burst": 100}}
        out = args.raw or os.path.join(tmp, "stacks.txt")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.child", "enginerun:run", json.dumps(params)],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for line in child.stdout:  # type: ignore[union-attr]
            if line.startswith("STARTED"):
                break
        cmd = [spy, "record", "--format", "raw", "-o", out, "--rate", "250", "--nonblocking",
               "--duration", str(max(1, int(args.seconds) - 1)), "--pid", str(child.pid)]
        if args.idle:
            cmd.append("--idle")
        if args.gil:
            cmd.append("--gil")
        subprocess.run(cmd, capture_output=True, text=True)
        rest = child.stdout.read()  # type: ignore[union-attr]
        child.wait()
        lines = [ln for ln in rest.splitlines() if ln.startswith("{")]
        if lines:
            print(f"engine: {json.loads(lines[-1])['rate']:.0f} checks/s while profiled")
        report(out, args.top)
    return 0


def report(path: str, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(path) as fh:
        for line in fh:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            count = int(n)
            samples += count
            frames = [f for f in stack.split(";")[1:]]  # first frame: the thread
            if not frames:
                continue
            own[frames[-1]] += count
            for f in set(frames):
                total[f] += count
    print(f"{samples} samples")
    for title, counter in (("own time", own), ("total time", total)):
        print(f"\n-- top {top} by {title}")
        for frame, n in counter.most_common(top):
            print(f"{100.0 * n / samples:6.1f}%  {frame}")


if __name__ == "__main__":
    sys.exit(main())
