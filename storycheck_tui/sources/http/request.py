"""The request template: method, URL and JSON body, with ``{username}`` filled in per check.

``${VAR}`` was expanded when the config was read (and each value registered as a secret);
``{username}`` is filled here: URL-encoded in the URL, as is in JSON string values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from storycheck_tui.config import SourceSettings
from storycheck_tui.masking import one_line

__all__ = ["RequestTemplate"]

PLACEHOLDER = "{username}"


def _fill(value: Any, username: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, username)
    if isinstance(value, dict):
        return {k: _fill(v, username) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, username) for v in value]
    return value


def _mentions(value: Any) -> bool:
    if isinstance(value, str):
        return PLACEHOLDER in value
    if isinstance(value, dict):
        return any(_mentions(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v) for v in value)
    return False


@dataclass(frozen=True)
class RequestTemplate:
    method: str
    url: str
    json: Any = None

    @classmethod
    def from_settings(cls, s: SourceSettings) -> "RequestTemplate":
        return cls(method=(s.method or "GET").upper(), url=s.url, json=s.json)

    @property
    def names_the_user(self) -> bool:
        """Whether ``{username}`` appears in the URL or the JSON body (a request must say whom)."""
        return PLACEHOLDER in self.url or _mentions(self.json)

    def url_for(self, username: str) -> str:
        return self.url.replace(PLACEHOLDER, quote(username, safe=""))

    def json_for(self, username: str) -> Any:
        return None if self.json is None else _fill(self.json, username)

    def describe(self, username: str, headers: dict[str, str]) -> list[str]:
        """The request as ``source test`` prints it, secrets masked: method and URL, headers, body."""
        lines = [one_line(f"{self.method} {self.url_for(username)}")]
        lines += [one_line(f"{name}: {value}") for name, value in headers.items()]
        body = self.json_for(username)
        if body is not None:
            lines.append(one_line(json.dumps(body, ensure_ascii=False)))
        return lines
