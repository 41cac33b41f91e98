"""The ``[source]`` table as the config loader hands it over: presets, request templates, rules.

:func:`read_source_table` runs before the loader's own per-key checks. It applies the preset,
checks ``method``, ``json`` and ``[[source.rules]]`` (each error names its line), and expands
``${VAR}`` in ``url``, ``health_url`` and ``json`` string values (header values are expanded
by the loader). Every expanded value is registered as a secret by the expansion itself.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from storycheck_tui.errors import InputError
from storycheck_tui.sources.preset_files import PresetError, apply_preset
from storycheck_tui.sources.rules import Rule, parse_rules

__all__ = ["METHODS", "read_source_table", "rule_lines"]

METHODS = ("GET", "POST")
Expand = Callable[..., str]  # config.expand_env(value, where=InputError, key=NAME)

_RULES_HEADER = re.compile(r"\s*\[\[\s*[\"']?source[\"']?\s*\.\s*[\"']?rules[\"']?\s*\]\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"\s*\[")
_KEY = re.compile(r"\s*[\"']?([A-Za-z0-9_-]+)[\"']?\s*=")


def rule_lines(text: str) -> tuple[list[int], list[dict[str, int]]]:
    """Line of each ``[[source.rules]]`` header, and of each key inside it (1-based).

    Rules written inline (``rules = [ {...}, ... ]``) are not found here: the caller gives
    them the line of ``rules =``.
    """
    starts: list[int] = []
    keys: list[dict[str, int]] = []
    inside = False
    for n, line in enumerate(text.splitlines(), 1):
        if _RULES_HEADER.match(line):
            starts.append(n)
            keys.append({})
            inside = True
        elif _ANY_HEADER.match(line):
            inside = False
        elif inside:
            m = _KEY.match(line)
            if m:
                keys[-1].setdefault(m.group(1), n)
    return starts, keys


def _expand_json(value: Any, expand: Expand, where: InputError) -> Any:
    if isinstance(value, str):
        return expand(value, where=where, key="[source] json")
    if isinstance(value, dict):
        return {str(k): _expand_json(v, expand, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_json(v, expand, where) for v in value]
    return value


def read_source_table(table: dict[str, Any], *, text: str, source: str | None, expand: Expand,
                      line_of: Callable[[str], int | None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(table, ready)``: the table left for the loader's per-key checks, and values already
    converted (``json``, ``rules``) to set on ``SourceSettings`` as they are.

    ``line_of(key)`` is the loader's line finder for a key of ``[source]``.
    """
    def where(key: str) -> InputError:
        return InputError("", source=source, line=line_of(key))

    def fail(key: str, reason: str) -> InputError:
        return InputError(f"[source] {key}: {reason}", source=source, line=line_of(key))

    preset_rules: list[dict[str, Any]] = []
    preset = table.get("preset")
    if preset:
        if not isinstance(preset, str):
            raise fail("preset", f"expected a preset name, got {preset!r}")
        try:
            table, preset_rules = apply_preset(preset, table)
        except PresetError as exc:
            raise fail(exc.key, str(exc)) from None
    table = dict(table)
    ready: dict[str, Any] = {}

    for key in ("url", "health_url"):
        if isinstance(table.get(key), str) and "${" in table[key]:
            table[key] = expand(table[key], where=where(key), key=f"[source] {key}")

    method = table.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise fail("method", f"expected \"GET\" or \"POST\", got {method!r}")
    table["method"] = method.upper()

    if "json" in table:
        body = table.pop("json")
        if not isinstance(body, (dict, list)):
            raise fail("json", "expected a table, e.g. json = { ids = [\"{username}\"] }")
        if table["method"] != "POST":
            raise fail("json", "a JSON body needs method = \"POST\"")
        ready["json"] = _expand_json(body, expand, where("json"))

    rules: tuple[Rule, ...] = ()
    if "rules" in table:
        starts, keys = rule_lines(text)

        def rule_line(i: int, key: str | None) -> int | None:
            if i >= len(starts):
                return line_of("rules")
            return keys[i].get(key, starts[i]) if key else starts[i]

        rules = parse_rules(table.pop("rules"), source=source, line_of=rule_line)
    if preset_rules:
        extra = parse_rules(preset_rules, source=f"preset {preset}", line_of=lambda i, key: None)
        rules += tuple(Rule(**{**r.__dict__, "index": len(rules) + r.index, "origin": f"preset {preset}"})
                       for r in extra)
    if rules:
        ready["rules"] = rules
    return table, ready
