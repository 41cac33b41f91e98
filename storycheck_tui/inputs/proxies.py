"""The operator's proxy list: one proxy a line, ``#`` comments and blank lines ignored.

Accepted forms::

    scheme://[user:pass@]host:port     scheme: http, https, socks5, socks5h
    host:port                          -> http://host:port
    host:port:user:pass                -> http://user:pass@host:port  (user/pass percent-encoded)
    user:pass@host:port                -> http://user:pass@host:port

Hosts are host names, IPv4 addresses or bracketed IPv6 addresses (``[::1]:8080``).

Secrets: every password is registered in :data:`storycheck_tui.masking.secrets` the moment
it is split off the line, before anything else can fail. Error reasons never echo a part
of a line that carries credentials (a swapped ``user:pass:host:port`` line would put the
password where the port belongs); they are also scrubbed as a last line of defence.
:class:`ProxySpec` keeps the URL out of its ``repr``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from storycheck_tui.errors import InputError, InputErrors
from storycheck_tui.inputs.profiles import LineErrors, display, iter_lines, read_file, safe_source, source_name
from storycheck_tui.masking import proxy_label, register_secret, secrets
from storycheck_tui.words import plural

SCHEMES = ("http", "https", "socks5", "socks5h")
_SCHEME_LIST = "http, https, socks5 or socks5h"
_FORMS = "expected host:port, host:port:user:pass or a URL"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?",
    re.ASCII,
)
_IPV4ISH = re.compile(r"[0-9.]+")


@dataclass(frozen=True)
class ProxySpec:
    """One proxy. ``url`` may hold credentials: never log or show it, use ``label``."""

    url: str = field(repr=False)  # full URL, may contain credentials
    label: str  # proxy_label(url): secret-free

    def __str__(self) -> str:
        return self.label


class _Reject(ValueError):
    """A reason that is safe to show (it echoes no credential)."""


def parse_proxy_line(text: str) -> ProxySpec:
    """One proxy from one line (comments already removed). Raises :class:`ValueError`
    whose message never contains the password."""
    try:
        return _parse_line(text)
    except ValueError as exc:
        raise ValueError(secrets.scrub(str(exc))) from None


def _parse_line(text: str) -> ProxySpec:
    """:func:`parse_proxy_line` without the final scrub (``load_proxies`` scrubs all its
    reasons at once: one compile of the secrets pattern, not one per line)."""
    try:
        return _parse(text.strip())
    except _Reject:
        raise
    except (ValueError, UnicodeError):  # defensive: a library said no; do not echo it
        raise _Reject(_FORMS) from None


def _split_colon_form(text: str) -> list[str]:
    """``host:port[:user:pass]`` split in (up to) four; a bracketed IPv6 host stays whole."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _Reject("unclosed '[' in IPv6 address")
        host, after = text[: end + 1], text[end + 1 :]
        if not after:
            raise _Reject(f"missing port: {_FORMS}")
        if not after.startswith(":"):
            raise _Reject(_FORMS)
        return [host, *after[1:].split(":", 2)]
    return text.split(":", 3)


def _register(password: str) -> None:
    register_secret(password)


def _parse(text: str) -> ProxySpec:
    if not text:
        raise _Reject("empty proxy line")
    # host:port:user:pass first: its password may hold '@', '/' or even '://'
    if not text.startswith("[") or "]" in text:
        parts = _split_colon_form(text)
        if (
            len(parts) == 4
            and "@" not in parts[0]
            and _port_number(parts[1]) is not None
            and not ("::" in text and _is_ipv6(text))
        ):
            host, port, user, password = parts
            _register(password)
            return _build("http", host, port, user, password, echo=False)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if not _SCHEME.fullmatch(scheme):
            raise _Reject(_FORMS)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise _Reject(f"unsupported proxy scheme {scheme!r} (use {_SCHEME_LIST})")
        return _parse_authority(scheme, rest)
    if "@" in text:  # user:pass@host:port without a scheme
        return _parse_authority("http", text)
    parts = _split_colon_form(text)
    if len(parts) > 2 and not text.startswith("[") and _is_ipv6(text):
        raise _Reject("an IPv6 address must be in brackets: [addr]:port")
    if len(parts) == 1:
        raise _Reject(f"missing port: {_FORMS}")
    if len(parts) == 2:
        host, port = parts
        return _build("http", host, port, None, None, echo=True)
    if len(parts) == 3:
        raise _Reject(_FORMS)
    # four parts, but the second is not a port: perhaps user:pass:host:port, so the
    # "port" may well be the password; register both, echo neither
    host, port, user, password = parts
    _register(password)
    _register(port)
    if _port_number(password.rsplit(":", 1)[-1]) is not None:
        raise _Reject(f"the port must come second: {_FORMS} (user:pass:host:port is not supported)")
    return _build("http", host, port, user, password, echo=False)


