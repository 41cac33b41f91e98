"""From a JSON body to stories: where the list sits, and each item's fields.

Pure functions, no I/O: ``parse_stories(body, settings)`` returns the stories or raises
:class:`BadBody` whose message says what was expected and what was found, in one line an
operator can act on ("expected a list at 'data.items', found dict without key 'items' at 'data'").
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from storycheck_tui.config import SourceSettings
from storycheck_tui.masking import CUT_MARGIN, one_line, secrets
from storycheck_tui.sources.base import Story
from storycheck_tui.sources.rules import MISSING, field_value

__all__ = ["BadBody", "load_json", "items_at", "stories_from", "parse_stories",
           "parse_time", "describe"]


class BadBody(ValueError):
    """The body is not an answer this source understands; the text says why."""


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def short(value: Any, limit: int = 40) -> str:
    """A field value as an error message shows it: ``repr``, masked, at most ``limit`` characters.

    A long string is cut before ``repr`` and masking (a field may hold a megabyte), keeping
    room for the longest secret so one that straddles the cut is still masked whole.
    """
    if isinstance(value, str):
        value = value[: limit + max(CUT_MARGIN, secrets.longest)]
    return one_line(repr(value), limit)


def describe(value: Any) -> str:
    """What was found, for a message: ``dict with keys a, b``, ``list of 3``, ``str 'x'``."""
    if isinstance(value, dict):
        keys = ", ".join(one_line(str(k), 30) for k in list(value)[:8])
        more = ", …" if len(value) > 8 else ""
        return f"an object with keys {keys}{more}" if value else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None:
        return "null"
    return f"{kind_of(value)} {short(value)}"


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise BadBody("response is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadBody(f"response is not valid JSON: {exc}") from None


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an int/float or an ISO-8601 string (``Z`` allowed); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            seconds = float(s)
        except ValueError:
            if s[-1] in "zZ":
                s = s[:-1] + "+00:00"
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            try:
                seconds = dt.timestamp()
            except (OverflowError, OSError, ValueError):  # pragma: no cover
                return None
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def items_at(doc: Any, path: str) -> list[Any]:
    """The list at dotted ``path`` ("" = the body itself), or BadBody saying what is there instead."""
    if not path:
        if not isinstance(doc, list):
            raise BadBody(f"expected a list as the response body, found {kind_of(doc)}")
        return doc
    cur: Any = doc
    walked: list[str] = []
    for seg in path.split("."):
        here = ".".join(walked) or "the top level"
        if isinstance(cur, dict):
            if seg not in cur:
                where = f"at {here!r}" if walked else "at the top level"
                raise BadBody(f"expected a list at {path!r}, found dict without key {seg!r} {where}")
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit():
            if int(seg) >= len(cur):
                raise BadBody(f"expected a list at {path!r}, found a list of {len(cur)} at {here!r}")
            cur = cur[int(seg)]
        else:
            where = f"at {here!r}" if walked else "at the top level"
            raise BadBody(f"expected a list at {path!r}, found {kind_of(cur)} {where}")
        walked.append(seg)
    if not isinstance(cur, list):
        raise BadBody(f"expected a list at {path!r}, found {kind_of(cur)}")
    return cur


def stories_from(items: list[Any], s: SourceSettings) -> tuple[Story, ...]:
    """Each item's id and times, by the field names in ``s``; duplicates by id are dropped."""
    stories: list[Story] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadBody(f"item {i}: expected an object, found {kind_of(item)}")
        sid = field_value(item, s.story_id)
        if sid is MISSING:
            raise BadBody(f"item {i}: field {s.story_id!r} is missing")
        if isinstance(sid, bool) or not isinstance(sid, (str, int)) or (isinstance(sid, str) and not sid.strip()):
            raise BadBody(f"item {i}: field {s.story_id!r} must be a non-empty string or an integer, "
                          f"found {kind_of(sid)} {short(sid)}")
        raw_taken = field_value(item, s.taken_at)
        if raw_taken is MISSING:
            raise BadBody(f"item {i}: field {s.taken_at!r} is missing")
        taken = parse_time(raw_taken)
        if taken is None:
            raise BadBody(f"item {i}: field {s.taken_at!r} is not epoch seconds or an ISO-8601 time: "
                          f"{short(raw_taken)}")
        expires: float | None = None
        if s.expires_at:
            raw_exp = field_value(item, s.expires_at)
            if raw_exp is not MISSING and raw_exp is not None:
                expires = parse_time(raw_exp)
                if expires is None:
                    raise BadBody(f"item {i}: field {s.expires_at!r} is not epoch seconds or an ISO-8601 time: "
                                  f"{short(raw_exp)}")
        media: str | None = None
        if s.media_type:
            raw_media = field_value(item, s.media_type)
            if isinstance(raw_media, (str, int)) and not isinstance(raw_media, bool):
                media = str(raw_media)
        story_id = str(sid)
        if story_id in seen:  # the story table is UNIQUE(username, story id)
            continue
        seen.add(story_id)
        stories.append(Story(story_id=story_id, taken_at=taken, expires_at=expires, media_type=media))
    return tuple(stories)


def parse_stories(body: bytes, s: SourceSettings) -> tuple[Story, ...]:
    """The stories in a 2xx body, by the ``items`` path and field names of ``s``; or BadBody."""
    return stories_from(items_at(load_json(body), s.items), s)
