"""The operator's list of profiles to check: a ``.txt`` (one a line) or a ``.csv`` file.

Every line is read, every bad line is reported (``FILE:LINE: reason``), and unless the
caller asks to skip them, one bad line means nothing is imported. Usernames are normalised
(``@name``, profile URLs, upper case) and de-duplicated in file order.

The small file helpers here (:func:`read_file`, :func:`iter_lines`, :func:`display`) are
shared with :mod:`storycheck_tui.inputs.proxies`.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from storycheck_tui.errors import InputError, InputErrors
from storycheck_tui.words import plural

MAX_USERNAME = 30

_VALID = re.compile(r"[a-z0-9._]{1,30}")
_VALID_ANY_CASE = re.compile(r"[A-Za-z0-9._]{1,30}")
_BAD_CHAR = re.compile(r"[^A-Za-z0-9._]")
_TRAILING_COMMENT = re.compile(r"\s#")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

#: Instagram paths that are not profiles: ``instagram.com/p/<code>`` is a post, not user "p".
_IG_NOT_PROFILES = frozenset({"p", "reel", "reels", "tv", "explore", "accounts", "direct"})

_DISPLAY_MAX = 60

#: invalid lines listed one by one; past these only their number is kept (a file of a
#: million bad lines must not hold a million messages)
MAX_LISTED = 100


# --------------------------------------------------------------------------- shared helpers


def display(text: str, limit: int = _DISPLAY_MAX) -> str:
    """``text`` made safe to echo in a one-line message: control and other invisible
    characters shown repr-style (``\\x00``, ``\\n``, ``\\u200b``), quotes and backslashes
    escaped, long values cut with an ellipsis."""
    if len(text) > limit:
        text = text[:limit]
        cut = True
    else:
        cut = False
    if text.isprintable() and '"' not in text and "\\" not in text:
        out = text
    else:
        out = "".join(
            ch if ch.isprintable() and ch not in '"\\' else ("\\" + ch if ch.isprintable() else repr(ch)[1:-1])
            for ch in text
        )
    return out + "…" if cut else out


def display_char(ch: str) -> str:
    """One character, quoted repr-style: ``'$'``, ``'\\x00'``, ``' '``."""
    return repr(ch)


def source_name(path: str | os.PathLike) -> str:
    """The path as given, as ``str``."""
    return os.fsdecode(path)


def safe_source(source: str) -> str:
    return source if source.isprintable() else display(source, limit=10_000)


def open_error(exc: OSError) -> str:
    """A short reason for a file that cannot be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read file: {exc.strerror or type(exc).__name__}"