def _parse_authority(scheme: str, rest: str) -> ProxySpec:
    """``[user[:pass]@]host:port[/]`` of a URL; user and pass are percent-decoded."""
    user = password = None
    if "@" in rest:
        userinfo, hostport = rest.rsplit("@", 1)
        raw_user, sep, raw_pw = userinfo.partition(":")
        if sep:
            password = unquote(raw_pw)
            register_secret(raw_pw)
            _register(password)
        user = unquote(raw_user)
        if not user:
            raise _Reject("missing proxy user name before ':' in the credentials")
        echo = False
    else:
        hostport = rest
        echo = True
    hostport = hostport.removesuffix("/")
    if any(c in hostport for c in "/?#"):
        raise _Reject("a proxy URL must not have a path, query or fragment: it ends with :port")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _Reject("unclosed '[' in IPv6 address")
        host, after = hostport[: end + 1], hostport[end + 1 :]
        if not after.startswith(":") or not after[1:]:
            raise _Reject("missing port after the IPv6 address")
        port = after[1:]
    else:
        host, sep, port = hostport.rpartition(":")
        if not sep:
            raise _Reject("missing port: a proxy URL must end in :port")
        if ":" in host:
            raise _Reject("an IPv6 address must be in brackets: [addr]:port")
    return _build(scheme, host, port, user, password, echo=echo)


def _is_ipv6(text: str) -> bool:
    """``text`` is an unbracketed IPv6 address, with or without a trailing ``:port``."""
    for candidate in (text, text.rsplit(":", 1)[0]):
        try:
            ipaddress.IPv6Address(candidate)
            return True
        except ValueError:
            pass
    return False


def _port_number(port: str) -> int | None:
    if port.isascii() and port.isdigit() and len(port) <= 5:
        n = int(port)
        if 1 <= n <= 65535:
            return n
    return None


def _build(scheme: str, host: str, port: str, user: str | None, password: str | None, *, echo: bool) -> ProxySpec:
    """Validate host and port; ``echo`` says whether they may be quoted in a reason."""
    host = _check_host(host, echo=echo)
    number = _port_number(port)
    if number is None:
        if not echo:  # credentials on this line: a swapped line may hold the password here
            _register(port)
            raise _Reject("invalid port (expected a number from 1 to 65535)")
        if port.isascii() and port.isdigit():
            raise _Reject(f"port {display(port)} out of range (1-65535)")
        raise _Reject(f"invalid port '{display(port)}'" if port else "missing port")
    if user is not None:
        if not user:
            raise _Reject("missing proxy user name")
        creds = quote(user, safe="")
        if password is not None:
            creds += ":" + quote(password, safe="")
        netloc = f"{creds}@{host}:{number}"
    else:
        netloc = f"{host}:{number}"
    url = f"{scheme}://{netloc}"
    return ProxySpec(url=url, label=proxy_label(url))


def _check_host(host: str, *, echo: bool) -> str:
    """The host, lower-cased, if it is a host name, an IPv4 or a bracketed IPv6 address."""
    shown = f" '{display(host)}'" if echo else ""
    if not host:
        raise _Reject("missing host")
    if host.startswith("["):
        inner = host[1:-1] if host.endswith("]") else ""
        try:
            addr = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _Reject(f"invalid IPv6 address{shown}") from None
        return f"[{addr.compressed}]"
    if _IPV4ISH.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _Reject(f"invalid IPv4 address{shown}") from None
    if not _HOSTNAME.fullmatch(host):
        raise _Reject(f"invalid host name{shown}")
    return host.lower()


def load_proxies(path: str | os.PathLike, *, skip_invalid: bool = False) -> list[ProxySpec]:
    """Read proxies from ``path``, one a line; the same URL twice is kept once.

    Raises :class:`InputErrors` listing the invalid lines (nothing is imported) unless
    ``skip_invalid``; :class:`InputError` when the file is missing, unreadable, not UTF-8
    or holds no proxy at all.
    """
    source = source_name(path)
    shown = safe_source(source)
    specs: list[ProxySpec] = []
    seen: set[str] = set()
    invalid = LineErrors(shown, scrub=secrets.scrub)  # a bad line may hold a password

    def consume(lines: Iterator[str]) -> None:
        for n, text in iter_lines(lines):
            try:
                spec = _parse_line(text)
            except ValueError as exc:
                invalid.add(str(exc), n)
                continue
            if spec.url not in seen:
                seen.add(spec.url)
                specs.append(spec)

    read_file(path, source, consume)
    if invalid.count and not skip_invalid:
        raise InputErrors(invalid.report())
    if not specs:
        if invalid.count:
            raise InputError(f"no valid proxies ({plural(invalid.count, 'invalid line')} skipped)", source=shown)
        raise InputError("no proxies found (the file is empty or holds only comments)", source=shown)
    return specs
