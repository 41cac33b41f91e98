"""Build a ready-to-start Runner from settings: the source, the pool and the store."""

from __future__ import annotations

from storycheck_tui.config import Settings
from storycheck_tui.engine.proxysync import build_pool
from storycheck_tui.engine.runner import Runner
from storycheck_tui.errors import InputError
from storycheck_tui.sources.base import StorySource
from storycheck_tui.store.db import Store


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


def build_runner(store: Store, settings: Settings, *, workers: int | None = None,
                 batch_ids: list[int] | None = None, source: StorySource | None = None) -> Runner:
    """A runner for this process; ``workers=0`` makes a watch-only runner (no source needed)."""
    threads = settings.engine.workers if workers is None else workers
    if threads and source is None:
        source = build_source(settings)
    pool = build_pool(store, settings.proxies)
    return Runner(store, settings, source, pool, workers=threads, batch_ids=batch_ids)