def _utf8_error(path: str | os.PathLike, source: str) -> InputError:
    """Locate the first byte that is not UTF-8 and name its line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:  # pragma: no cover - it was readable a moment ago
        return InputError(open_error(exc), source=source)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return InputError("file is UTF-16 encoded; save it as UTF-8", source=source, line=1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        return InputError(f"not valid UTF-8 (byte 0x{bad}); save the file as UTF-8", source=source, line=line)
    return InputError("not valid UTF-8; save the file as UTF-8", source=source)  # pragma: no cover


def read_file(path: str | os.PathLike, source: str, consume: Callable[[Iterator[str]], None]) -> None:
    """Open ``path`` as UTF-8 (BOM tolerated) and hand its text lines to ``consume``.

    Lines keep their endings (``newline=""``) so the csv module sees quoted newlines.
    Any OS or decoding failure becomes one :class:`InputError` naming the file (and, for
    bytes that are not UTF-8, the line of the first bad byte).
    """
    shown = safe_source(source)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            consume(_strip_bom(f))
    except UnicodeDecodeError:
        raise _utf8_error(path, shown) from None
    except OSError as exc:
        raise InputError(open_error(exc), source=shown) from None


def _strip_bom(lines: Iterator[str]) -> Iterator[str]:
    first = True
    for line in lines:
        if first:
            first = False
            line = line.removeprefix("\ufeff")
        yield line


class LineErrors:
    """The invalid lines of one file: the first ``limit`` in full, the rest only counted."""

    def __init__(self, shown: str, *, limit: int = MAX_LISTED, scrub: Callable[[str], str] | None = None) -> None:
        self.shown = shown
        self.limit = limit
        self.scrub = scrub  # applied to the kept reasons when they are reported
        self.listed: list[InputError] = []
        self.count = 0

    def add(self, reason: str, line: int | None) -> None:
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(InputError(reason, source=self.shown, line=line))

    def report(self) -> list[InputError]:
        """The listed errors, and one more line saying how many were not listed. Reasons are
        scrubbed here, once the whole file is read (a later line may register a password)."""
        listed = self.listed
        if self.scrub:
            listed = [InputError(self.scrub(e.reason), source=e.source, line=e.line) for e in listed]
        more = self.count - len(listed)
        if not more:
            return listed
        return listed + [InputError(f"{plural(more, 'more invalid line')} not listed "
                                         f"({self.count:,} in all)", source=self.shown)]


def iter_lines(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    """``(line number, content)`` of the lines that carry data: blank lines and ``#``
    comments (whole line, or after whitespace: ``name  # note``) are dropped."""
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text[0] == "#":
            continue
        if "#" in text:
            m = _TRAILING_COMMENT.search(text)
            if m:
                text = text[: m.start()].rstrip()
        yield n, text


# --------------------------------------------------------------------------- usernames


def normalise_username(raw: str) -> str:
    """``"@Some.Name"``, ``"https://www.instagram.com/some.name/"`` -> ``"some.name"``.

    Raises :class:`ValueError` whose message is a precise, printable reason.
    """
    text = raw.strip()
    if _VALID_ANY_CASE.fullmatch(text) and text.strip("."):  # the common case, fast
        return text.lower()
    text = text.removeprefix("@")
    if "/" in text:
        text = _username_from_url(text)
    if not text:
        raise ValueError("empty username")
    m = _BAD_CHAR.search(text)
    if m:
        raise ValueError(f'invalid character {display_char(m.group())} in username "{display(text)}"')
    if len(text) > MAX_USERNAME:
        raise ValueError(f"username longer than {MAX_USERNAME} characters ({len(text)})")
    if not text.strip("."):  # in a URL path, "." and ".." name this folder and the one above it
        raise ValueError(f'username "{text}" is only dots: no profile has that name')
    return text.lower()


def _username_from_url(text: str) -> str:
    """The username in a profile URL: the first path segment (``/@name`` too)."""
    shown = display(text)
    m = _URL_SCHEME.match(text)
    if m:
        if m.group(1).lower() not in ("http", "https"):
            raise ValueError(f'not a profile URL (scheme must be http or https): "{shown}"')
        url = text
    else:
        host = text.split("/", 1)[0]
        if "." not in host:  # "a/b" is not a URL: report the character
            raise ValueError(f"invalid character '/' in username \"{shown}\"")
        url = "https://" + text
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
    except ValueError:
        raise ValueError(f'invalid URL "{shown}"') from None
    if not hostname:
        raise ValueError(f'URL has no host name: "{shown}"')
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError(f'URL has no username: "{shown}"')
    first = segments[0]
    if hostname == "instagram.com" or hostname.endswith(".instagram.com"):
        low = first.lower()
        if low == "stories" and len(segments) > 1:  # instagram.com/stories/<name>/<id>
            first = segments[1]
        elif low in _IG_NOT_PROFILES or low == "stories":
            raise ValueError(f'URL is not a profile link (/{display(first)}/…): "{shown}"')
    if first.startswith("@"):  # tiktok.com/@name, threads.net/@name
        first = first[1:]
        if not first:
            raise ValueError(f'URL has no username: "{shown}"')
    return first


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class ProfileList:
    """The usernames read from one file."""

    usernames: list[str]  # normalised, unique, in file order
    duplicates: int  # how many duplicate lines were dropped
    invalid: list[InputError]  # skipped lines, the first MAX_LISTED (only ever with skip_invalid=True)
    source: str  # the path as given
    invalid_count: int = 0  # every skipped line, listed or not


def load_profiles(path: str | os.PathLike, *, skip_invalid: bool = False) -> ProfileList:
    """Read usernames from ``path`` (``.csv``: a ``username`` column, else the first one;
    anything else: one a line, ``#`` comments and blank lines ignored).

    Raises :class:`InputErrors` listing the invalid lines (nothing is imported; past
    :data:`MAX_LISTED` only their number), unless ``skip_invalid``: then they are skipped,
    the first of them returned in ``ProfileList.invalid``.
    Raises :class:`InputError` when the file is missing, unreadable, not UTF-8 or holds no
    username at all.
    """
    source = source_name(path)
    shown = safe_source(source)
    usernames: list[str] = []
    seen: set[str] = set()
    invalid = LineErrors(shown)
    duplicates = 0

    def rows(lines: Iterator[str]) -> Iterator[tuple[int, str | None]]:
        if source.lower().endswith(".csv"):
            return _csv_cells(lines, shown)
        return iter_lines(lines)

    def consume(lines: Iterator[str]) -> None:
        nonlocal duplicates
        valid = _VALID
        for n, text in rows(lines):
            if text is None:
                invalid.add("no username in this row", n)
                continue
            if valid.fullmatch(text):
                name = text
            else:
                try:
                    name = normalise_username(text)
                except ValueError as exc:
                    invalid.add(str(exc), n)
                    continue
            if name in seen:
                duplicates += 1
            else:
                seen.add(name)
                usernames.append(name)

    read_file(path, source, consume)
    if invalid.count and not skip_invalid:
        raise InputErrors(invalid.report())
    if not usernames:
        if invalid.count:
            raise InputError(f"no valid usernames ({plural(invalid.count, 'invalid line')} skipped)", source=shown)
        raise InputError("no usernames found (the file is empty or holds only comments)", source=shown)
    return ProfileList(usernames=usernames, duplicates=duplicates, invalid=invalid.report(), source=source,
                       invalid_count=invalid.count)


def _csv_cells(lines: Iterator[str], shown: str) -> Iterator[tuple[int, str | None]]:
    """``(line, cell)`` of the username column of each data row of a CSV file (``None``
    for a row whose username cell is empty or missing). Rows whose first cell starts with
    ``#`` are comments.

    The header is the first non-blank row if one of its cells is ``username`` (any case);
    without one, every row is data and the username is the first column. A ``;`` or tab
    separated file (no comma in its first row) is read with that separator.
    """
    lines = iter(lines)
    head: list[str] = []
    for line in lines:  # find the first non-blank line to choose the separator
        head.append(line)
        if line.strip():
            break
    delimiter = ","
    if head and "," not in head[-1]:
        if ";" in head[-1]:
            delimiter = ";"
        elif "\t" in head[-1]:
            delimiter = "\t"

    def chained() -> Iterator[str]:
        yield from head
        yield from lines

    reader = csv.reader(chained(), delimiter=delimiter)
    column: int | None = None
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {display(str(exc))}", source=shown, line=last + 1) from None
        start, last = last + 1, reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if column is None:
            lowered = [cell.strip().lower() for cell in row]
            if "username" in lowered:
                column = lowered.index("username")
                continue
            column = 0
        cell = row[column].strip() if column < len(row) else ""
        yield start, (cell or None)
