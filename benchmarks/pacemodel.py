"""A model of the source's pace against a key's limit: ``python -m benchmarks.pacemodel``.

Runs :class:`~storycheck_tui.engine.pace.SourcePace` itself on a simulated clock, with no
network, threads or machine load: check threads that take a token and send, a source that
answers after a latency from a token bucket (the key's limit and its burst), and routes that a
429's ``Retry-After`` blocks. Every run gives the same figures, so a change to the pacing rules
can be weighed in seconds across many limits, bursts and latencies before the benchmarks and
the simulator confirm it (they measure the same thing with the machine's noise).

For each grid of keys (a limit of 60, 200 or 400/s, a burst of 2, 5 or 10) it prints the mean
and worst of the time to check a batch of 5 s at the limit over the ideal time (at the limit, or
at what 16 threads can send when that is less), and the share of requests answered 429; then the time of 2,000 checks by 8 threads against a source answering in 20 ms
with no limit (benchmark 1's whole run: 5.5 s is what the threads allow).
``--step 3 25 50`` compares values of ``SLOW_START_MAX_STEP``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
from dataclasses import dataclass

from storycheck_tui.engine import pace as pacing


#: check threads of the grid's runs (the engine's default ``[engine] workers``)
THREADS = 16


@dataclass
class Outcome:
    seconds: float  # until the batch was checked
    answered: int
    limited: int  # answered 429


def simulate(limit: float, burst: float, latency: float, *, profiles: int, threads: int = THREADS, routes: int = 2,
             retry_after: float = 1.0) -> Outcome:
    """``threads`` threads check ``profiles`` profiles through ``routes`` routes (round robin over
    those not blocked); the source answers ``latency`` seconds after a request is sent, 429 when
    its bucket (``limit``/s, ``burst``) is empty when the request arrives (half-way), and the 429
    blocks its route for ``retry_after`` seconds. A 429'd profile is checked again."""
    now = [0.0]
    pace = pacing.SourcePace(clock=lambda: now[0])
    tokens, refilled = burst, 0.0
    blocked = [0.0] * routes
    turn = itertools.count()
    seq = itertools.count()
    events: list[tuple[float, int, str, tuple]] = [(i * 1e-4, next(seq), "ask", ()) for i in range(threads)]
    heapq.heapify(events)
    answered = limited = 0
    while events and answered < profiles:
        at, _, kind, data = heapq.heappop(events)
        now[0] = at
        if kind == "ask":  # a thread wants to send: a free route, then a token of the pace
            free = [r for r in range(routes) if blocked[r] <= at]
            wait = pace.reserve() if free else min(blocked) - at
            if wait:
                heapq.heappush(events, (at + max(wait, 1e-6), next(seq), "ask", ()))
            else:
                heapq.heappush(events, (at + latency / 2, next(seq), "arrive", (at, free[next(turn) % len(free)])))
        elif kind == "arrive":  # the key's bucket decides
            tokens = min(burst, tokens + (at - refilled) * limit)
            refilled = at
            ok = tokens >= 1.0
            if ok:
                tokens -= 1.0
            heapq.heappush(events, (at + latency / 2, next(seq), "answer", (*data, ok)))
        else:
            sent, route, ok = data
            if ok:
                answered += 1
                pace.answered(at - sent)
            else:
                limited += 1
                pace.limited(sent, None, f"p{answered + limited}")
                blocked[route] = max(blocked[route], at + retry_after)
            heapq.heappush(events, (at, next(seq), "ask", ()))
    return Outcome(now[0], answered, limited)


def grid(latencies: tuple[float, ...]) -> tuple[float, float, float, float]:
    """(mean, worst) of time / ideal and (mean, worst) 429 % over limits x bursts x ``latencies``."""
    ratios, shares = [], []
    for limit in (60.0, 200.0, 400.0):
        for burst in (2.0, 5.0, 10.0):
            for latency in latencies:
                o = simulate(limit, burst, latency, profiles=int(limit * 5))
                ideal = o.answered / min(limit, THREADS / latency)  # the key's limit, or what the threads can send
                ratios.append(o.seconds / ideal)
                shares.append(100.0 * o.limited / (o.answered + o.limited))
    return sum(ratios) / len(ratios), max(ratios), sum(shares) / len(shares), max(shares)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pacemodel", description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=float, nargs="*", help="values of SLOW_START_MAX_STEP to compare "
                    f"(default: the engine's, {pacing.SLOW_START_MAX_STEP:g})")
    args = ap.parse_args(argv)
    default = pacing.SLOW_START_MAX_STEP
    for step in args.step or [default]:
        pacing.SLOW_START_MAX_STEP = step
        try:
            print(f"slow start at most {step:g}/s per answer:")
            for name, lats in (("sources answering in 5-25 ms", (0.005, 0.012, 0.025)),
                               ("sources answering in 100-400 ms", (0.1, 0.2, 0.4))):
                mean, worst, share, worst_share = grid(lats)
                print(f"  keys of 60-400/s, bursts 2-10, {name}: time / ideal mean {mean:.2f}, worst {worst:.2f}; "
                      f"429s mean {share:.2f} %, worst {worst_share:.2f} %")
            free = simulate(1e9, 1.0, 0.02, profiles=2000, threads=8, routes=1)
            print(f"  no limit, 20 ms, 8 threads, 2,000 profiles: {free.seconds:.2f} s (the threads allow 5.00 s)")
        finally:
            pacing.SLOW_START_MAX_STEP = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
