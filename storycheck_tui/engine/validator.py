"""The validator: re-checks cooling and dead proxies against the source's health URL.

Owner: the validator thread; it holds no state of its own (the pool says which routes are
due and takes the verdicts).
"""

from __future__ import annotations

import threading

from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.errors import CheckError, ProxyAuthRejected
from storycheck_tui.sources.base import StorySource


def run_validator(source: StorySource, pool: ProxyPool, abort: threading.Event) -> None:
    while not abort.is_set():
        for route in pool.due_for_validation():
            if abort.is_set():
                break
            try:
                latency = source.health(route)
                pool.validated(route.key, True, latency, None)
            except CheckError as err:
                pool.validated(route.key, False, None, err.message, auth=isinstance(err, ProxyAuthRejected),
                               url=route.url)
            except Exception as exc:
                pool.validated(route.key, False, None, f"{type(exc).__name__}: {exc}")
        abort.wait(0.5)
