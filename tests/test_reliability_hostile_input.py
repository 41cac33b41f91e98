"""Reliability: hostile input.

Property-based tests (hypothesis) of every parser that reads operator or network input: the
profile list, the proxy list, the settings file, and the story source's response parser (both
directly and over a real loopback socket). Any input ends in acceptance or a clear error,
never a traceback.

Then hostile text end to end: usernames (which only the store API accepts; the profile parser
refuses them) and error texts (from a loopback source) full of Rich markup, ANSI escapes,
newlines, right-to-left overrides and emoji are stored and shown literally, and cannot forge
a line of the log file.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import math
import re
import string
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from servers import RawServer, answer, json_answer
from servers.harness import check_log_file, engine_run, fast_settings, storycheck_cmd, subprocess_env
from storycheck_tui.config import SourceSettings, parse_settings
from storycheck_tui.errors import CheckError, InputError, InputErrors
from storycheck_tui.inputs.profiles import load_profiles
from storycheck_tui.inputs.proxies import load_proxies, parse_proxy_line
from storycheck_tui.sources.base import DIRECT, Outcome
from storycheck_tui.sources.http import BadBody, HttpSource, parse_retry_after, parse_stories

TRIED: dict[str, int] = {}


def tried(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_inputs():
    yield
    print(f"\nhostile inputs tried: {sum(TRIED.values())} {TRIED}")


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
# text without lone surrogates (a file or a socket cannot carry those) but with everything else
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
lines_of = st.lists(st.one_of(any_text, st.sampled_from([
    "@someone", "https://instagram.com/someone/", "user.name_1", "", "#comment", "a" * 31, "[bold]x[/]",
    "\x1b[31mred", "name\x00nul", "\ufeffbom", "ユーザー", "😀", "a,b,c", '"quoted"', "user\r"])), max_size=20)


# ------------------------------------------------------------------------------------------
# parsers: accepted, or a clear error
# ------------------------------------------------------------------------------------------


def _clear(err: BaseException) -> None:
    """A clear error: one of ours, with a non-empty message and lines that hold no control characters."""
    assert isinstance(err, (InputError, InputErrors)), f"{type(err).__name__}: {err}"
    text = str(err)
    assert text.strip()
    for line in text.splitlines():
        assert line.isprintable(), repr(line)


@FAST
@given(lines=lines_of, suffix=st.sampled_from([".txt", ".csv"]), raw=st.binary(max_size=64))
def test_profile_parser_accepts_or_refuses_clearly(tmp_path_factory, lines, suffix, raw):
    tried("profiles")
    path = tmp_path_factory.mktemp("p") / f"profiles{suffix}"
    data = "\n".join(lines).encode("utf-8") + (raw if raw and raw[0] % 3 == 0 else b"")
    path.write_bytes(data)
    for skip in (False, True):
        try:
            plist = load_profiles(path, skip_invalid=skip)
        except (InputError, InputErrors) as err:
            _clear(err)
            continue
        for name in plist.usernames:
            assert re.fullmatch(r"[a-z0-9._]{1,30}", name), name
        assert len(set(plist.usernames)) == len(plist.usernames)


proxy_line = st.one_of(
    any_text,
    st.builds(lambda scheme, user, pw, host, port: f"{scheme}://{user}:{pw}@{host}:{port}",
              st.sampled_from(["http", "https", "socks5", "socks5h", "socks4", "ftp", "HTTP", ""]),
              any_text, any_text, st.sampled_from(["127.0.0.1", "::1", "[::1]", "proxy.example", "", "a b", "1.2.3"]),
              st.one_of(st.integers(-5, 70000).map(str), any_text)),
    st.builds(lambda parts: ":".join(parts), st.lists(any_text, min_size=1, max_size=5)),
)


@FAST
@given(line=proxy_line)
def test_proxy_line_parser_accepts_or_refuses_clearly(line):
    tried("proxy lines")
    try:
        spec = parse_proxy_line(line)
    except ValueError as err:
        assert str(err).strip() and "\n" not in str(err)
        return
    assert spec.url.split("://")[0] in ("http", "https", "socks5", "socks5h")
    assert "\n" not in spec.label and spec.label.isprintable()


@FAST
@given(lines=st.lists(proxy_line, max_size=8))
def test_proxy_file_parser_accepts_or_refuses_clearly(tmp_path_factory, lines):
    tried("proxy files")
    path = tmp_path_factory.mktemp("x") / "proxies.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    for skip in (False, True):
        try:
            specs = load_proxies(path, skip_invalid=skip)
        except (InputError, InputErrors) as err:
            _clear(err)
            continue
        assert all(s.label.isprintable() for s in specs)


# TOML documents built from the real sections and keys, with values of every TOML type
toml_key = st.one_of(st.sampled_from(["url", "timeout", "max_body_bytes", "headers", "not_found", "kind", "items",
                                      "max_attempts", "base_wait", "max_wait", "deadline", "max_claims", "rate",
                                      "burst", "dead_after", "workers", "lease_seconds", "grace_seconds",
                                      "health_url", "commit_every"]),
                     st.text(string.ascii_letters + "_", min_size=1, max_size=8))
toml_scalar = st.one_of(st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                        any_text, st.sampled_from(["http://127.0.0.1:1/s?u={username}", "${NO_SUCH_VAR_X}",
                                                   "sim", "http", "ftp://x/{username}"]))
toml_value = st.one_of(toml_scalar, st.lists(st.one_of(st.integers(0, 1000), any_text), max_size=4),
                       st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6), toml_scalar, max_size=3))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        if value and len({type(v) for v in value}) > 1:
            value = [str(v) for v in value]
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"


@FAST
@given(doc=st.dictionaries(st.sampled_from(["source", "retry", "proxies", "engine", "nonsense"]),
                           st.dictionaries(toml_key, toml_value, max_size=5), max_size=4),
       garbage=st.one_of(st.just(""), any_text))
def test_settings_parser_accepts_or_refuses_clearly(doc, garbage):
    tried("settings files")
    text = "".join(f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
                   for section, table in doc.items())
    for candidate in (text, text + garbage, garbage):
        try:
            parse_settings(candidate, source="c.toml")
        except InputError as err:
            _clear(err)
            assert str(err).startswith("c.toml"), str(err)


# the response parser: arbitrary JSON documents and arbitrary bytes
json_doc = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(["items", "pk", "taken_at", "expiring_at", "user", "x"]),
                                               children, max_size=4)),
    max_leaves=20)
story_like = st.fixed_dictionaries({"items": st.lists(st.fixed_dictionaries(
    {}, optional={"pk": json_doc, "taken_at": st.one_of(json_doc, st.integers(), st.text(max_size=30)),
                  "expiring_at": json_doc}), max_size=4)})
SOURCE = SourceSettings(url="http://127.0.0.1:9/v1/stories?username={username}", items="items",
                        expires_at="expiring_at", timeout=2.0, max_body_bytes=20_000)


def _check_parse(body: bytes) -> None:
    try:
        stories = parse_stories(body, SOURCE)
    except BadBody as err:
        assert str(err) and "\n" not in str(err)
        return
    for s in stories:
        assert isinstance(s.story_id, str) and s.story_id
        assert s.taken_at is not None and math.isfinite(s.taken_at)


@settings(max_examples=400, deadline=None)
@given(doc=st.one_of(json_doc, story_like))
def test_response_parser_on_any_json(doc):
    tried("response bodies (JSON)")
    _check_parse(json.dumps(doc).encode())


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), any_text.map(str.encode),
                      st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
                      st.integers(1, 3000).map(lambda n: b'{"items": ' + b"[" * n)))
def test_response_parser_on_any_bytes(body):
    tried("response bodies (bytes)")
    _check_parse(body)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.none(), any_text, st.floats().map(str), st.integers().map(str),
                       st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))))
def test_retry_after_parser(value):
    tried("Retry-After values")
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


class _Body:
    """The body the loopback source serves next (hypothesis drives it)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.headers: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def script(self, req, n):
        with self.lock:
            return answer(self.status, self.body, self.headers or [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def body_server():
    served = _Body()
    with RawServer(served.script) as srv:
        yield served, srv


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 418, 429, 500, 503, 599]),
       body=st.one_of(json_doc.map(lambda d: json.dumps(d).encode()), story_like.map(lambda d: json.dumps(d).encode()),
                      st.binary(max_size=200)),
       header=st.one_of(st.just(None), st.tuples(st.sampled_from(["Retry-After", "Content-Type", "Location",
                                                                 "Content-Encoding"]),
                                                 st.text(string.printable.strip("\r\n\x0b\x0c"), max_size=30))))
