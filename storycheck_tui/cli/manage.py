"""Commands that manage batches, proxies, exports and logs (no checks run here)."""

from __future__ import annotations

import contextlib
import json
import sys
from argparse import Namespace
from typing import Iterator

from storycheck_tui.cli.common import import_from, import_proxies, open_db, read_profiles, settings_from, start_logging
from storycheck_tui.cli.knobs import engine_facts, engine_lines, pause_all, resume_all
from storycheck_tui.cli.progress import checked_percent
from storycheck_tui.cli.show import Column, json_line, print_table, safe
from storycheck_tui.errors import InputError
from storycheck_tui.exports import ExportTally, export_to_file, iso as _iso, write_export
from storycheck_tui.states import BatchState
from storycheck_tui.words import plural
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import BatchLog
from storycheck_tui.store.spend import spend_of


@contextlib.contextmanager
def opened(args: Namespace) -> Iterator[Store]:
    """Logging on, the database open for the command, closed after it whatever happens. A
    ``--config`` given to a command that needs no settings is still read: a missing or bad
    file is an error, not silently ignored."""
    if getattr(args, "config", None):
        settings_from(args)
    setup = start_logging(args)
    store = open_db(args, log_sink=setup.sink)
    try:
        yield store
    finally:
        store.close()


def add_command(args: Namespace) -> int:
    """The new batch's id on stdout (``id=$(storycheck add leads.txt)``), or one JSON object
    with ``--json``; what was imported on stderr."""
    start_logging(args)
    plist = read_profiles(args)  # input errors before the database is touched
    with opened(args) as store:
        made = import_from(store, args, plist)
    if getattr(args, "json", False):
        print(json_line({"id": made.batch_id, "name": made.name, "profiles": made.profiles,
                         "duplicates": made.duplicates, "invalid": made.invalid}))
    else:
        print(made.batch_id)
    return 0


def batches_command(args: Namespace) -> int:
    """The batches; below the table (in ``--json``: each line's ``engine``), the source's pace
    and circuit as the live workers report them, and the runtime knobs in force."""
    with opened(args) as store:
        views = ops.list_batches(store)
        spends = {b.id: spend_of(store, b.id) for b in views} if args.json else {}
        engine = engine_facts(store)
    if args.json:
        for b in views:
            print(json_line({"id": b.id, "name": b.name, "state": b.state, "priority": b.priority,
                             "total": b.total, "completed": b.completed, "succeeded": b.succeeded,
                             "failed": b.failed, "cancelled": b.cancelled, "created_at": _iso(b.created_at),
                             "finished_at": _iso(b.finished_at), "reason": b.reason, "watch": b.watch,
                             "requests": b.requests, "max_requests": b.max_requests,
                             "requests_by_result": spends[b.id], "engine": engine}))
        return 0
    if not views:
        print("no batches yet (create one with: storycheck add PROFILES, or storycheck run PROFILES)")
        return 0

    def progress(b) -> str:  # checked profiles: a cancelled batch is not 100 %
        return f"{b.completed}/{b.total} {checked_percent(b)}"

    print_table([Column("ID", right=True), Column("NAME", max_width=24), Column("STATE"),
                 Column("PROGRESS", right=True), Column("OK", right=True), Column("FAILED", right=True),
                 Column("CANCELLED", right=True), Column("CREATED")],
                ((b.id, b.name, b.state, progress(b), b.succeeded, b.failed, b.cancelled or "-", _iso(b.created_at))
                 for b in views))
    for line in engine_lines(engine):
        print(line)
    return 0


def _batch_cmd(args: Namespace, action, every=None) -> int:
    """``action`` on the batch named by BATCH; with ``--all`` (pause, resume), ``every`` instead."""
    every_batch = getattr(args, "all", False)
    if every_batch == (args.batch is not None):
        raise InputError("give a BATCH (id or name) or --all" if args.batch is None
                         else "give a BATCH or --all, not both")
    with opened(args) as store:
        if every_batch:
            return every(store)
        b = ops.find_batch(store, args.batch)
        return action(store, b)


def pause_command(args: Namespace) -> int:
    def act(store, b):
        if ops.pause(store, b.id, "paused by operator"):
            print(f"batch {b.id} paused")
            return 0
        print(f"storycheck: batch {b.id} is {b.state}: only queued or running batches can be paused", file=sys.stderr)
        return 2
    return _batch_cmd(args, act, pause_all)


def resume_command(args: Namespace) -> int:
    def act(store, b):
        if ops.resume(store, b.id):
            print(f"batch {b.id} resumed")
            return 0
        print(f"storycheck: batch {b.id} is {b.state}: only paused batches can be resumed", file=sys.stderr)
        return 2
    return _batch_cmd(args, act, resume_all)


def cancel_command(args: Namespace) -> int:
    def act(store, b):
        if b.state in (BatchState.CANCELLED, BatchState.FINISHED):
            print(f"storycheck: batch {b.id} is already {b.state}", file=sys.stderr)
            return 2
        n = ops.cancel(store, b.id)
        print(f"batch {b.id} cancelled: {plural(n, 'unchecked profile')} dropped")
        return 0
    return _batch_cmd(args, act)


