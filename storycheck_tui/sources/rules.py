"""Response rules: ``[[source.rules]]``, checked in order before the status lists.

A rule may name HTTP statuses and a dotted ``field`` of the JSON body, and holds exactly one
test on that field (``equals``, ``in``, ``contains``, ``missing``); the first rule that matches
decides the outcome. A rule without ``field`` matches on the status alone. This module only
reads and matches rules; it imports nothing from the settings or the http source, so the
config loader can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from storycheck_tui.errors import InputError

__all__ = ["RULE_OUTCOMES", "ANSWERS", "Rule", "parse_rules", "first_match", "field_value", "MISSING"]

#: what a rule may decide; the first three are answers (a success, never retried)
RULE_OUTCOMES = ("no_stories", "private", "not_found", "rate_limited", "auth_failed", "unavailable",
                 "proxy_blocked", "bad_response")
ANSWERS = ("no_stories", "private", "not_found")
TESTS = ("equals", "in", "contains", "missing")
_KEYS = ("status", "field", "outcome", "message", *TESTS)

#: a field absent from the body (a JSON ``null`` is ``None``)
MISSING: Any = object()


@dataclass(frozen=True)
class Rule:
    """One ``[[source.rules]]`` table."""

    outcome: str
    status: tuple[int, ...] = ()  # empty: any status
    field: str = ""  # dotted path into the JSON body; empty: the status alone decides
    test: str = ""  # one of TESTS, or "" for a status-only rule
    value: Any = None  # what the test compares with
    message: str = ""  # said in the error or the outcome's description instead of the generic text
    index: int = 0  # 1-based position among the rules
    line: int | None = None  # line of the rule in the config file
    origin: str = ""  # "preset NAME" for a preset's rule

    @property
    def name(self) -> str:
        """``rule 2 (line 14)``, or ``rule 3 (preset hikerapi)``."""
        where = f" (line {self.line})" if self.line else f" ({self.origin})" if self.origin else ""
        return f"rule {self.index}{where}"

    def describe(self) -> str:
        """``status 400, field 'message' contains 'Not authorized'``: the rule as an operator wrote it."""
        parts = []
        if self.status:
            parts.append("status " + "/".join(str(s) for s in self.status))
        if self.field:
            if self.test == "missing":
                parts.append(f"field {self.field!r} missing or null")
            elif self.test == "in":
                parts.append(f"field {self.field!r} in {list(self.value)!r}")
            else:
                parts.append(f"field {self.field!r} {self.test} {self.value!r}")
        return ", ".join(parts) or "any answer"


def field_value(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` (``a.b.0.c``; a key holding a dot is found whole), or MISSING."""
    if isinstance(doc, dict) and path in doc:
        return doc[path]
    cur = doc
    for seg in path.split("."):
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit() and int(seg) < len(cur):
            cur = cur[int(seg)]
        else:
            return MISSING
    return cur


def _same(a: Any, b: Any) -> bool:
    """JSON equality that keeps true apart from 1 (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


def _matches(rule: Rule, status: int, doc: Any) -> bool:
    if rule.status and status not in rule.status:
        return False
    if not rule.field:
        return True
    if doc is MISSING:  # the body is not JSON: no field test can hold, not even "missing"
        return False
    value = field_value(doc, rule.field)
    if rule.test == "missing":
        return value is MISSING or value is None
    if value is MISSING:
        return False
    if rule.test == "equals":
        return _same(value, rule.value)
    if rule.test == "in":
        return any(_same(value, v) for v in rule.value)
    # contains: a substring of a string, or an element of a list
    if isinstance(value, str):
        return isinstance(rule.value, str) and rule.value in value
    if isinstance(value, list):
        return any(_same(v, rule.value) for v in value)
    return False


def first_match(rules: tuple[Rule, ...], status: int, doc: Any) -> Rule | None:
    """The first rule that matches an answer (``doc`` is the parsed body, or MISSING)."""
    for rule in rules:
        if _matches(rule, status, doc):
            return rule
    return None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and value != value)


def parse_rules(value: Any, *, source: str | None, line_of: Callable[[int, str | None], int | None]) -> tuple[Rule, ...]:
    """Rules from the TOML value of ``source.rules`` (a list of tables).

    ``line_of(i, key)`` gives the line of rule ``i`` (0-based) or of one of its keys. A rule
    that can never match (unknown outcome, no test or two, a test of the wrong type) is an
    :class:`InputError` naming its line.
    """
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise InputError("[source] rules: expected [[source.rules]] tables", source=source, line=line_of(0, None))
    rules = []
    for i, table in enumerate(value):
        def fail(reason: str, key: str | None = None) -> InputError:
            return InputError(f"[[source.rules]] #{i + 1}: {reason}", source=source,
                              line=line_of(i, key) or line_of(i, None))

        unknown = [k for k in table if k not in _KEYS]
        if unknown:
            raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})", unknown[0])
        outcome = table.get("outcome")
        if not isinstance(outcome, str) or outcome not in RULE_OUTCOMES:
            raise fail(f"outcome: expected one of {', '.join(RULE_OUTCOMES)}, got {outcome!r}", "outcome")
        status = table.get("status", [])
        if isinstance(status, int) and not isinstance(status, bool):
            status = [status]
        if not isinstance(status, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in status):
            raise fail("status: expected a list of HTTP status codes, e.g. [400]", "status")
        field = table.get("field", "")
        if not isinstance(field, str):
            raise fail("field: expected a dotted path, e.g. \"data.items\"", "field")
        message = table.get("message", "")
        if not isinstance(message, str):
            raise fail("message: expected a string", "message")
        tests = [t for t in TESTS if t in table]
        if field and len(tests) != 1:
            raise fail(f"a rule with a field needs exactly one test ({', '.join(TESTS)}), "
                       f"found {len(tests) or 'none'}" + (f": {', '.join(tests)}" if tests else ""),
                       tests[1] if len(tests) > 1 else "field")
        if not field and tests:
            raise fail(f"{tests[0]}: needs a field to test", tests[0])
        if not field and not status:
            raise fail("a rule needs a status, a field and a test, or both: this one would match every answer")
        test = tests[0] if tests else ""
        raw = table.get(test) if test else None
        if test == "equals" and not _scalar(raw):
            raise fail("equals: expected a string, number or boolean", "equals")
        if test == "in" and (not isinstance(raw, list) or not raw or not all(_scalar(v) for v in raw)):
            raise fail("in: expected a non-empty list of strings, numbers or booleans", "in")
        if test == "contains" and not _scalar(raw):
            raise fail("contains: expected a string (or a number or boolean to find in a list)", "contains")
        if test == "missing" and raw is not True:
            raise fail("missing: expected true (missing = false never decides anything: leave the rule out)",
                       "missing")
        rules.append(Rule(outcome=outcome, status=tuple(status), field=field, test=test,
                          value=tuple(raw) if test == "in" else raw, message=message, index=i + 1,
                          line=line_of(i, None)))
    return tuple(rules)
