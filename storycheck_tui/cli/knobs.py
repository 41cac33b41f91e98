"""``storycheck set KNOB VALUE`` (runtime knobs every worker reads within a second),
``storycheck pause --all`` / ``resume --all``, and what `batches` says of the source and
the knobs below its table."""

from __future__ import annotations

import sys
from argparse import Namespace

from storycheck_tui.cli.show import json_line, safe
from storycheck_tui.errors import InputError
from storycheck_tui.states import CLAIMABLE, BatchState
from storycheck_tui.store import batches as ops
from storycheck_tui.store import knobs
from storycheck_tui.store import reads
from storycheck_tui.store.db import Store
from storycheck_tui.words import plural


def set_command(args: Namespace) -> int:
    from storycheck_tui.cli.manage import opened

    if args.name is None:  # list them
        with opened(args) as store:
            k = knobs.read(store)
        values = {knobs.PACE_CAP: k.pace_cap, knobs.THREADS: k.threads}
        if args.json:
            print(json_line(values))
            return 0
        for name in knobs.NAMES:
            value = values[name]
            print(f"{name:<9} {'default' if value is None else f'{value:g}':<8} {knobs.HELP[name]}"
                  + ("" if value is not None else " (each worker's own setting)"))
        return 0
    if args.value is None:
        raise InputError(f"set {args.name}: give a value ('default' or 'none' clears it)")
    value = knobs.parse(args.name, args.value)  # bad input before the database is touched
    with opened(args) as store:
        knobs.set_knob(store, args.name, value)
        live = len(reads.live_workers(reads.workers(store), reads.database_now(store)))
    said = "cleared: each worker uses its own setting" if value is None else f"set to {value:g}"
    reach = (f"{plural(live, 'running worker')} take{'s' if live == 1 else ''} it within a second" if live
             else "no worker is running: each takes it when it starts")
    print(f"{args.name} {said}; {reach}", file=sys.stderr)
    return 0


def in_force_line(store: Store) -> str | None:
    """One stderr line for `run` and `worker` at start: the knobs set in the database (they
    outlive the command that set them and replace --workers and [source] max_rate), and how to
    clear them; None when none is set."""
    k = knobs.read(store)
    said = [(knobs.THREADS, f"threads {k.threads}") if k.threads is not None else None,
            (knobs.PACE_CAP, f"pace cap {k.pace_cap:g}/s") if k.pace_cap is not None else None]
    set_ = [x for x in said if x is not None]
    if not set_:
        return None
    clear = " / ".join(f"storycheck set {name} default" for name, _ in set_)
    return f"knobs in force: {', '.join(text for _, text in set_)} ({clear} to clear)"


def pause_all(store: Store) -> int:
    """Pause every queued or running batch, as the console's P does; prints what it did."""
    ids = [b.id for b in ops.list_batches(store) if b.state in CLAIMABLE]
    done = sum(1 for b in ids if ops.pause(store, b, "paused by operator"))
    print(f"paused {plural(done, 'batch', 'batches')}" + ("" if done else " (none was queued or running)"))
    return 0


def resume_all(store: Store) -> int:
    ids = [b.id for b in ops.list_batches(store) if b.state == BatchState.PAUSED]
    done = sum(1 for b in ids if ops.resume(store, b))
    print(f"resumed {plural(done, 'batch', 'batches')}" + ("" if done else " (none was paused)"))
    return 0


def engine_facts(store: Store) -> dict:
    """The source as the live workers pace it, and the knobs in force (for `batches --json`)."""
    now = reads.database_now(store)
    f = reads.source_facts(reads.workers(store, now=now), now)
    k = knobs.read(store)
    return {"workers": f.workers, "pace": None if f.pace is None else round(f.pace, 2), "pace_reason": f.pace_reason,
            "circuit": f.circuit, "circuit_reason": f.circuit_reason, "blocked": f.blocked,
            "blocked_workers": f.blocked_workers, "pace_cap": k.pace_cap, "threads": k.threads}


def engine_lines(facts: dict) -> list[str]:
    """The lines `batches` prints below its table: the source's pace and circuit, the knobs."""
    out = []
    if facts["pace"] is not None:
        line = (f"source: pace {facts['pace']:.1f} requests/s ({plural(facts['workers'], 'worker')})"
                f" · circuit {facts['circuit'] or 'closed'}")
        if facts["circuit"] not in (None, "closed") and facts["circuit_reason"]:
            line += f" ({safe(facts['circuit_reason'])})"
        out.append(line)
        if facts["blocked"]:
            n, of = facts["blocked_workers"], facts["workers"]
            out.append(f"nothing can be sent ({n} of {plural(of, 'worker')}): {safe(facts['blocked'])}")
        if facts["pace_reason"]:
            out.append(f"pace last changed: {safe(facts['pace_reason'])}")
    set_ = knobs.describe(knobs.Knobs(facts["pace_cap"], facts["threads"]))
    if set_:
        out.append("knobs: " + ", ".join(set_) + " (storycheck set)")
    return out


__all__ = ["set_command", "pause_all", "resume_all", "engine_facts", "engine_lines"]
