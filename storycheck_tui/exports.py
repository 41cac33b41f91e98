"""Exports of a batch's results as CSV or JSON Lines: streamed, scrubbed, never half-written."""

from __future__ import annotations

import csv
import json
import os
import re
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


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def _escape_unprintable(m: re.Match[str]) -> str:
    ch = m.group()
    if ch.isprintable():
        return ch
    n = ord(ch)
    if n > 0xFFFF:  # a UTF-16 surrogate pair, as JSON writes it
        n -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 + (n >> 10), 0xDC00 + (n & 0x3FF))
    return "\\u%04x" % n


def json_line(obj: object) -> str:
    """One JSON object on one line. Readable text stays as it is; every character a terminal
    would act on (C1 controls, DEL, U+202E, U+2028...) is written as a ``\\uXXXX`` escape: the
    same value for a JSON reader, inert on a screen (``--json`` output, JSON Lines exports)."""
    text = json.dumps(obj, ensure_ascii=False)
    return text if text.isprintable() else _UNPRINTABLE.sub(_escape_unprintable, text)


def _csv_safe(value, terminal: bool = False) -> object:
    """Keep a spreadsheet from running an error text as a formula; on a terminal, also keep the
    terminal from acting on a control sequence in a stored value (shown escaped)."""
    if isinstance(value, str):
        if terminal:
            value = clean(value)
        if value[:1] in ("=", "+", "-", "@"):
            return "'" + value
    return "" if value is None else value


def write_export(store, batch_id: int, fmt: str, out) -> int:
    """Write the batch's rows to ``out``. A CSV file keeps every value as stored (formulas
    defused); a CSV written to a terminal shows control characters escaped. JSON Lines is
    the same either way (:func:`json_line`)."""
    n = 0
    if fmt == "csv":
        terminal = out.isatty()
        w = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        w.writeheader()
        for row in export_rows(store, batch_id):
            w.writerow({k: _csv_safe(v, terminal) for k, v in row.items()})
            n += 1
    else:
        for row in export_rows(store, batch_id):
            out.write(json_line(row) + "\n")
            n += 1
    return n


def export_to_file(store, batch_id: int, fmt: str, path: str) -> int:
    """Write to a temporary file beside ``path`` and rename: never a half-written export."""
    target = Path(path)
    if not target.parent.exists():
        raise InputError(f"directory {target.parent} does not exist", source=path)
    if target.is_dir():
        raise InputError(f"is a directory; give a file name, e.g. {target / ('results.' + fmt)}", source=path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".storycheck-export-", dir=target.parent)
    except OSError as exc:
        raise InputError(f"cannot write in {target.parent}: {exc.strerror}", source=path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = write_export(store, batch_id, fmt, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write the export: {exc.strerror or exc}", source=path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
