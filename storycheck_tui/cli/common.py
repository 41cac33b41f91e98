"""What every command needs: settings, logging, the database, input files."""

from __future__ import annotations

import dataclasses
import logging
import sys
from argparse import Namespace

from storycheck_tui import logs
from storycheck_tui.config import Settings, load_settings
from storycheck_tui.inputs.profiles import ProfileList, load_profiles
from storycheck_tui.inputs.proxies import load_proxies
from storycheck_tui.intake import Imported, import_batch
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store, open_store


def settings_from(args: Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    workers = getattr(args, "workers", None)
    if isinstance(workers, int):
        if workers < 1:
            from storycheck_tui.errors import InputError

            raise InputError(f"--workers must be at least 1, got {workers}")
        settings = settings.replace(engine=dataclasses.replace(settings.engine, workers=workers))
    return settings


def start_logging(args: Namespace, *, console: bool = False) -> logs.Logging:
    verbose = getattr(args, "verbose", 0) or 0
    level = None if console else (logging.DEBUG if verbose >= 2 else logging.WARNING if verbose == 1 else logging.CRITICAL)
    # log_dir: the demo's own directory (it must not write to the user's log file)
    return logs.setup_logging(getattr(args, "log_dir", None), stderr_level=level,
                              debug=bool(getattr(args, "debug", False)) or verbose >= 2)


def open_db(args: Namespace, settings: Settings | None = None, *, log_sink: logs.BatchLogSink | None = None) -> Store:
    """The database of ``--db``; ``log_sink`` (from :func:`start_logging`) is where batch
    operations find the records to store in ``batch_log``."""
    threads = settings.engine.workers if settings else 4
    store = open_store(getattr(args, "db", None), pool_size=threads + 6, log_sink=log_sink)
    for notice in store.notices:  # permissions tightened on open: the operator should know
        print(f"storycheck: warning: {notice}", file=sys.stderr)
    return store


def read_profiles(args: Namespace) -> ProfileList:
    plist = load_profiles(args.profiles, skip_invalid=args.skip_invalid)
    for err in plist.invalid:
        print(f"storycheck: skipped {err}", file=sys.stderr)
    return plist


def import_proxies(store: Store, path: str | None, *, skip_invalid: bool = False) -> ops.ProxiesAdded:
    if not path:
        return ops.ProxiesAdded()
    specs = load_proxies(path, skip_invalid=skip_invalid)
    return ops.add_proxies(store, specs)


def import_from(store: Store, args: Namespace, plist: ProfileList) -> Imported:
    """Create the batch; say what was imported (and whether its name is now shared) on stderr."""
    budget = getattr(args, "max_requests", None)
    if budget is not None and budget < 1:
        from storycheck_tui.errors import InputError

        raise InputError(f"--max-requests must be at least 1, got {budget}")
    made = import_batch(store, args.profiles, name=args.name or "", priority=args.priority, profiles=plist,
                        max_requests=budget)
    print(made.describe(), file=sys.stderr)
    try:
        ops.find_batch(store, made.name)
    except ops.AmbiguousBatch as shared:  # commands that take the name will ask for the id
        print(f"storycheck: note: {shared}", file=sys.stderr)
    except ops.NoSuchBatch:  # an all-digit name is read as an id
        pass
    return made


def create_batch_from(store: Store, args: Namespace, plist: ProfileList) -> int:
    return import_from(store, args, plist).batch_id
