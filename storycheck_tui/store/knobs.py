"""Runtime knobs: settings an operator changes while workers run (``storycheck set``, the
console's ``K``), one ``knob`` row each. Every worker's keeper reads them twice a second, so a
change reaches every worker within a second, the way a pause does (through the database).

* ``pace-cap``: a cap on requests/s to the source, per worker; replaces ``[source] max_rate``
  while set (none: the worker's own setting; the engine finds the pace below it);
* ``threads``: check threads per worker; replaces ``[engine] workers`` / ``--workers`` while set.

No row: each worker's own settings. Nothing here is a secret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from storycheck_tui.errors import InputError
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Knob
from storycheck_tui.store.queue import now

PACE_CAP = "pace-cap"
THREADS = "threads"
#: what a knob means, for help texts and errors
HELP = {PACE_CAP: "requests/s to the source per worker, at most", THREADS: "check threads per worker"}
NAMES = tuple(HELP)
#: threads per worker are at most this many (each is a thread with its own connection to the source)
MAX_THREADS = 256
#: words that clear a knob (back to each worker's own settings)
CLEAR = ("none", "default", "auto", "off", "")


@dataclass(frozen=True)
class Knobs:
    """The knobs in force (None: each worker's own setting)."""

    pace_cap: float | None = None
    threads: int | None = None


def parse(name: str, text: str) -> float | None:
    """The value of knob ``name`` from an operator's text (None: clear it); InputError when it
    is not one."""
    if name not in HELP:
        raise InputError(f"no knob named {name!r}: knobs are {', '.join(NAMES)}")
    word = text.strip().lower()
    if word in CLEAR:
        return None
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if name == THREADS:
        if not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_THREADS:
            raise InputError(f"threads: {text!r} is not a whole number from 1 to {MAX_THREADS} (or 'default')")
    elif not math.isfinite(value) or value <= 0:
        raise InputError(f"pace-cap: {text!r} is not a positive number of requests/s (or 'default')")
    return value


def read(store: Store) -> Knobs:
    """The knobs in force (one small statement: the keeper calls it twice a second)."""
    rows = dict(store.db.execute_sql("SELECT name, value FROM knob").fetchall())
    cap, threads = rows.get(PACE_CAP), rows.get(THREADS)
    return Knobs(float(cap) if cap is not None else None, int(threads) if threads is not None else None)


def set_knob(store: Store, name: str, value: float | None) -> None:
    """Set knob ``name`` (None: clear it, back to each worker's own setting)."""
    if name not in HELP:
        raise InputError(f"no knob named {name!r}: knobs are {', '.join(NAMES)}")
    with store.db.atomic():
        if value is None:
            Knob.delete().where(Knob.name == name).execute()
        else:
            ts = now(store)
            Knob.insert(name=name, value=float(value), set_at=ts).on_conflict(
                conflict_target=[Knob.name], update={Knob.value: float(value), Knob.set_at: ts}).execute()


def describe(k: Knobs) -> list[str]:
    """The knobs that are set, as an operator reads them (empty: none)."""
    out = []
    if k.pace_cap is not None:
        out.append(f"pace cap {k.pace_cap:g}/s")
    if k.threads is not None:
        out.append(f"{k.threads} thread{'s' if k.threads != 1 else ''} per worker")
    return out


__all__ = ["PACE_CAP", "THREADS", "NAMES", "HELP", "MAX_THREADS", "Knobs", "parse", "read", "set_knob", "describe"]
