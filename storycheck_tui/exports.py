"""Exports of a batch's results as CSV or JSON Lines: streamed, scrubbed, never half-written."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from storycheck_tui.errors import InputError
from storycheck_tui.logs import clean
from storycheck_tui.store import batches as ops


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


EXPORT_FIELDS = ["batch_id", "username", "state", "outcome", "story_count", "latest_story_at", "error_kind",
                 "error_message", "proxy", "http_status", "latency_ms", "attempts", "finished_at"]


def export_rows(store, batch_id: int) -> Iterator[dict]:
    for j in ops.iter_jobs(store, batch_id):
        yield {"batch_id": batch_id, "username": j.username, "state": j.state, "outcome": j.outcome,
               "story_count": j.story_count, "latest_story_at": iso(j.latest_story_at) or None,
               "error_kind": j.error_kind, "error_message": clean(j.error_message) if j.error_message else None,
               "proxy": clean(j.proxy) if j.proxy else None, "http_status": j.http_status,
               "latency_ms": round(j.latency_ms, 1) if j.latency_ms is not None else None,
               "attempts": j.attempts, "finished_at": iso(j.finished_at) or None}


def _csv_safe(value) -> object:
    """Keep a spreadsheet from running an error text as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def write_export(store, batch_id: int, fmt: str, out) -> int:
    n = 0
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        w.writeheader()
        for row in export_rows(store, batch_id):
            w.writerow({k: _csv_safe(v) for k, v in row.items()})
            n += 1
    else:
        for row in export_rows(store, batch_id):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def export_to_file(store, batch_id: int, fmt: str, path: str) -> int:
    """Write to a temporary file beside ``path`` and rename: never a half-written export."""
    target = Path(path)
    if not target.parent.exists():
        raise InputError(f"directory {target.parent} does not exist", source=path)
    fd, tmp = tempfile.mkstemp(prefix=".storycheck-export-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = write_export(store, batch_id, fmt, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
