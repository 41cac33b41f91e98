"""Proxy health shared through the database.

Each worker keeps its own :class:`ProxyPool` (pacing needs no round trip); once a second
it writes what it learned (state changes, success/failure counts as ``x = x + n``) and
adopts what others wrote since: an operator's disable or enable, a proxy another worker
found dead or whose credentials it refused. So one worker's discovery spares the others.
New credentials for a proxy (its row's URL changed: imported again with another password)
reach the pool here too.

Owner: the keeper thread calls :meth:`ProxySync.sync`; the caller of the runner's operator
commands calls :meth:`~ProxySync.request_validation`. ``_changed`` and ``_validate_seen`` are
guarded by a small lock; the rest is the keeper's.
"""

from __future__ import annotations

import dataclasses
import threading

from storycheck_tui import logs
from storycheck_tui.engine import proxies as P
from storycheck_tui.engine.proxies import ProxyPool
from storycheck_tui.masking import add_url_credentials
from storycheck_tui.sources.base import Route
from storycheck_tui.store import batches as batch_ops
from storycheck_tui.store import proxyhealth
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Proxy
from storycheck_tui.store.proxyhealth import ProxyNews

EVENT_FOR_STATE = {
    P.COOLING: logs.PROXY_COOLING,
    P.DEAD: logs.PROXY_DEAD,
    P.HEALTHY: logs.PROXY_RECOVERED,
    P.DISABLED: logs.PROXY_DISABLED,
    P.AUTH_REJECTED: logs.PROXY_AUTH_REJECTED,
}
OPERATOR_REASONS = {P.REASON_DISABLED, P.REASON_ENABLED, P.REASON_FIRST_SUCCESS}


def load_routes(store: Store) -> list[Route]:
    rows = proxyhealth.proxy_rows(store)
    for p in rows:
        add_url_credentials(p.url)  # scrubbed from every output from now on, in every form
    return [Route(key=str(p.id), url=p.url, label=p.label) for p in rows]


def build_pool(store: Store, settings) -> ProxyPool:
    """A pool of every proxy in the database (direct when there are none), states adopted."""
    pool = ProxyPool(load_routes(store), settings)
    ProxySync(store, pool).adopt_all()
    return pool


class ProxySync:
    def __init__(self, store: Store, pool: ProxyPool):
        self.store = store
        self.pool = pool
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (successes, failures) already written
        # key -> the updated_at already adopted (or written here). A change is stamped before its
        # transaction commits, so it may become visible only after a sync that read past its
        # stamp: each stamp is adopted once when first seen, not "if newer than the last read".
        self._seen: dict[str, float] = {}
        self._totals: dict[str, tuple[int, int, float | None]] = {}  # key -> all workers' (ok, failed, latency)
        self._validate_seen: dict[str, float | None] = {}  # key -> the validate_requested_at acted on

    def mark_changed(self, key: str) -> None:
        with self._lock:
            self._changed.add(key)

    def request_validation(self, key: str) -> None:
        """The operator's "validate now": for this pool (the caller retried it already) and,
        through the database, for every other worker's at its next sync. Nothing else is
        written: the validation's outcome is (by whichever worker validates)."""
        if key.isdigit():
            stamp = batch_ops.request_validation(self.store, int(key))
            with self._lock:
                self._validate_seen[key] = stamp  # this pool has it already

    def adopt_all(self) -> None:
        for row in proxyhealth.proxy_rows(self.store):
            key = str(row.id)
            if self.pool.route(key) is None:
                continue
            self._adopt(row, key)
            self._seen[key] = row.updated_at
            self._validate_seen[key] = row.validate_requested_at  # asked before this worker started: done

    def _adopt(self, row: Proxy, key: str) -> None:
        mine = self.pool.state_of(key)
        if row.disabled:
            if mine != P.DISABLED:
                self.pool.disable(key)
        elif mine == P.DISABLED:
            self.pool.enable(key)
        elif row.state == P.AUTH_REJECTED:
            if mine != P.AUTH_REJECTED:
                self.pool.apply_shared(key, row.state, fail_streak=row.fail_streak, last_error=row.last_error)
        elif mine == P.AUTH_REJECTED:
            if row.state in (P.UNCHECKED, P.HEALTHY):  # an operator enabled or retried it elsewhere
                self.pool.apply_shared(key, row.state, fail_streak=row.fail_streak)
        elif row.state in (P.COOLING, P.DEAD) and mine not in (P.COOLING, P.DEAD):
            self.pool.apply_shared(key, row.state, cooldown_until=row.cooldown_until, fail_streak=row.fail_streak,
                                   last_error=row.last_error)

    def sync(self) -> None:
        """Write this worker's news, then adopt what others wrote since the last read."""
        if self.pool.direct:
            return
        with self._lock:
            changed, self._changed = self._changed, set()
        views = {v.key: v for v in self.pool.views()}
        news = []
        for key, v in views.items():
            if not key.isdigit():
                continue
            ok0, bad0 = self._counts.get(key, (0, 0))
            route = self.pool.route(key)
            news.append(ProxyNews(int(key), v.state, v.fail_streak, v.cooldown_until, v.last_error, v.last_latency_ms,
                                  v.successes - ok0, v.failures - bad0, key in changed,
                                  url=route.url if route is not None else None))
        ts, written = proxyhealth.write_news(self.store, news)
        for n in news:
            key = str(n.proxy_id)
            if n.proxy_id in written:
                self._seen[key] = ts  # our own news: nothing to adopt
            self._counts[key] = (views[key].successes, views[key].failures)
        known = set(views)
        totals = {}
        rows = proxyhealth.proxy_rows(self.store)
        for key in known - {str(row.id) for row in rows}:  # removed by an operator (proxies remove)
            if key.isdigit():
                self.pool.remove(key)
        fresh = [row for row in rows if str(row.id) not in known]  # added since the last sync
        for row in fresh:
            add_url_credentials(row.url)
        if fresh:
            self.pool.add(*(Route(key=str(row.id), url=row.url, label=row.label) for row in fresh))
        renewed = []  # new credentials (the proxy imported again with another password)
        for row in rows:
            route = self.pool.route(str(row.id)) if str(row.id) in known else None
            if route is not None and route.url != row.url:
                add_url_credentials(row.url)
                renewed.append(row)
        if renewed:
            self.pool.add(*(Route(key=str(row.id), url=row.url, label=row.label) for row in renewed))
        for row in rows:
            key = str(row.id)
            totals[key] = (row.successes, row.failures, row.last_latency_ms)
            if key not in known:
                self._adopt(row, key)
            elif row.updated_at != self._seen.get(key) or row.disabled != (views[key].state == P.DISABLED):
                self._adopt(row, key)
            self._seen[key] = row.updated_at
            asked = row.validate_requested_at
            with self._lock:
                new_request = asked is not None and asked != self._validate_seen.get(key)
                self._validate_seen[key] = asked
            if new_request and key in known:  # an operator elsewhere asked for a validation
                self.pool.retry(key)
        self._totals = totals

    def views(self) -> list[P.ProxyView]:
        """The pool's views with the success/failure counts of every worker (from the database)."""
        totals = self._totals
        out = []
        for v in self.pool.views():
            t = totals.get(v.key)
            if t is not None:
                ok, bad, latency = t
                v = dataclasses.replace(v, successes=max(ok, v.successes), failures=max(bad, v.failures),
                                        last_latency_ms=v.last_latency_ms if v.last_latency_ms is not None else latency)
            out.append(v)
        return out