def retry_failed_command(args: Namespace) -> int:
    def act(store, b):
        n = ops.retry_failed(store, b.id)
        print(f"batch {b.id}: {plural(n, 'failed profile')} queued again" + ("" if n else " (nothing failed)"))
        return 0
    return _batch_cmd(args, act)


# --- proxies -------------------------------------------------------------------------------------

def proxies_add_command(args: Namespace) -> int:
    with opened(args) as store:
        done = import_proxies(store, args.file, skip_invalid=args.skip_invalid)
        total = len(ops.list_proxies(store))
    renewed = f", {plural(done.renewed, 'refused proxy', 'refused proxies')} given new credentials" if done.renewed else ""
    print(f"{plural(done.added, 'proxy', 'proxies')} added{renewed} ({total:,} in the pool)")
    return 0


def proxies_list_command(args: Namespace) -> int:
    with opened(args) as store:
        rows = ops.list_proxies(store)
    if getattr(args, "json", False):
        for p in rows:
            print(json_line({"id": p.id, "label": p.label, "state": p.state, "successes": p.successes,
                             "failures": p.failures, "last_latency_ms": p.last_latency_ms,
                             "last_error": safe(p.last_error) if p.last_error else None}))
        return 0
    if not rows:
        print("no proxies (add some with: storycheck proxies add FILE); checks then go direct")
        return 0
    print_table([Column("ID", right=True), Column("PROXY", max_width=40), Column("STATE"), Column("OK", right=True),
                 Column("FAIL", right=True), Column("LATENCY", right=True), Column("LAST ERROR", max_width=60)],
                ((p.id, p.label, p.state, p.successes, p.failures,
                  f"{p.last_latency_ms:.0f} ms" if p.last_latency_ms is not None else "-", p.last_error)
                 for p in rows))
    return 0


def proxies_check_command(args: Namespace) -> int:
    from storycheck_tui.engine.proxysync import load_routes
    from storycheck_tui.engine.wiring import build_source
    from storycheck_tui.errors import CheckError

    settings = settings_from(args)
    source = build_source(settings)  # a missing [source] is said before anything is opened
    bad = 0
    try:
        with opened(args) as store:
            routes = load_routes(store)
        if not routes:
            print("no proxies to check")
            return 0
        for r in routes:
            try:
                ms = source.health(r)
                print(f"{safe(r.label):<36} ok       {ms:.0f} ms")
            except CheckError as err:
                bad += 1
                print(f"{safe(r.label):<36} FAILED   {safe(err.kind)}: {safe(err.message)}")
    finally:
        source.close()
    return 1 if bad else 0


def _proxy_toggle(args: Namespace, disabled: bool) -> int:
    with opened(args) as store:
        p = ops.find_proxy(store, args.proxy)
        changed = ops.set_proxy_disabled(store, p.id, disabled)
    word = "disabled" if disabled else "enabled"
    label = safe(p.label)
    print(f"proxy {p.id} {label} {word}" if changed else f"proxy {p.id} {label} was already {word}")
    return 0


def proxies_remove_command(args: Namespace) -> int:
    with opened(args) as store:
        p = ops.find_proxy(store, args.proxy)
        ops.remove_proxy(store, p.id)
    print(f"proxy {p.id} {safe(p.label)} removed (running workers drop it within seconds)")
    return 0


def proxies_disable_command(args: Namespace) -> int:
    return _proxy_toggle(args, True)


def proxies_enable_command(args: Namespace) -> int:
    return _proxy_toggle(args, False)


# --- export and logs ----------------------------------------------------------------------------

def export_command(args: Namespace) -> int:
    tally = ExportTally()
    stories = bool(getattr(args, "stories", False))
    with opened(args) as store:
        b = ops.find_batch(store, args.batch)
        if args.output:
            n = export_to_file(store, b.id, args.format, args.output, stories=stories, tally=tally)
            where = f"written to {args.output}"
        else:
            n = write_export(store, b.id, args.format, sys.stdout, stories=stories, tally=tally)
            where = "exported"
    what = plural(n, "story row", "story rows") if stories else plural(n, "row")
    print(f"{what} of batch {b.id} {safe(where)}: {tally.describe()}", file=sys.stderr)
    return 0


LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def logs_command(args: Namespace) -> int:
    with opened(args) as store:
        q = BatchLog.select().order_by(BatchLog.id.desc())
        if args.batch:
            q = q.where(BatchLog.batch == ops.find_batch(store, args.batch).id)
        wanted = [lvl for lvl, n in LEVELS.items() if n >= LEVELS[args.level]]
        q = q.where(BatchLog.level.in_(wanted))
        if args.limit:
            q = q.limit(args.limit)
        rows = list(q)[::-1]
    for r in rows:
        if args.json:
            print(json_line({"time": _iso(r.created), "level": r.level, "event": r.event, "batch": r.batch,
                             "job": r.job, "username": r.username, "proxy": r.proxy, "message": r.message,
                             "details": json.loads(r.details) if r.details else None}))
        else:
            print(f"{_iso(r.created)} {safe(r.level):<7} {safe(r.event or '-'):<20} {safe(r.message)}")
    return 0

