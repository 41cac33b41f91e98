"""Spend: the requests sent to the story source, per batch and per result, and a batch's budget.

Each ended check adds the requests it made (``JobResult.tries``) to ``batch.requests`` and to
``spend(batch, result)``, where ``result`` is the outcome of a success or the error kind of a
failure, in the same transaction as the result itself (:func:`record`, called by
``queue.finish``). A claim that hands its check back unfinished (no usable proxy, an open
circuit, refused credentials, shutdown) adds the requests it sent under the hand-back's kind
(``no_proxy``, ``circuit_open``, ``auth_failed``) in the release's transaction (:func:`add`,
called by ``queue.release``); the claim that ends the check then counts only its own. A batch
with ``max_requests`` is paused, with the reason said, once its requests reach it; ``resume``
lifts a spent budget (:func:`lift_spent_budget`) and the batch goes on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Iterable

from peewee import EXCLUDED

from storycheck_tui import logs
from storycheck_tui.states import BatchState, sql, sql_list
from storycheck_tui.store.db import Store
from storycheck_tui.store.logrows import LOG_COLUMNS
from storycheck_tui.store.models import Batch, Spend

if TYPE_CHECKING:
    from storycheck_tui.store.queue import JobResult

__all__ = ["record", "add", "lift_spent_budget", "spend_of", "log_budget_pauses", "budget_reason"]


def budget_reason(requests: int, budget: int) -> str:
    return (f"request budget spent: {requests} requests sent, --max-requests {budget}; "
            f"storycheck resume BATCH goes on without a budget")


def record(store: Store, results: Iterable["JobResult"], ts: float) -> list[tuple[int, str]]:
    """Add the requests of applied ``results``; pause the batches whose budget they spent.

    Runs inside the caller's transaction. Returns ``(batch_id, reason)`` of each batch paused,
    whose BATCH_PAUSED row is already written; the caller logs it after the commit.
    """
    return add(store, [(r.job.batch_id,
                        str(r.outcome.kind) if r.outcome is not None else str(r.error_kind or "error"),
                        r.tries - r.carried) for r in results], ts)


def add(store: Store, spent: Iterable[tuple[int, str, int]], ts: float) -> list[tuple[int, str]]:
    """Add ``(batch_id, result, requests)`` to the spend; pause the batches whose budget that
    spent. Runs inside the caller's transaction; returns as :func:`record`."""
    per_batch: dict[int, int] = defaultdict(int)
    per_result: dict[tuple[int, str], int] = defaultdict(int)
    for batch_id, key, n in spent:
        if n <= 0:
            continue
        per_batch[batch_id] += n
        per_result[(batch_id, key)] += n
    if not per_batch:
        return []
    rows = [{"batch": b, "result": k, "requests": n} for (b, k), n in sorted(per_result.items())]
    Spend.insert_many(rows).on_conflict(conflict_target=[Spend.batch, Spend.result],
                                        update={Spend.requests: Spend.requests + EXCLUDED.requests}).execute()
    p = store.dialect.param
    paused: list[tuple[int, str]] = []
    for batch_id, n in sorted(per_batch.items()):
        store.db.execute_sql(f"UPDATE batch SET requests = requests + {p} WHERE id = {p}", (n, batch_id))
        row = store.db.execute_sql(
            f"SELECT requests, max_requests FROM batch WHERE id = {p} AND max_requests IS NOT NULL "
            f"AND requests >= max_requests AND state IN {sql_list((BatchState.QUEUED, BatchState.RUNNING))}",
            (batch_id,)).fetchone()
        if row is None:
            continue
        reason = budget_reason(row[0], row[1])
        store.db.execute_sql(f"UPDATE batch SET state = {sql(BatchState.PAUSED)}, state_reason = {p} WHERE id = {p}",
                             (reason, batch_id))
        store.dialect.insert_rows(store.db, "batch_log", LOG_COLUMNS, [
            (ts, "WARNING", logs.BATCH_PAUSED, batch_id, None, None, None, f"batch {batch_id} paused: {reason}", None)])
        paused.append((batch_id, reason))
    return paused


def log_budget_pauses(paused: Iterable[tuple[int, str]]) -> None:
    """The log records of the pauses :func:`record` made (their batch_log rows are written)."""
    for batch_id, reason in paused:
        logs.event(logging.WARNING, logs.BATCH_PAUSED, f"batch {batch_id} paused: {reason}", batch_id=batch_id,
                   persisted=True)


def lift_spent_budget(store: Store, batch_id: int) -> bool:
    """On resume: a budget already spent is lifted, so the batch goes on. True if it was."""
    p = store.dialect.param
    return store.db.execute_sql(
        f"UPDATE batch SET max_requests = NULL WHERE id = {p} AND max_requests IS NOT NULL "
        f"AND requests >= max_requests", (batch_id,)).rowcount == 1


def spend_of(store: Store, batch_id: int) -> dict[str, int]:
    """Requests per result (outcome or error kind) of one batch, most first."""
    rows = Spend.select(Spend.result, Spend.requests).where(Spend.batch == batch_id).tuples()
    return dict(sorted(rows, key=lambda kv: (-kv[1], kv[0])))


def requests_of(batch_id: int) -> tuple[int, int | None]:
    """``(requests sent, budget or None)`` of one batch."""
    b = Batch.get_by_id(batch_id)
    return b.requests, b.max_requests
