"""Keep secrets out of every output: logs, batch_log, exports, the screen.

Two mechanisms, both linear in the length of the text and independent of how many secrets
are known (a pool of 100,000 proxies must not slow every log line down):

* structural: the password of any ``scheme://user:password@host`` is masked wherever it
  appears (:func:`mask_url`), registered or not;
* known values: every secret registered with :func:`register_secret` (in each form it can
  take in a message: URL-encoded, as a ``Basic`` token, escaped by ``repr`` or JSON...) is
  found by an Aho-Corasick automaton (``pyahocorasick``) and masked.

:func:`one_line` is the one "masked, printable, single line" helper: logs, the database's
error texts and the sources' error messages all go through it. Text from outside (an answer
body, a proxy's reply) is cut to its display length before it is masked.

Threads: the registry is written by whoever loads settings or proxies and read by every
thread that emits text; ``SecretRegistry._lock`` guards its values, and a built automaton is
never changed (a new one replaces it), so scrubbing takes no lock.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import quote, quote_plus, unquote, urlsplit

import ahocorasick

MASK = "***"
#: secrets shorter than this are not registered (they would mangle ordinary text)
MIN_SECRET = 4
#: text from outside is cut to its display length plus this much (or the longest secret) before
#: masking, so a secret that straddles the display length is still whole when it is looked for
CUT_MARGIN = 512

# where a URL's authority ends (the userinfo runs to the LAST '@' before it, as urlsplit reads it)
_AUTHORITY_END = re.compile(r"[/?#\s]")


def mask_url(text: str) -> str:
    """``scheme://user:pass@host:port/...`` -> ``scheme://user:***@host:port/...``, anywhere in ``text``.

    A scan for ``://`` and the first character ending the authority: linear, with no
    backtracking, whatever the text (a long run of letters before an ``@`` once took a regex
    quadratic time).
    """
    if "@" not in text:  # most text has none
        return text
    start = text.find("://")
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        begin = start + 3
        m = _AUTHORITY_END.search(text, begin)
        end = m.start() if m else len(text)
        at = text.rfind("@", begin, end)
        if at >= 0:
            user, sep, _password = text[begin:at].partition(":")
            if sep:
                out.append(text[done:begin])
                out.append(f"{user}:{MASK}")
                done = at
        start = text.find("://", max(end, begin))
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


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
    """Known secret values (proxy passwords, API keys) masked in any text we emit.

    :meth:`add` takes one exact string; :func:`register_secret` adds every form of a secret.
    The automaton is built lazily by the next :meth:`scrub`, not on every :meth:`add`:
    loading a proxy list with thousands of distinct passwords stays linear.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._automaton: ahocorasick.Automaton | None = None
        self._longest = 0
        self._stale = False

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_SECRET:
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                self._longest = max(self._longest, len(value))
                self._stale = True  # rebuilt by the next scrub

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._values)

    def restore(self, values: frozenset[str]) -> None:
        """Forget every secret not in ``values`` (tests: one test's passwords stay its own)."""
        with self._lock:
            self._values = set(values)
            self._longest = max(map(len, self._values), default=0)
            self._stale = True

    @property
    def longest(self) -> int:
        """Length of the longest registered value."""
        return self._longest

    def _built(self) -> ahocorasick.Automaton | None:
        if self._stale:
            with self._lock:
                if self._stale:
                    automaton = None
                    if self._values:
                        automaton = ahocorasick.Automaton()
                        for value in self._values:
                            automaton.add_word(value, len(value))
                        automaton.make_automaton()
                    self._automaton = automaton
                    self._stale = False
        return self._automaton

    def scrub(self, text: str) -> str:
        text = mask_url(text)
        automaton = self._built()
        if automaton is None:
            return text
        spans: list[tuple[int, int]] = []  # merged [start, end] of every match, overlaps joined
        for end, length in automaton.iter(text):
            start = end - length + 1
            while spans and start <= spans[-1][1]:
                start = min(start, spans.pop()[0])
            spans.append((start, end))
        if not spans:
            return text
        out: list[str] = []
        done = 0
        for start, end in spans:
            out.append(text[done:start])
            out.append(MASK)
            done = end + 1
        out.append(text[done:])
        return "".join(out)


#: The process-wide registry used by logging, exports and the console.
secrets = SecretRegistry()


def _escaped_forms(value: str) -> set[str]:
    """How ``value`` reads once a library or storycheck escaped it into a message."""
    return {
        repr(value)[1:-1],  # str repr: "\r" -> "\\r", quotes escaped if both kinds occur
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],  # bytes repr (h11's "Illegal header value b'..'")
        value.encode("unicode_escape").decode("ascii"),
        json.dumps(value)[1:-1],  # JSON, ASCII-only
        json.dumps(value, ensure_ascii=False)[1:-1],
        "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in value),  # one_line
    }


