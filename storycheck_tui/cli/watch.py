"""``storycheck watch …``, ``storycheck events``, ``storycheck history``: monitoring commands.

Rounds run in ``storycheck worker`` (or a console with a source); these commands only read
and change the watch table, the history and the outbox.
"""

from __future__ import annotations

import argparse
import csv
import sys
from argparse import Namespace
from datetime import datetime, timezone

from storycheck_tui.cli.common import open_db, start_logging
from storycheck_tui.cli.show import Column, json_line, print_table, safe
from storycheck_tui.errors import InputError
from storycheck_tui.exports import iso
from storycheck_tui.inputs.profiles import load_profiles
from storycheck_tui.monitor.signing import ENV_VAR, new_secret
from storycheck_tui.store import history as hist
from storycheck_tui.store import reads
from storycheck_tui.store import watches as w


def _open(args: Namespace):
    setup = start_logging(args)
    return open_db(args, log_sink=setup.sink)


def _usernames(path: str) -> list[str]:
    plist = load_profiles(path)
    return plist.usernames


def add_command(args: Namespace) -> int:
    every = w.parse_duration(args.every)
    usernames = _usernames(args.profiles)  # input errors before the database is touched
    store = _open(args)
    try:
        w.add_watch(store, args.name, usernames, every, args.webhook)
    finally:
        store.close()
    print(f"watch {args.name!r}: {len(usernames)} profiles every {w.format_duration(every)}; a running "
          f"`storycheck worker` starts its rounds", file=sys.stderr)
    return 0


def _next_round(v: reads.WatchOverview, now: float, workers: int) -> str:
    """When the next round starts: a time, or "due now", or why a due round does not start."""
    if v.paused:
        return "paused"
    if v.next_round_at > now:
        return iso(v.next_round_at)
    return "due now" if workers else "due (no worker running)"


def _row(v: reads.WatchOverview, now: float, workers: int) -> dict:
    last = v.last_round
    return {"name": v.name, "every": w.format_duration(v.every), "every_seconds": v.every, "profiles": v.profiles,
            "paused": v.paused, "webhook": v.webhook, "next_round_at": iso(v.next_round_at),
            "next_round": _next_round(v, now, workers), "rounds": v.rounds,
            "last_round": None if last is None else {
                "batch": last.batch_id, "state": last.state, "total": last.total, "completed": last.completed,
                "failed": last.failed, "started_at": iso(last.created_at), "finished_at": iso(last.finished_at)},
            "new_stories": v.new_stories}


def _last(v: reads.WatchOverview) -> str:
    last = v.last_round
    return "-" if last is None else f"#{v.rounds} {last.state} {last.completed}/{last.total}"


def list_command(args: Namespace) -> int:
    store = _open(args)
    try:
        views = reads.watch_overview(store, recent=0)
        now = reads.database_now(store)  # heartbeats are stamped with the database's clock
        workers = len(reads.live_workers(reads.workers(store, now=now), now))
    finally:
        store.close()
    if args.json:
        for v in views:
            print(json_line(_row(v, now, workers)))
        return 0
    if not views:
        print("no watches yet (create one with: storycheck watch add FILE --name NAME --every 15m)")
        return 0
    print_table([Column("NAME", max_width=24), Column("EVERY", right=True), Column("PROFILES", right=True),
                 Column("STATE"), Column("NEXT ROUND"), Column("LAST ROUND"), Column("NEW STORIES", right=True),
                 Column("WEBHOOK", max_width=40)],
                ((v.name, w.format_duration(v.every), v.profiles, "paused" if v.paused else "active",
                  _next_round(v, now, workers), _last(v), v.new_stories, v.webhook or "-") for v in views))
    return 0


def _simple(args: Namespace, action, done: str) -> int:
    store = _open(args)
    try:
        changed = action(store)
    finally:
        store.close()
    print(f"watch {args.name!r} {done}" if changed is not False else f"watch {args.name!r}: nothing to change",
          file=sys.stderr)
    return 0


def pause_command(args: Namespace) -> int:
    return _simple(args, lambda s: w.set_paused(s, args.name, True), "paused")


def resume_command(args: Namespace) -> int:
    return _simple(args, lambda s: w.set_paused(s, args.name, False), "resumed")


def remove_command(args: Namespace) -> int:
    return _simple(args, lambda s: w.remove_watch(s, args.name), "removed (its rounds, history and events stay)")


def set_command(args: Namespace) -> int:
    every = w.parse_duration(args.every) if args.every else None
    if every is None and args.webhook is None:
        raise InputError("watch set: give --every DURATION and/or --webhook URL ('' removes the webhook)")
    store = _open(args)
    try:
        v = w.update_watch(store, args.name, every=every, webhook=args.webhook or None,
                           clear_webhook=args.webhook == "")
    finally:
        store.close()
    print(f"watch {v.name!r}: every {w.format_duration(v.every)}, webhook {v.webhook or 'none'}", file=sys.stderr)
    return 0


def profiles_command(args: Namespace) -> int:
    usernames = _usernames(args.file)
    store = _open(args)
    try:
        if args.action == "add-profiles":
            n = w.add_profiles(store, args.name, usernames)
            print(f"watch {args.name!r}: {n} profiles added", file=sys.stderr)
        else:
            n = w.remove_profiles(store, args.name, usernames)
            print(f"watch {args.name!r}: {n} profiles removed", file=sys.stderr)
    finally:
        store.close()
    return 0


def secret_command(args: Namespace) -> int:
    print(new_secret())
    print(f"set it for every worker: export {ENV_VAR}=<the line above> (it is never stored)", file=sys.stderr)
    return 0


