"""Settings: one dataclass tree, read from a TOML file, the environment and flags.

Precedence: flags > environment (``STORYCHECK_DB``) > config file > defaults. Every value
is validated here, so the rest of storycheck never sees a half-valid setting; a bad one
is an :class:`InputError` naming the file, the line and the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycheck_tui.errors import InputError
from storycheck_tui.masking import register_secret
from storycheck_tui.sources.rules import Rule
from storycheck_tui.sources.source_table import read_source_table

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class SourceSettings:
    """How to ask the story API about one username (the ``[source]`` table)."""

    kind: str = "http"  # "http" or "sim" (the http source with the simulator's preset)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # values expanded, may hold secrets
    items: str = ""
    story_id: str = "pk"
    taken_at: str = "taken_at"
    expires_at: str = ""
    media_type: str = ""
    not_found: tuple[int, ...] = (404,)
    private: tuple[int, ...] = (403,)
    rate_limited: tuple[int, ...] = (429,)
    auth_failed: tuple[int, ...] = (401, 402)
    health_url: str = ""
    timeout: float = 10.0  # seconds for connect/read/write of one request
    max_body_bytes: int = 1_000_000
    # a cap on requests/s to the source from this process (one API key); none: the engine finds
    # the pace itself (engine/pace.py)
    max_rate: float | None = None
    preset: str = ""  # a preset's name (sources/preset_data): it filled the keys this table left out
    method: str = "GET"  # "GET" or "POST"
    json: Any = None  # the JSON body of a POST; string values may hold {username}
    rules: tuple[Rule, ...] = ()  # [[source.rules]], checked in order before the status lists


@dataclass(frozen=True)
class RetrySettings:
    """When and how long one check is retried (the ``[retry]`` table)."""

    max_attempts: int = 4  # tries spent by 5xx, timeouts, bad bodies (429s spend none)
    base_wait: float = 0.5
    max_wait: float = 30.0
    deadline: float = 120.0  # total seconds one check may take, waits included
    max_claims: int = 20  # a job whose check was in flight when its worker died this many times is failed


@dataclass(frozen=True)
class ProxySettings:
    """Pacing and health of each proxy (the ``[proxies]`` table)."""

    rate: float | None = None  # a cap on requests per second per proxy; none: no cap
    burst: float = 2.0
    cooldown: float = 5.0  # first cooldown after a failure; doubles per failure in a row
    max_cooldown: float = 300.0
    dead_after: int = 5  # failures in a row before a proxy is dead
    validate_every: float = 10.0  # seconds between validations of cooling/dead proxies


@dataclass(frozen=True)
class EngineSettings:
    """Threads, leases and commits of one worker process (the ``[engine]`` table)."""

    workers: int = 16
    lease_seconds: float = 60.0
    claim_size: int = 32
    commit_every: float = 0.25  # seconds between group commits
    heartbeat_every: float = 2.0
    grace_seconds: float = 10.0  # on SIGTERM: how long in-flight checks may still finish
    # `run` and `worker --until-idle`: nothing can be sent (no usable proxy, the source's circuit
    # open, a Retry-After) and nothing was checked for this many seconds: stop with the reason,
    # exit 1 (at once when no proxy can come back by itself: each auth_rejected or disabled)
    stall_limit: float = 300.0


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    proxies: ProxySettings = field(default_factory=ProxySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    path: str | None = None  # the config file these came from, for messages

    def replace(self, **sections: Any) -> "Settings":
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type] = {
    "source": SourceSettings,
    "retry": RetrySettings,
    "proxies": ProxySettings,
    "engine": EngineSettings,
}

#: numbers whose default is "none" (no cap)
_OPTIONAL_NUMBERS = {"rate", "max_rate"}

_POSITIVE = {"max_rate", "stall_limit", 
    "timeout", "max_body_bytes", "max_attempts", "max_wait", "deadline", "max_claims", "rate",
    "burst", "max_cooldown", "dead_after", "validate_every", "workers", "lease_seconds",
    "claim_size", "commit_every", "heartbeat_every",
}


_HEADER = re.compile(r"\[\s*([^\[\]#]+?)\s*\]\s*(?:#.*)?$")


def _key_re(*names: str) -> re.Pattern[str]:
    """``a.b = …`` with each name bare or quoted, dots with optional spaces (a dotted key)."""
    parts = [rf"""(?:{re.escape(n)}|"{re.escape(n)}"|'{re.escape(n)}')""" for n in names]
    return re.compile(r"\s*\.\s*".join(parts) + r"\s*[=.]")


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of ``key`` inside ``[section]`` (tomllib gives none).

    Knows headers with a trailing comment, quoted and dotted keys, a sub-table
    ``[section.key]``, and ``section.key = …`` or ``section = …`` at the top level.
    """
    here: list[str] = []  # the table the current line belongs to; [] is the top level
    in_table = _key_re(key) if key else None
    at_top = _key_re(section, key) if key else _key_re(section)
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = _HEADER.match(stripped)
        if m:
            here = [part.strip().strip("\"'") for part in m.group(1).split(".")]
            if here == [section] and key is None or (key is not None and here == [section, key]):
                return n
            continue
        if not here and at_top.match(stripped):
            return n
        if here == [section] and in_table is not None and in_table.match(stripped):
            return n
    return None


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _unsafe_value(text: str, *, whitespace: bool = True) -> str | None:
    """Why ``text`` cannot go into a header as it is (a key file saved with Windows line
    endings, a pasted space), or None. The value itself is never named: it may be a secret."""
    for ch in text:
        if not ch.isprintable() and ch != " ":
            return f"holds a control character ({repr(ch)[1:-1]})"
    if whitespace and text != text.strip():
        return "starts or ends with whitespace"
    return None


