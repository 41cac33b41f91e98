"""Keep secrets out of every output: logs, batch_log, exports, the screen."""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import unquote, urlsplit

MASK = "***"

# The userinfo runs to the LAST '@' of the authority (as urlsplit reads it), so a password
# or user holding a raw '@' is masked whole instead of leaking its tail.
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


def _mask_creds(m: re.Match[str]) -> str:
    user, sep, _pw = m["userinfo"].partition(":")
    return f"{m['scheme']}{user}:{MASK}@" if sep else m[0]


def mask_url(url: str) -> str:
    """``scheme://user:pass@host:port/...`` -> ``scheme://user:***@host:port/...``."""
    if "@" not in url:  # the pattern needs one: most log text has none (a regex scan is 20x dearer)
        return url
    return _URL_CREDS.sub(_mask_creds, url)


def proxy_label(url: str) -> str:
    """A short, secret-free name for a proxy URL: ``scheme://host:port`` (user kept, password masked)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        if ":" in host:  # IPv6: keep the brackets, or "::1:8080" reads as one address
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}"
    except ValueError:
        return mask_url(url)


class SecretRegistry:
    """Known secret values (proxy passwords, API keys) scrubbed from any text we emit.

    Values are registered once when settings and proxies are loaded; :meth:`scrub` replaces
    each with ``***``. Short values (under 4 characters) are not registered: replacing them
    would mangle ordinary text, and they are masked structurally in URLs anyway.

    The pattern is compiled lazily by the next :meth:`scrub`, not on every :meth:`add`:
    loading a proxy list with thousands of distinct passwords must stay linear.
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
                self._pattern = None  # recompiled by the next scrub

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._values)

    def restore(self, values: frozenset[str]) -> None:
        """Forget every secret not in ``values`` (tests: one test's passwords stay its own)."""
        with self._lock:
            self._values = set(values)
            self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._values:
            with self._lock:
                if self._pattern is None and self._values:
                    alts = sorted(self._values, key=len, reverse=True)
                    self._pattern = re.compile("|".join(re.escape(v) for v in alts))
                pattern = self._pattern
        return pattern

    def scrub(self, text: str) -> str:
        text = mask_url(text)
        pattern = self._compiled()
        return pattern.sub(MASK, text) if pattern else text


#: The process-wide registry used by logging, exports and the console.
secrets = SecretRegistry()


def add_url_credentials(url: str | None) -> None:
    """Register the password of ``scheme://user:pass@host`` in every form it travels in:
    as written, URL-decoded, and as the ``Basic`` token httpx sends in Proxy-Authorization
    (a proxy's error page that echoes the request headers must not leak it either)."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    if not password:
        return
    plain = unquote(password)
    for value in (password, plain):
        secrets.add(value)
    token = base64.b64encode(f"{unquote(user or '')}:{plain}".encode("utf-8")).decode("ascii")
    secrets.add(token)


def scrub(text: str) -> str:
    return secrets.scrub(text)


def one_line(text: str, limit: int | None = None) -> str:
    """Masked, printable, single-line, at most ``limit`` characters."""
    text = scrub(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    text = scrub(text)  # joining lines may have rebuilt a URL with credentials
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