def test_source_over_a_real_socket_returns_an_outcome_or_a_typed_error(body_server, status, body, header):
    tried("answers over a socket")
    served, srv = body_server
    with served.lock:
        served.status, served.body = status, body
        served.headers = [("Content-Type", "application/json")] + ([header] if header else [])
    src = HttpSource(SourceSettings(url=srv.stories_url(), items="items", timeout=2.0, max_body_bytes=20_000))
    try:
        result = src.check("someone")
    except CheckError as err:
        assert err.kind in ("bad_response", "source_unavailable", "rate_limited", "auth_failed", "proxy_failed")
        assert err.message and "\n" not in err.message and err.message.isprintable()
        return
    finally:
        src.close()
    assert isinstance(result, Outcome)


# ------------------------------------------------------------------------------------------
# hostile text, end to end
# ------------------------------------------------------------------------------------------

FORGED = "2026-01-01 00:00:00 CRITICAL STORY_CHECK_SUCCESS forged line"
HOSTILE_NAMES = [
    "[bold red]markup[/bold red]",
    "[/]",
    "[/unclosed",
    "[link=http://evil.example]click[/link]",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07bell",
    f"newline\n{FORGED}",
    f"cr\r{FORGED}",
    "tab\tname",
    "\u202eevil.exe\u202c",
    "עברית-rtl",
    "emoji😀🚀",
    "zero\u200bwidth",
    "=HYPERLINK(\"http://evil\")",
    "+cmd|' /C calc'!A0",
    "back\\slash \"quote\" 'single'",
]
HOSTILE_ERROR = "[bold red]boom[/] \x1b[31mred\x1b[0m\nline2 " + FORGED + " \u202eevil 😀"


