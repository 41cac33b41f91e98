"""From one answer (status, headers, body) to an Outcome or a typed error, in the documented order.

1. The response rules, in order; the first that matches decides.
2. The status lists (``rate_limited``, ``auth_failed``, 5xx, ``not_found``, ``private``; any
   other non-2xx is a bad response).
3. The items path: a 2xx body must hold the story list where ``items`` says.

Every result says what decided it (``Outcome.decided_by``, or the error message), which is
what ``storycheck source test`` prints.
"""

from __future__ import annotations

from typing import Any

import httpx

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import (
    AuthFailed, BadResponse, CheckError, ProxyFailed, RateLimited, SourceUnavailable,
)
from storycheck_tui.masking import one_line
from storycheck_tui.sources.base import HAS_STORIES, NO_STORIES, NOT_FOUND, PRIVATE, Outcome
from storycheck_tui.sources.http.parsing import BadBody, describe, items_at, load_json, stories_from
from storycheck_tui.sources.http.status import Failure, parse_retry_after
from storycheck_tui.sources.rules import MISSING, Rule, field_value, first_match
from storycheck_tui.states import OutcomeKind

__all__ = ["RULE_ERRORS", "by_rules", "by_items", "items_label"]

#: the error a rule's outcome raises (the answers become Outcomes)
RULE_ERRORS: dict[str, type[CheckError]] = {
    "rate_limited": RateLimited,
    "auth_failed": AuthFailed,
    "unavailable": SourceUnavailable,
    "proxy_blocked": ProxyFailed,
    "bad_response": BadResponse,
}


def document(body: bytes | None) -> Any:
    """The parsed JSON body, or MISSING when there is none or it is not JSON."""
    if not body:
        return MISSING
    try:
        return load_json(body)
    except BadBody:
        return MISSING


def _found(rule: Rule, doc: Any) -> str:
    if not rule.field or doc is MISSING:
        return ""
    value = field_value(doc, rule.field)
    if value is MISSING:
        return f"; {rule.field!r} is absent"
    return f"; {rule.field!r} is {describe(value)}"


def by_rules(rules: tuple[Rule, ...], status: int, headers: httpx.Headers, doc: Any,
             latency_ms: float) -> Outcome | Failure | None:
    """What the first matching rule decides, or None when no rule matches."""
    rule = first_match(rules, status, doc)
    if rule is None:
        return None
    said = f"{rule.name}: {rule.describe()}"
    if rule.outcome in (NO_STORIES, PRIVATE, NOT_FOUND):
        return Outcome(OutcomeKind(rule.outcome), http_status=status, latency_ms=latency_ms, decided_by=said)
    what = rule.message or {"rate_limited": "rate limited", "auth_failed": "the source refused the credentials",
                            "unavailable": "the source is unavailable", "proxy_blocked": "the proxy is blocked",
                            "bad_response": "not an answer"}[rule.outcome]
    message = f"{what} (HTTP {status}, {said}{_found(rule, doc)})"
    extra: dict[str, Any] = {}
    if rule.outcome == "rate_limited":
        extra["retry_after"] = parse_retry_after(headers.get("retry-after"))
    return Failure(RULE_ERRORS[rule.outcome], one_line(message, 280), status, extra)


def items_label(path: str) -> str:
    return f"items path {path!r}" if path else "items path '' (the body is the list)"


def by_items(body: bytes, s: SourceSettings, status: int, latency_ms: float, doc: Any = MISSING) -> Outcome:
    """The stories of a 2xx body by the items path; BadBody (saying what is there instead) if none."""
    if doc is MISSING:
        doc = load_json(body)
    try:
        items = items_at(doc, s.items)
    except BadBody as exc:
        raise BadBody(f"{exc} (the body: {describe(doc)})") from None
    stories = stories_from(items, s)
    kind = HAS_STORIES if stories else NO_STORIES
    return Outcome(kind, stories=stories, http_status=status, latency_ms=latency_ms,
                   decided_by=f"{items_label(s.items)}: {len(items)} item(s)")
