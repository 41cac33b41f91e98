"""Keep secrets out of every output: logs, batch_log, exports, the screen."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

MASK = "***"

_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*)(?::(?P<pw>[^@/\s]*))?@")


def mask_url(url: str) -> str:
    """``scheme://user:pass@host:port/...`` -> ``scheme://user:***@host:port/...``."""
    return _URL_CREDS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["pw"] is not None else m[0], url)


def proxy_label(url: str) -> str:
    """A short, secret-free name for a proxy URL: ``scheme://host:port`` (user kept, password masked)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}"
    except ValueError:
        return mask_url(url)


class SecretRegistry:
    """Known secret values (proxy passwords, API keys) scrubbed from any text we emit.

    Values are registered once when settings and proxies are loaded; :meth:`scrub` replaces
    each with ``***``. Short values (under 4 characters) are not registered: replacing them
    would mangle ordinary text, and they are masked structurally in URLs anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4:
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                alts = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alts))

    def scrub(self, text: str) -> str:
        text = mask_url(text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern else text


#: The process-wide registry used by logging, exports and the console.
secrets = SecretRegistry()


def scrub(text: str) -> str:
    return secrets.scrub(text)