def _time(text: str) -> float:
    """An ISO time (``2026-11-30T14:00``, UTC unless it says) or a duration ago (``1h``)."""
    try:
        return datetime.now(timezone.utc).timestamp() - w.parse_duration(text)
    except InputError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since {text!r}: an ISO time (2026-11-30T14:00) or a duration ago (30m, 1d)") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def events_command(args: Namespace) -> int:
    since = _time(args.since) if args.since else None
    store = _open(args)
    try:
        rows = hist.events(store, watch=args.watch, since=since)
        if args.format == "csv":
            out = csv.writer(sys.stdout)
            out.writerow(["id", "type", "watch", "username", "story_id", "taken_at", "at", "delivery", "from", "to"])
            for e in rows:
                j = e.as_json()
                out.writerow([e.id, e.type, e.watch, e.username, e.story_id or "", iso(e.taken_at), iso(e.at),
                              e.delivery, j.get("from", ""), j.get("to", "")])
        elif args.json or args.format == "jsonl":
            for e in rows:
                j = e.as_json()
                j["taken_at"], j["at"] = iso(e.taken_at), iso(e.at)
                j["attempts"], j["last_error"] = e.attempts, e.last_error  # why a delivery is late or failed
                print(json_line(j))
        else:
            rows = list(rows)
            if not rows:
                print("no events yet")
                return 0
            print_table([Column("ID", right=True), Column("TYPE"), Column("WATCH", max_width=20),
                         Column("USERNAME", max_width=30), Column("STORY / CHANGE", max_width=30), Column("AT"),
                         Column("DELIVERY")],
                        ((e.id, e.type, e.watch, e.username,
                          e.story_id or f"{e.details.get('from')} -> {e.details.get('to')}", iso(e.at), e.delivery)
                         for e in rows))
    finally:
        store.close()
    return 0


def history_command(args: Namespace) -> int:
    store = _open(args)
    try:
        stories = hist.history(store, args.username, watch=args.watch)
        changes = hist.status_history(store, args.username, watch=args.watch)
    finally:
        store.close()
    if args.json:
        for s in stories:
            j = s.as_json()
            for k in ("taken_at", "expires_at", "first_seen", "last_seen"):
                j[k] = iso(j[k])
            print(json_line(j))
        return 0
    if not stories and not changes:
        print(f"nothing seen for {safe(args.username)} in any watch")
        return 0
    if changes:
        print("status: " + ", ".join(f"{safe(c.status)} since {iso(c.at)} ({safe(c.watch)})" for c in changes))
    print_table([Column("WATCH", max_width=20), Column("STORY", max_width=30), Column("TAKEN"), Column("FIRST SEEN"),
                 Column("LAST SEEN")],
                ((s.watch, s.story_id, iso(s.taken_at), iso(s.first_seen), iso(s.last_seen)) for s in stories))
    return 0


def register(sub, cmd, common) -> None:
    """Add ``watch``, ``events`` and ``history`` to the parser (``cmd`` makes a command)."""
    p = cmd("watch", list_command, "watchlists: profiles checked on a schedule (rounds run in storycheck worker)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    wsub = p.add_subparsers(title="watch commands", metavar="ACTION")

    def wcmd(name: str, handler, help: str) -> argparse.ArgumentParser:
        pp = wsub.add_parser(name, help=help, description=help)
        common(pp)
        pp.set_defaults(handler=handler)
        return pp

    pp = wcmd("add", add_command, "create a watch from a profiles file")
    pp.add_argument("profiles", metavar="FILE", help="a .txt (one username per line) or .csv file")
    pp.add_argument("--name", required=True)
    pp.add_argument("--every", required=True, metavar="DURATION", help="30s, 15m, 1h, 1d")
    pp.add_argument("--webhook", metavar="URL", help="POST each event here (Standard Webhooks signatures)")
    pp = wcmd("list", list_command, "list watches")
    pp.add_argument("--json", action="store_true", help="one JSON object per line")
    for name, handler, text in (("pause", pause_command, "stop starting rounds of a watch"),
                                ("resume", resume_command, "start rounds of a paused watch again"),
                                ("remove", remove_command, "remove a watch (its rounds, history and events stay)")):
        pp = wcmd(name, handler, text)
        pp.add_argument("name", metavar="NAME")
    pp = wcmd("set", set_command, "change a watch's interval or webhook")
    pp.add_argument("name", metavar="NAME")
    pp.add_argument("--every", metavar="DURATION")
    pp.add_argument("--webhook", metavar="URL", help="'' removes it")
    for name, text in (("add-profiles", "add the profiles of FILE to a watch"),
                       ("remove-profiles", "remove the profiles of FILE from a watch")):
        pp = wcmd(name, profiles_command, text)
        pp.set_defaults(action=name)
        pp.add_argument("name", metavar="NAME")
        pp.add_argument("file", metavar="FILE")
    wcmd("secret", secret_command, f"print a fresh webhook secret for {ENV_VAR}")

    p = cmd("events", events_command, "list monitoring events (story.new, profile.changed) and their delivery")
    p.add_argument("--watch", metavar="NAME")
    p.add_argument("--since", metavar="TIME", help="an ISO time or a duration ago (1h)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")

    p = cmd("history", history_command, "the stories seen for a profile, and its status over time")
    p.add_argument("username", metavar="USERNAME")
    p.add_argument("--watch", metavar="NAME")
    p.add_argument("--json", action="store_true", help="one JSON object per story")
