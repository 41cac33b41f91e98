"""Exports of a batch's results (one row per profile, with the ids of the stories found) or of
its stories (one row per story), as CSV or JSON Lines: streamed, scrubbed, never half-written."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from collections import Counter
from typing import Iterator

from storycheck_tui.errors import InputError
from storycheck_tui.logs import clean
from storycheck_tui.states import JobState
from storycheck_tui.store import batches as ops, reads
from storycheck_tui.store.reads import StoryRow
from storycheck_tui.words import plural


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


EXPORT_FIELDS = ["batch_id", "username", "state", "outcome", "story_count", "latest_story_at", "error_kind",
                 "error_message", "proxy", "http_status", "latency_ms", "attempts", "finished_at", "story_ids"]
#: the stories export: one row per story of the batch's checked profiles
STORY_FIELDS = ["batch_id", "username", "story_id", "taken_at", "expires_at", "media_type", "first_seen_at"]
#: a story without an expiry counts as active for a day after it was taken
STORY_LIFETIME = 86_400.0
#: how story ids are joined in one CSV cell (JSON Lines has a list)
CSV_ID_SEPARATOR = ";"
_CHUNK = 2000


def seen_by_check(stories: list[StoryRow], checked_at: float | None, count: int | None) -> list[StoryRow]:
    """The stored stories a check found: seen by then and active then, at most ``count``
    (the job's story count), newest first. Stories are stored once per profile, so a story seen
    again by a later check is still found here."""
    if not count or checked_at is None:
        return []
    out = []
    for s in stories:
        ends = s.expires_at if s.expires_at is not None else (s.taken_at or s.first_seen_at) + STORY_LIFETIME
        if s.first_seen_at <= checked_at + 1.0 and ends >= checked_at:
            out.append(s)
            if len(out) == count:
                break
    return out


def _jobs_with_stories(store, batch_id: int) -> Iterator[tuple[object, list[StoryRow]]]:
    """Each job of the batch, in id order, with the stories its check found."""
    chunk: list = []

    def flush():
        names = [j.username for j in chunk if j.story_count]
        stories = reads.stories_of(store, names) if names else {}
        for j in chunk:
            yield j, seen_by_check(stories.get(j.username, []), j.finished_at, j.story_count)
        chunk.clear()

    for j in ops.iter_jobs(store, batch_id, chunk=_CHUNK):
        chunk.append(j)
        if len(chunk) >= _CHUNK:
            yield from flush()
    yield from flush()


def export_rows(store, batch_id: int) -> Iterator[dict]:
    for j, stories in _jobs_with_stories(store, batch_id):
        yield {"batch_id": batch_id, "username": j.username, "state": j.state, "outcome": j.outcome,
               "story_count": j.story_count, "latest_story_at": iso(j.latest_story_at) or None,
               "error_kind": j.error_kind, "error_message": clean(j.error_message) if j.error_message else None,
               "proxy": clean(j.proxy) if j.proxy else None, "http_status": j.http_status,
               "latency_ms": round(j.latency_ms, 1) if j.latency_ms is not None else None,
               "attempts": j.attempts, "finished_at": iso(j.finished_at) or None,
               "story_ids": [s.story_id for s in stories]}


def story_rows(store, batch_id: int) -> Iterator[dict]:
    for j, stories in _jobs_with_stories(store, batch_id):
        for s in stories:
            yield {"batch_id": batch_id, "username": j.username, "story_id": s.story_id,
                   "taken_at": iso(s.taken_at) or None, "expires_at": iso(s.expires_at) or None,
                   "media_type": s.media_type, "first_seen_at": iso(s.first_seen_at) or None}


@dataclasses.dataclass
class ExportTally:
    """What an export held: rows by job state and by outcome (stories: rows and profiles)."""

    rows: int = 0
    by_state: Counter = dataclasses.field(default_factory=Counter)
    by_outcome: Counter = dataclasses.field(default_factory=Counter)
    profiles: set = dataclasses.field(default_factory=set)  # stories export: the profiles they belong to
    stories: bool = False

    def add(self, row: dict) -> None:
        self.rows += 1
        if self.stories:
            self.profiles.add(row["username"])
            return
        self.by_state[row["state"]] += 1
        if row["state"] == JobState.SUCCEEDED:
            self.by_outcome[row["outcome"]] += 1

    def describe(self) -> str:
        """``3,404 checked (has_stories 1,200, no_stories 2,104, failed 100), 16,596 pending``."""
        if self.stories:
            return f"{plural(self.rows, 'story', 'stories')} of {plural(len(self.profiles), 'profile')}"
        failed = self.by_state[JobState.FAILED]
        checked = self.by_state[JobState.SUCCEEDED] + failed
        parts = [f"{o} {n:,}" for o, n in sorted(self.by_outcome.items(), key=lambda x: (-x[1], str(x[0])))]
        if failed:
            parts.append(f"failed {failed:,}")
        out = f"{checked:,} checked" + (f" ({', '.join(parts)})" if parts else "")
        for state in (JobState.RUNNING, JobState.PENDING, JobState.CANCELLED):
            if self.by_state[state]:
                out += f", {self.by_state[state]:,} {state}"
        return out


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


def write_export(store, batch_id: int, fmt: str, out, *, stories: bool = False,
                 tally: ExportTally | None = None) -> int:
    """Write the batch's rows (or, with ``stories``, its stories) to ``out``; the rows written.
    A CSV file keeps every value as stored (formulas defused); a CSV written to a terminal shows
    control characters escaped. JSON Lines is the same either way (:func:`json_line`).
    ``tally``, if given, counts what was written."""
    n = 0
    rows = story_rows(store, batch_id) if stories else export_rows(store, batch_id)
    if tally is not None:
        tally.stories = stories
    if fmt == "csv":
        terminal = out.isatty()
        w = csv.DictWriter(out, fieldnames=STORY_FIELDS if stories else EXPORT_FIELDS)
        w.writeheader()
        for row in rows:
            if tally is not None:
                tally.add(row)
            if "story_ids" in row:
                row["story_ids"] = CSV_ID_SEPARATOR.join(row["story_ids"])
            w.writerow({k: _csv_safe(v, terminal) for k, v in row.items()})
            n += 1
    else:
        for row in rows:
            if tally is not None:
                tally.add(row)
            out.write(json_line(row) + "\n")
            n += 1
    return n


def export_to_file(store, batch_id: int, fmt: str, path: str, *, stories: bool = False,
                   tally: ExportTally | None = None) -> int:
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
            n = write_export(store, batch_id, fmt, fh, stories=stories, tally=tally)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write the export: {exc.strerror or exc}", source=path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