def expand_env(value: str, *, where: InputError, key: str = "") -> str:
    """Replace ``${VAR}`` with the environment's value; a missing variable is an error, and so
    is a value with a control character or surrounding whitespace (``key`` names the setting
    in the message)."""
    prefix = f"{key}: " if key else ""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise InputError(f"environment variable {name} is not set", source=where.source, line=where.line)
        val = os.environ[name]
        bad = _unsafe_value(val)
        if bad:
            raise InputError(f"{prefix}environment variable {name} {bad}", source=where.source, line=where.line)
        register_secret(val)
        return val

    return _ENV_REF.sub(sub, value)


def _coerce(cls: type, section: str, key: str, value: Any, err: InputError) -> Any:
    default = {f.name: f for f in dataclasses.fields(cls)}[key].default
    fdefault = {f.name: f for f in dataclasses.fields(cls)}[key].default_factory  # type: ignore[misc]
    sample = default if default is not dataclasses.MISSING else fdefault()
    def fail(reason: str) -> InputError:
        return InputError(f"[{section}] {key}: {reason}", source=err.source, line=err.line)

    if isinstance(sample, bool):
        if not isinstance(value, bool):
            raise fail("expected true or false")
        return value
    if isinstance(sample, tuple):
        if not isinstance(value, list) or not all(isinstance(v, int) and 100 <= v <= 599 for v in value):
            raise fail("expected a list of HTTP status codes, e.g. [404]")
        return tuple(value)
    if isinstance(sample, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise fail("expected a table of strings, e.g. { \"x-access-key\" = \"${STORY_API_KEY}\" }")
        for k in value:
            if key == "headers" and not _HEADER_NAME.fullmatch(k):
                raise fail(f"{k!r} is not a header name (letters, digits and -)")
        out = {str(k): expand_env(v, where=err, key=f"[{section}] {key}.{k}") for k, v in value.items()}
        for k, v in out.items():
            bad = _unsafe_value(v, whitespace=False) if key == "headers" else None
            if key == "headers" and not bad and not v.isascii():
                bad = "holds a character outside ASCII, which a header cannot carry"
            if bad:  # a header value cannot hold a line break or another control character
                raise InputError(f"[{section}] {key}.{k}: {bad}", source=err.source, line=err.line)
        return out
    if sample is None and key in _OPTIONAL_NUMBERS:
        sample = 0.0  # a number when given; absent means none
    if isinstance(sample, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected a number, got {value!r}")
        if isinstance(sample, int) and not isinstance(value, int):
            raise fail(f"expected a whole number, got {value!r}")
        if not math.isfinite(value):
            raise fail(f"expected a finite number, got {value!r}")
        if key in _POSITIVE and value <= 0:
            raise fail("must be greater than 0")
        if value < 0:
            raise fail("must not be negative")
        return type(sample)(value)
    if not isinstance(value, str):
        raise fail(f"expected a string, got {value!r}")
    return value


def parse_settings(text: str, *, source: str = "<config>") -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise InputError(f"not valid TOML: {reason}", source=source, line=int(m.group(1)) if m else None) from None
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            what = f"unknown section [{name}]" if isinstance(table, dict) else f"unknown key {name!r} outside any section"
            raise InputError(f"{what} (known: {known})", source=source, line=_line_of(text, name, None))
        if not isinstance(table, dict):
            raise InputError(f"{name} must be a table like [{name}]", source=source, line=_line_of(text, name, None))
        cls = _SECTIONS[name]
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        if name == "source":  # presets, request templates and rules: the sources package reads them
            table, values = read_source_table(table, text=text, source=source, expand=expand_env,
                                              line_of=lambda key: _line_of(text, "source", key))
        for key, value in table.items():
            where = InputError("", source=source, line=_line_of(text, name, key))
            if key not in names:
                raise InputError(f"[{name}] unknown key {key!r} (known: {', '.join(sorted(names))})",
                                 source=source, line=where.line)
            values[key] = _coerce(cls, name, key, value, where)
        sections[name] = cls(**values)
    settings = Settings(**sections, path=source)
    validate(settings, text=text)
    return settings


def validate(settings: Settings, *, text: str = "") -> None:
    src = settings.source
    path = settings.path
    def line(key: str) -> int | None:
        return _line_of(text, "source", key) if text else None
    if src.kind not in ("http", "sim"):
        raise InputError(f"[source] kind: expected \"http\" or \"sim\", got {src.kind!r}", source=path, line=line("kind"))
    if src.kind == "http" and src.url:
        if "{username}" not in src.url and "{username}" not in json.dumps(src.json):  # POST: may be in the body
            raise InputError("[source] url: must contain {username}", source=path, line=line("url"))
        if not src.url.startswith(("http://", "https://")):
            raise InputError("[source] url: must start with http:// or https://", source=path, line=line("url"))
    if settings.retry.base_wait > settings.retry.max_wait:
        raise InputError("[retry] base_wait must not exceed max_wait", source=path, line=_line_of(text, "retry", "base_wait") if text else None)


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Read a config file, or return the defaults when ``path`` is None."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("config file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file: {exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}", source=str(path)) from None
    return parse_settings(text, source=str(path))
