"""What users would run instead of storycheck, in the same process model as the engine.

* :func:`bare` — the practical limit: N threads, round-robin over one ``httpx.Client`` per
  proxy, GET + ``json()``; no database, no pacing, no retry, no logging.
* :func:`naive` — the script a user would write: a ``ThreadPoolExecutor``, ``itertools.cycle``
  over the proxies, and tenacity retrying 429s (and 5xx and connection errors, or it could not
  survive run 3) with exponential backoff, five tries. No pacing, no proxy health.

Both run in a child process (``benchmarks.child``) and return a dict of figures measured
over a steady window (see :func:`benchmarks.common.measure_window`).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from tenacity import retry, retry_if_exception_type, retry_if_result, stop_after_attempt, wait_exponential

from benchmarks.common import measure_window, peak_rss_mb, usernames

OUTCOME_STATUSES = (200, 403, 404)  # has/no stories, private, not found: a checked profile


def _clients(proxy_urls: list[str], threads: int, timeout: float = 10.0) -> list[httpx.Client]:
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    return [httpx.Client(proxy=u, timeout=timeout, limits=limits) for u in proxy_urls] or \
        [httpx.Client(timeout=timeout, limits=limits)]


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = self.bad = 0

    def add(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.bad += 1

    def read(self) -> tuple[int, int]:
        return self.ok, self.bad


def _finish(out: dict) -> dict:
    """Print the result and leave at once: worker threads are still busy, nobody needs them."""
    out["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write("\n" + __import__("json").dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


def bare(p: dict) -> dict:
    """Threads hammering the sim as fast as they can: checks/s over a steady window."""
    template = p["api_url"] + "/v1/stories?username={}"
    clients = _clients(p["proxy_urls"], p["threads"])
    names = usernames(p["profiles"])
    counter = itertools.count()  # next() is atomic under the GIL
    tally = _Tally()

    def work() -> None:
        for i in iter(counter.__next__, None):
            if i >= len(names):
                return
            r = clients[i % len(clients)].get(template.format(names[i]))
            if r.status_code == 200:
                r.json()
            tally.add(r.status_code in OUTCOME_STATUSES)

    for _ in range(p["threads"]):
        threading.Thread(target=work, daemon=True).start()
    return _finish(measure_window(tally.read, p))


def naive(p: dict) -> dict:
    """The user's script: round-robin proxies, tenacity on 429/5xx/connection errors, no pacing."""
    template = p["api_url"] + "/v1/stories?username={}"
    clients = _clients(p["proxy_urls"], p["threads"])
    proxies = itertools.cycle(clients)
    tally = _Tally()

    def give_up(rs):  # after the last try: keep what we got (or the exception) as the answer
        return rs.outcome.exception() or rs.outcome.result()

    @retry(retry=retry_if_result(lambda r: r.status_code == 429 or r.status_code >= 500)
           | retry_if_exception_type(httpx.TransportError),
           wait=wait_exponential(multiplier=0.5, max=8), stop=stop_after_attempt(5),
           retry_error_callback=give_up)
    def fetch(username: str):
        return next(proxies).get(template.format(username))

    def check(username: str) -> None:
        r = fetch(username)
        ok = not isinstance(r, Exception) and r.status_code in OUTCOME_STATUSES
        if ok and r.status_code == 200:
            r.json()
        tally.add(ok)

    pool = ThreadPoolExecutor(p["threads"])
    for name in usernames(p["profiles"]):
        pool.submit(check, name)
    return _finish(measure_window(tally.read, p))


def source_only(p: dict) -> dict:
    """Like :func:`bare`, but each thread calls storycheck's HttpSource.check (no engine, no database)."""
    from storycheck_tui.sources.base import Route
    from storycheck_tui.sources.presets import build_source, sim_settings

    source = build_source(sim_settings(p["api_url"]))
    routes = [Route(key=str(i), url=u, label=f"p{i}") for i, u in enumerate(p["proxy_urls"])]
    names = usernames(p["profiles"])
    counter = itertools.count()
    tally = _Tally()

    def work() -> None:
        for i in iter(counter.__next__, None):
            if i >= len(names):
                return
            try:
                source.check(names[i], routes[i % len(routes)])
                tally.add(True)
            except Exception:
                tally.add(False)

    for _ in range(p["threads"]):
        threading.Thread(target=work, daemon=True).start()
    return _finish(measure_window(tally.read, p))
