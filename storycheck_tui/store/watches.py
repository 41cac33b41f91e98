"""Watchlists and their rounds.

A watch is a list of profiles checked every ``every`` seconds. Each round is an ordinary
batch (``batch.watch_id``), so counters, pause, export, the console and workers on many
machines apply to it unchanged.

Rounds are coordinated in the database (:func:`start_due_rounds`): the worker whose
transaction moves ``watch.next_round_at`` past the due time (a conditional UPDATE on the old
value) creates the round in that same transaction; any other worker's UPDATE then changes no
row and it creates nothing. So there is exactly one round per due time however many workers
run. A round is not started while the previous one of the same watch is unfinished (queued,
running or paused); after downtime the next due time is the first one after now on the
watch's grid, so one catch-up round runs, not a replay of every missed one.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from storycheck_tui import logs
from storycheck_tui.errors import InputError, StorycheckError
from storycheck_tui.masking import add_webhook_secrets, mask_webhook
from storycheck_tui.states import OPEN, BatchState, sql_list
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Batch, Watch, WatchProfile
from storycheck_tui.store.queue import now

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
WATCH_ADDED = "WATCH_ADDED"
#: the shortest interval a watch accepts
MIN_EVERY = 1.0


class NoSuchWatch(StorycheckError):
    pass


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``1h``, ``1d`` (a number and one unit) as seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise InputError(f"{text!r} is not a duration: a number and one of s, m, h, d (30s, 15m, 1h, 1d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds < MIN_EVERY:
        raise InputError(f"{text!r}: a watch runs at most once a second")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def check_webhook(url: str | None) -> str | None:
    """A webhook URL: http(s) with a host (loopback and private addresses are allowed)."""
    if url is None or url == "":
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise InputError(f"{mask_webhook(url)}: not a valid webhook URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InputError(f"{mask_webhook(url)}: a webhook URL is http:// or https:// with a host")
    add_webhook_secrets(url)
    return url


@dataclass(frozen=True)
class WatchView:
    """A watch as the CLI and the console show it (the webhook masked)."""

    id: int
    name: str
    every: float
    webhook: str | None  # masked
    paused: bool
    created_at: float
    next_round_at: float
    last_round: int | None
    rounds: int
    profiles: int


def _view(w: Watch, profiles: int) -> WatchView:
    return WatchView(w.id, w.name, w.every, mask_webhook(w.webhook) if w.webhook else None, bool(w.paused), w.created_at,
                     w.next_round_at, w.last_round, w.rounds, profiles)


def _counts(store: Store) -> dict[int, int]:
    rows = store.db.execute_sql("SELECT watch_id, COUNT(*) FROM watch_profile GROUP BY watch_id").fetchall()
    return {int(w): int(n) for w, n in rows}


def add_watch(store: Store, name: str, usernames: list[str], every: float, webhook: str | None = None) -> int:
    """Create a watch; its first round is due at once."""
    name = name.strip()
    if not name:
        raise InputError("a watch needs a name (--name NAME)")
    webhook = check_webhook(webhook)
    with store.db.atomic():
        if Watch.get_or_none(Watch.name == name) is not None:
            raise InputError(f"a watch named {name!r} exists already (storycheck watch list)")
        ts = now(store)
        watch = Watch.create(name=name, every=every, webhook=webhook, created_at=ts, next_round_at=ts)
        _insert_profiles(store, watch.id, usernames)
    logs.event(logging.INFO, WATCH_ADDED, f"watch {name!r} added: {len(usernames)} profiles every {format_duration(every)}")
    return watch.id


def _insert_profiles(store: Store, watch_id: int, usernames: list[str]) -> None:
    store.dialect.insert_rows(store.db, "watch_profile", ("watch_id", "username"),
                              [(watch_id, u) for u in usernames], ignore_conflicts=True)


def find_watch(store: Store, name: str) -> Watch:
    w = Watch.get_or_none(Watch.name == name)
    if w is None:
        raise NoSuchWatch(f"no watch named {name!r} (storycheck watch list)")
    return w


def list_watches(store: Store) -> list[WatchView]:
    counts = _counts(store)
    return [_view(w, counts.get(w.id, 0)) for w in Watch.select().order_by(Watch.id)]


def get_watch(store: Store, name: str) -> WatchView:
    w = find_watch(store, name)
    return _view(w, _counts(store).get(w.id, 0))


def set_paused(store: Store, name: str, paused: bool) -> bool:
    w = find_watch(store, name)
    with store.db.atomic():
        n = Watch.update(paused=paused).where((Watch.id == w.id) & (Watch.paused != paused)).execute()
    return n == 1


def update_watch(store: Store, name: str, *, every: float | None = None, webhook: str | None = None,
                 clear_webhook: bool = False) -> WatchView:
    w = find_watch(store, name)
    fields: dict = {}
    if every is not None:
        fields[Watch.every] = every
    if clear_webhook:
        fields[Watch.webhook] = None
    elif webhook is not None:
        fields[Watch.webhook] = check_webhook(webhook)
    if fields:
        with store.db.atomic():
            Watch.update(fields).where(Watch.id == w.id).execute()
    return get_watch(store, name)


def remove_watch(store: Store, name: str) -> None:
    """Remove a watch and its profile list; its rounds (batches), history and events stay."""
    w = find_watch(store, name)
    p = store.dialect.param
    with store.db.atomic():
        store.db.execute_sql(f"DELETE FROM watch_profile WHERE watch_id = {p}", (w.id,))
        store.db.execute_sql(f"DELETE FROM watch WHERE id = {p}", (w.id,))


def add_profiles(store: Store, name: str, usernames: list[str]) -> int:
    """Add profiles to a watch (from its next round on); returns how many were new."""
    w = find_watch(store, name)
    with store.db.atomic():
        before = WatchProfile.select().where(WatchProfile.watch_id == w.id).count()
        _insert_profiles(store, w.id, usernames)
        return WatchProfile.select().where(WatchProfile.watch_id == w.id).count() - before


def remove_profiles(store: Store, name: str, usernames: list[str]) -> int:
    w = find_watch(store, name)
    with store.db.atomic():
        n = 0
        for i in range(0, len(usernames), 500):
            n += WatchProfile.delete().where((WatchProfile.watch_id == w.id)
                                             & WatchProfile.username.in_(usernames[i:i + 500])).execute()
    return n


def watch_usernames(store: Store, watch_id: int) -> list[str]:
    return [u for (u,) in WatchProfile.select(WatchProfile.username).where(WatchProfile.watch_id == watch_id)
            .order_by(WatchProfile.id).tuples()]


# --- rounds -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundStarted:
    watch: str
    batch_id: int
    profiles: int
    number: int  # 1 for the watch's first round; the batch is named "WATCH #N"


def next_due(due: float, every: float, ts: float) -> float:
    """The first time on the grid ``due + k * every`` after ``ts`` (one catch-up, no replay)."""
    if ts < due:
        return due
    return due + (math.floor((ts - due) / every) + 1) * every


def start_due_rounds(store: Store) -> list[RoundStarted]:
    """Start the round of every due, unpaused watch whose previous round is finished.

    Safe to call from any number of workers at once (see the module docstring)."""
    ts = now(store)
    due = list(Watch.select(Watch.id).where((Watch.paused == False) & (Watch.next_round_at <= ts))  # noqa: E712
               .order_by(Watch.next_round_at).tuples())
    started = []
    for (watch_id,) in due:
        r = _start_round(store, watch_id)
        if r is not None:
            started.append(r)
    for r in started:
        logs.event(logging.INFO, logs.BATCH_CREATED,
                   f"batch {r.batch_id} '{r.watch} #{r.number}' created with {r.profiles} profiles "
                   f"(round {r.number} of watch {r.watch!r})",
                   batch_id=r.batch_id)
    return started


def _start_round(store: Store, watch_id: int) -> RoundStarted | None:
    db = store.db
    p = store.dialect.param
    with db.atomic():
        ts = now(store)
        w = Watch.get_or_none(Watch.id == watch_id)
        if w is None or w.paused or w.next_round_at > ts:
            return None
        if w.last_round is not None:
            busy = db.execute_sql(f"SELECT 1 FROM batch WHERE id = {p} AND state IN {sql_list(OPEN)}",
                                  (w.last_round,)).fetchone()
            if busy:
                return None  # the previous round is unfinished: this one waits for it
        nxt = next_due(w.next_round_at, w.every, ts)
        claimed = db.execute_sql(f"UPDATE watch SET next_round_at = {p}, rounds = rounds + 1 "
                                 f"WHERE id = {p} AND next_round_at = {p}", (nxt, w.id, w.next_round_at)).rowcount
        if claimed != 1:
            return None  # another worker started this round
        usernames = watch_usernames(store, w.id)
        batch = Batch.create(name=f"{w.name} #{w.rounds + 1}", state=BatchState.QUEUED if usernames else BatchState.FINISHED,
                             created_at=ts, finished_at=None if usernames else ts, total_profiles=len(usernames),
                             watch_id=w.id, source_file=None)
        store.dialect.insert_jobs(db, batch.id, usernames)
        db.execute_sql(f"UPDATE watch SET last_round = {p} WHERE id = {p}", (batch.id, w.id))
    return RoundStarted(w.name, batch.id, len(usernames), w.rounds + 1)


__all__ = ["NoSuchWatch", "WatchView", "RoundStarted", "parse_duration", "format_duration", "check_webhook",
           "add_watch", "find_watch", "list_watches", "get_watch", "set_paused", "update_watch", "remove_watch",
           "add_profiles", "remove_profiles", "watch_usernames", "next_due", "start_due_rounds", "MIN_EVERY"]