def register_secret(value: str | None, *, user: str | None = None) -> None:
    """Register ``value`` in every form it can take in text we emit.

    As written; stripped of surrounding whitespace; URL-encoded (path, query and form
    styles); escaped (``repr`` of the text and of its bytes, ``unicode_escape``, JSON,
    :func:`one_line`'s escapes); and, with ``user`` (the user name of a ``user:password``
    pair, ``""`` for none), as the ``Basic`` token of ``user:value`` that an
    ``Authorization`` or ``Proxy-Authorization`` header carries.
    """
    if not value:
        return
    forms = {value, value.strip(), quote(value, safe=""), quote(value), quote_plus(value)}
    forms |= _escaped_forms(value)
    if user is not None:
        forms.add(base64.b64encode(f"{user}:{value}".encode("utf-8", "surrogatepass")).decode("ascii"))
    for form in forms:
        secrets.add(form)


def add_url_credentials(url: str | None) -> None:
    """Register the password of ``scheme://user:pass@host`` in every form (see :func:`register_secret`),
    both as written in the URL and percent-decoded, with the Basic token httpx sends to a proxy."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    if not password:
        return
    register_secret(password)
    register_secret(unquote(password), user=unquote(user or ""))


#: a single path segment or query value of a webhook URL is registered as a secret on its own
#: only if it looks like a token: this long, or ...
TOKEN_LONG = 16
#: ... at least this long and mixing letters and digits
TOKEN_MIXED = 8


def _looks_like_token(value: str) -> bool:
    """``AAHk9x2Q...`` or ``B0b0Path`` yes; ``events``, ``json``, ``v1``, ``sendMessage`` no."""
    if len(value) >= TOKEN_LONG:
        return True
    return len(value) >= TOKEN_MIXED and any(c.isalpha() for c in value) and any(c.isdigit() for c in value)


def add_webhook_secrets(url: str | None) -> None:
    """Register what a webhook URL may carry as credentials, each in every form (see
    :func:`register_secret`): the whole URL, its path and query (``/bot123:AAH.../sendMessage?x=1``,
    as a request line or a library's message quotes it), the password of its authority, and
    each path segment or query value that looks like a token: :data:`TOKEN_LONG` characters or
    more, or :data:`TOKEN_MIXED` or more mixing letters and digits. Ordinary words of a path
    (``/api/v1/events?format=json``) are not registered: the registry is process-wide, and
    ``events`` or ``json`` masked in every log line would hide user names and log text."""
    if not url:
        return
    add_url_credentials(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        register_secret(url)
        return
    suffix = parts.path + (f"?{parts.query}" if parts.query else "")
    words = [s for s in parts.path.split("/") if s]
    words += [v for _k, _sep, v in (item.partition("=") for item in parts.query.split("&") if item)]
    for value in [url, suffix, *(w for w in words if _looks_like_token(w) or _looks_like_token(unquote(w)))]:
        register_secret(value)
        register_secret(unquote(value))


def mask_webhook(url: str) -> str:
    """A webhook URL as shown anywhere: its scheme, host and port, ``/***`` for any path and
    ``?***`` for any query (``https://api.telegram.org/bot123:AAH.../sendMessage`` ->
    ``https://api.telegram.org/***``, ``https://ntfy.sh/my-topic?x=1`` -> ``https://ntfy.sh/***?***``).
    Hooks carry their credentials anywhere in the path (a first segment ``bot<token>``, a
    private topic name) or the query; the host says which service it is. Registers the URL's
    secrets (:func:`add_webhook_secrets`), so a library's message that quotes it is masked too."""
    add_webhook_secrets(url)
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    if ":" in host:  # IPv6: keep the brackets
        host = f"[{host}]"
    out = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.path not in ("", "/"):
        out += f"/{MASK}"
    if parts.query:
        out += f"?{MASK}"
    return out


def scrub(text: str) -> str:
    return secrets.scrub(text)


def _escape(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def one_line(text: str, limit: int | None = None, *, fold: bool = False) -> str:
    """``text`` masked, on one printable line, at most ``limit`` characters (``…`` marks a cut).

    Control characters are escaped (``\\n``, ``\\x1b``, ``\\u202e``), so a terminal that shows
    the line runs no escape sequence and the reader sees what was sent; with ``fold`` every
    run of whitespace (line breaks, tabs) becomes one space first, for multi-line texts whose
    line breaks carry no meaning (a driver's hint lines, an HTML error page). Printable text
    (markup, emoji, any script) is kept as is. With a ``limit`` the text is cut before it is
    masked (to the limit plus room for the longest secret), so its cost is bounded however
    long the text is.
    """
    if limit is not None:
        window = limit + max(CUT_MARGIN, secrets.longest)
        if len(text) > window:
            text = text[:window]
    text = scrub(text)
    if fold:
        folded = " ".join(text.split())
        if folded != text:
            text = scrub(folded)  # a secret written across a line break is whole again
    if not text.isprintable():
        text = _escape(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
