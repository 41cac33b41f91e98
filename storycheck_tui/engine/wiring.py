"""The composition root: settings, logging, store, proxies and runner, built in one place.

Every entry point that runs the engine (``run``, ``worker``, the console, the demo) opens
it with :func:`open_engine`; tests and benchmarks that bring their own store use
:func:`build_runner`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine.proxysync import build_pool
from storycheck_tui.engine.runner import Runner
from storycheck_tui.errors import InputError
from storycheck_tui.logs import BatchLogSink
from storycheck_tui.sources.base import StorySource
from storycheck_tui.store.db import Store, open_store


def build_source(settings: Settings) -> StorySource:
    from storycheck_tui.sources.presets import build_source as build

    src = settings.source
    if not src.url:
        raise InputError("no story source configured: give --config FILE with a [source] table that has a url "
                         "(see README), or try `storycheck demo`", source=settings.path)
    return build(src)


def build_monitor(store: Store):
    """The watch round scheduler and the webhook deliverer that run next to a worker's check
    threads (``storycheck worker``, a console with a source); start() and stop() them."""
    from storycheck_tui.monitor.service import Monitor

    return Monitor(store)


def installed_batch_log() -> BatchLogSink | None:
    """The batch-log sink that logging set-up installed on storycheck's logger, if any."""
    for h in logging.getLogger(logs.LOGGER_NAME).handlers:
        if isinstance(h, BatchLogSink):
            return h
    return None


def build_runner(store: Store, settings: Settings, *, workers: int | None = None,
                 batch_ids: list[int] | None = None, source: StorySource | None = None,
                 batch_log: BatchLogSink | None = None) -> Runner:
    """A runner for this process; ``workers=0`` makes a watch-only runner (no source needed).

    ``batch_log``: where records for the batch_log table queue up (default: the store's, else
    the sink that logging set-up installed; none without it)."""
    threads = settings.engine.workers if workers is None else workers
    if threads and source is None:
        source = build_source(settings)
    pool = build_pool(store, settings.proxies)
    return Runner(store, settings, source, pool, workers=threads, batch_ids=batch_ids,
                  batch_log=batch_log or store.log_sink or installed_batch_log())


@dataclass
class Engine:
    """One process's engine: its settings, logging, open store and (not yet started) runner."""

    settings: Settings
    log: logs.Logging
    store: Store
    runner: Runner
    batch_ids: list[int] | None


@contextlib.contextmanager
def open_engine(settings: Settings, log: logs.Logging, *, db: str | None = None, store: Store | None = None,
                prepare: Callable[[Store], list[int] | None] | None = None, watch_only: bool = False,
                ) -> Iterator[Engine]:
    """Build the engine: the source first (a bad ``[source]`` fails before anything is written),
    then the store (``db``, or the given ``store``, which stays open), ``prepare`` (import
    proxies, create a batch: returns the batch ids to work on, None for all), the runner.
    The store this opens is closed on exit; the runner is the caller's to start and stop."""
    threads = 0 if watch_only else settings.engine.workers
    source = build_source(settings) if threads else None
    own = store is None
    try:
        if store is None:
            store = open_store(db, pool_size=settings.engine.workers + 6, log_sink=log.sink)
        batch_ids = prepare(store) if prepare is not None else None
        runner = build_runner(store, settings, workers=threads, batch_ids=batch_ids, source=source,
                              batch_log=log.sink)
    except BaseException:
        if source is not None:
            source.close()
        if own and store is not None:
            store.close()
        raise
    try:
        yield Engine(settings, log, store, runner, batch_ids)
    finally:
        if own:
            store.close()
