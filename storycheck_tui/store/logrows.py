"""``batch_log`` rows: the columns, a job result's row, a log record's row, storing records.

The writer builds thousands of rows per group commit, so the common case (a success) is
serialised by hand: ``json.dumps`` was a tenth of a group commit.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from storycheck_tui.logs import LogEntry, clean
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import BatchLog

if TYPE_CHECKING:
    from storycheck_tui.store.queue import JobResult

#: ``batch_log`` columns in the order of the tuples built here
LOG_COLUMNS = ("created", "level", "event", "batch", "job", "username", "proxy", "message", "details")


def result_row(created: float, level: str, event: str, r: JobResult, message: str) -> tuple:
    """The batch_log row (in ``LOG_COLUMNS`` order) that states a job's final result."""
    if r.ok:
        details = (f'{{"attempt": {int(r.job.attempts)}, "tries": {int(r.tries)}, '
                   f'"status": {_json_num(r.http_status)}, "latency_ms": {_json_num(r.latency_ms)}}}')
    else:
        d = {"attempt": r.job.attempts, "tries": r.tries, "status": r.http_status, "latency_ms": r.latency_ms,
             "error_kind": r.error_kind}
        if r.traceback:
            d["traceback"] = r.traceback
        details = json.dumps(d, ensure_ascii=False)
    return (created, level, event, r.job.batch_id, r.job.id, r.job.username, r.proxy,
            clean(message), details)  # one line, like every record


def _json_num(value: float | int | None) -> str:
    if value is None or value != value or value in (math.inf, -math.inf):  # NaN and infinities: not JSON
        return "null"
    return repr(value) if isinstance(value, float) else str(int(value))


def entry_row(e: LogEntry) -> dict:
    """A log record as a batch_log row (a dict keyed by column)."""
    details = dict(e.details or {})
    for key in ("attempt", "status", "error_type"):
        val = getattr(e, key)
        if val is not None:
            details[key] = val
    if e.traceback:
        details["traceback"] = e.traceback
    return {"created": e.created, "level": e.level, "event": e.event, "batch": e.batch_id, "job": e.job_id,
            "username": e.username, "proxy": e.proxy, "message": e.message,
            "details": json.dumps(details, ensure_ascii=False) if details else None}


def entry_tuple(e: LogEntry) -> tuple:
    """:func:`entry_row` in ``LOG_COLUMNS`` order."""
    row = entry_row(e)
    return tuple(row[c] for c in LOG_COLUMNS)


def store_logs(store: Store, entries: list[LogEntry]) -> None:
    """Store log records in one transaction."""
    if not entries:
        return
    rows = [entry_row(e) for e in entries]
    with store.db.atomic():
        for i in range(0, len(rows), 200):
            BatchLog.insert_many(rows[i:i + 200]).execute()


__all__ = ["LOG_COLUMNS", "result_row", "entry_row", "entry_tuple", "store_logs"]