def _hostile_script(req, n):
    if (req.username or "").startswith("[bold red]markup"):
        return answer(503, HOSTILE_ERROR.encode())
    return json_answer({"items": [{"pk": "s1", "taken_at": 1_700_000_000}]})


def _svg_text(svg: str) -> str:
    """The text of a Textual SVG screenshot (tags dropped, entities and nbsp undone)."""
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def test_hostile_usernames_and_error_texts_are_stored_and_shown_literally(tmp_path):
    with RawServer(_hostile_script) as srv:
        src = SourceSettings(url=srv.stories_url(), items="items", timeout=2.0)
        settings_ = fast_settings(src, retry={"max_attempts": 1})
        with engine_run(tmp_path, settings_, HOSTILE_NAMES, name="[red]batch[/red]\x1b[2J\nname") as run:
            run.wait_done(20)
            # the server received each username exactly (URL-encoded on the way)
            assert sorted(r.username for r in srv.hits()) == sorted(HOSTILE_NAMES)
            for name in HOSTILE_NAMES:
                job = run.job(name)  # stored byte for byte
                expect_failed = name.startswith("[bold red]markup")
                assert job["state"] == ("failed" if expect_failed else "succeeded"), (name, job)
                recs = run.records(name)
                assert recs and all(r["username"] == name for r in recs)
                for r in recs:
                    assert "\n" not in r["message"] and "\r" not in r["message"]
            failed = run.job("[bold red]markup[/bold red]")
            msg = failed["error_message"]
            assert "[bold red]boom[/]" in msg and "😀" in msg, msg  # markup kept literally
            assert all(ch.isprintable() for ch in msg), repr(msg)  # no ESC, newline or RTL override
            assert msg.count("CRITICAL") == 1

            # the log file: every line is a record; the forged line never starts a line
            lines = check_log_file(run.log_file)
            assert not any(line.startswith(FORGED[:19]) for line in lines)
            assert all("\x1b" not in line and "\r" not in line for line in lines)
            assert any("[bold red]markup[/bold red]" in line for line in lines)

            # the console shows them literally (Text, never markup) and does not crash on them
            from storycheck_tui.ui.app import StorycheckApp
            from storycheck_tui import logs

            async def screen() -> str:
                app = StorycheckApp(run.runner, run.store, logs._setup.ring, refresh_every=None)
                async with app.run_test(size=(220, 60)) as pilot:
                    app.refresh_now()
                    await pilot.pause()
                    return app.export_screenshot()

            shown = _svg_text(asyncio.run(screen()))
            for literal in ("[bold red]markup[/bo", "[/unclosed", "[link=http://evil.ex", "^[[31mred^[[0m",
                            "newline\\n2026", "\\u202eevil.exe\\u202c", "emoji😀🚀", "[bold red]boom[/]"):
                assert literal in shown, f"{literal!r} not shown literally"
            assert "\x1b" not in shown and "\u202e" not in shown

        # exports: CSV and JSON Lines round-trip the usernames; spreadsheet formulas are defused
        db = str(run.db)
        for fmt in ("csv", "jsonl"):
            res = subprocess.run(storycheck_cmd("export", "1", "--format", fmt, "--db", db),
                                 env=subprocess_env(tmp_path / "logs"), capture_output=True, timeout=30)
            assert res.returncode == 0, res.stderr
            res.stdout = res.stdout.decode("utf-8")  # no newline translation: a "\r" must survive
            if fmt == "jsonl":
                assert "\x1b" not in res.stdout  # JSON escapes control characters; CSV keeps the data as is
            if fmt == "csv":
                got = [row["username"] for row in csv.DictReader(io.StringIO(res.stdout, newline=""))]
                assert "'=HYPERLINK(\"http://evil\")" in got and "'+cmd|' /C calc'!A0" in got
                got = [g[1:] if g.startswith("'") else g for g in got]
            else:
                got = [json.loads(line)["username"] for line in res.stdout.splitlines()]
            assert sorted(got) == sorted(HOSTILE_NAMES), fmt

        # CLI listings: one line per record, no terminal escapes, markup as text
        for args in (["logs", "--limit", "0"], ["batches"], ["logs", "--json", "--limit", "0"]):
            res = subprocess.run(storycheck_cmd(*args, "--db", db), env=subprocess_env(tmp_path / "logs"),
                                 capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, res.stderr
            assert "\x1b" not in res.stdout and "\r" not in res.stdout, args
            for line in res.stdout.splitlines():
                assert not line.startswith(FORGED[:19]), (args, line)
            if args[0] == "logs" and "--json" not in args:
                assert "[bold red]markup[/bold red]" in res.stdout
