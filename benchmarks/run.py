"""``python -m benchmarks [--quick] [--only overhead,ratelimit,...] [--out FILE]``

Runs each comparison side by side in one run and writes ``benchmarks/RESULTS.md`` (figures,
machine, date). Sections: overhead (1), ratelimit (2), faults (3), scale (4), console (5),
coldstart (6), monitoring (7), pacing (8). A section that cannot run here (no PostgreSQL, no console) says why in the
results instead of failing the run.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback
from pathlib import Path

from benchmarks.report import Section, write

SECTIONS = ("overhead", "ratelimit", "faults", "scale", "console", "coldstart", "monitoring", "pacing")
TITLES = {"overhead": "1. Engine overhead", "ratelimit": "2. Rate-limit ceiling", "faults": "3. Faults",
          "scale": "4. Scale", "console": "5. Console under load", "coldstart": "6. Cold start",
          "monitoring": "7. Monitoring", "pacing": "8. Pacing"}
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def _run_section(name: str, quick: bool, state: dict) -> list[Section]:
    from benchmarks import throughput

    if name == "overhead":
        return [throughput.overhead(quick)]
    if name == "ratelimit":
        s, state["run2_rate"] = throughput.ratelimit(quick)
        return [s]
    if name == "faults":
        return [throughput.faults(quick, state.get("run2_rate") or throughput.P * throughput.PACE * throughput.R)]
    if name == "scale":
        from benchmarks import scale

        return [scale.scale(quick, pg_url=state.get("pg_url"))]
    if name == "console":
        from benchmarks import console

        return [console.under_load(quick)]
    if name == "coldstart":
        from benchmarks import console

        return [console.cold_start(quick)]
    if name == "pacing":
        from benchmarks import pacing

        return [pacing.pacing(quick)]
    if name == "monitoring":
        from benchmarks import monitoring

        return [monitoring.monitoring(quick)]
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="short windows, one repetition (about 2 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default: all): {', '.join(SECTIONS)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the results (default: %(default)s)")
    ap.add_argument("--pg", metavar="URL", help="PostgreSQL database for section 4 (default: $STORYCHECK_TEST_PG, "
                    "else a throwaway server started with .ci/start-postgres.sh if the binaries are here)")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    state: dict = {"pg_url": args.pg}
    results: list[Section] = []
    for name in SECTIONS:
        if name not in chosen:
            continue
        print(f"[{time.monotonic() - t0:5.0f} s] {TITLES[name]} ...", file=sys.stderr, flush=True)
        ts = time.monotonic()
        try:
            got = _run_section(name, args.quick, state)
        except Exception as exc:  # one broken section must not lose the others' figures
            traceback.print_exc()
            got = [Section(name, TITLES[name], error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
        for s in got:
            s.seconds = time.monotonic() - ts
            for line in s.headline or [s.error or ""]:
                print(f"         {line}", file=sys.stderr, flush=True)
        results.extend(got)
    total = time.monotonic() - t0
    write(args.out, results, quick=args.quick, argv=argv, started=started, total_seconds=total)
    print(f"[{total:5.0f} s] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
