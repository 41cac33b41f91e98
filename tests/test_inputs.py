"""The parsers of the operator's files: profiles (txt/csv) and proxies."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storycheck_tui import masking
from storycheck_tui.errors import InputError, InputErrors
from storycheck_tui.inputs.profiles import MAX_LISTED, ProfileList, load_profiles, normalise_username
from storycheck_tui.inputs.proxies import ProxySpec, load_proxies, parse_proxy_line

FEW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


# --------------------------------------------------------------------------- usernames


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("alice", "alice"),
        ("  Alice  ", "alice"),
        ("@Bob.Smith_1", "bob.smith_1"),
        ("https://www.instagram.com/Carol/", "carol"),
        ("http://instagram.com/carol", "carol"),
        ("instagram.com/dave?igshid=abc123", "dave"),
        ("www.instagram.com/dave/?hl=en", "dave"),
        ("https://x.com/erin", "erin"),
        ("https://twitter.com/erin/status/1", "erin"),
        ("https://www.tiktok.com/@frank", "frank"),
        ("https://www.instagram.com/stories/grace/3141592653/", "grace"),
        ("@https://instagram.com/heidi", "heidi"),
        ("a" * 30, "a" * 30),
        ("_._", "_._"),
        ("instagram.com", "instagram.com"),  # no '/': a (legal) username, not a URL
    ],
)
def test_normalise_accepts(raw, expected):
    assert normalise_username(raw) == expected


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("a$b", "invalid character '$' in username \"a$b\""),
        ("a" * 31, "username longer than 30 characters (31)"),
        ("https://www.instagram.com/", 'URL has no username: "https://www.instagram.com/"'),
        ("", "empty username"),
        ("@", "empty username"),
        ("@@name", "invalid character '@' in username \"@name\""),
        ("john smith", "invalid character ' ' in username \"john smith\""),
        ("@ name", "invalid character ' ' in username \" name\""),
        ("a/b", "invalid character '/' in username \"a/b\""),
        ("josé", "invalid character 'é' in username \"josé\""),
        ("a\x00b", "invalid character '\\x00' in username \"a\\x00b\""),
        ("a\x1b[31mb", "invalid character '\\x1b' in username \"a\\x1b[31mb\""),
        ("bob\u200b", "invalid character '\\u200b' in username \"bob\\u200b\""),
        ("https://www.instagram.com/p/Cx1/", 'URL is not a profile link (/p/…): "https://www.instagram.com/p/Cx1/"'),
        ("ftp://x.com/a", 'not a profile URL (scheme must be http or https): "ftp://x.com/a"'),
        ("https://[oops/a", 'invalid URL "https://[oops/a"'),
        # sent as /u/.. a server that resolves dot segments would answer for another resource
        ("..", 'username ".." is only dots: no profile has that name'),
        ("@.", 'username "." is only dots: no profile has that name'),
        ("https://www.instagram.com/.../", 'username "..." is only dots: no profile has that name'),
    ],
)
def test_normalise_rejects_with_precise_reason(raw, reason):
    with pytest.raises(ValueError) as info:
        normalise_username(raw)
    assert str(info.value) == reason


def test_reason_never_holds_raw_control_characters():
    for ch in "\x00\x07\x1b\x7f\x85\u2028\u202e":
        with pytest.raises(ValueError) as info:
            normalise_username(f"ab{ch}cd")
        assert str(info.value).isprintable(), repr(str(info.value))


def test_long_bad_value_is_cut_in_the_reason():
    with pytest.raises(ValueError) as info:
        normalise_username("$" * 10_000)
    assert len(str(info.value)) < 120


@FEW
@given(st.text())
def test_normalise_returns_or_raises_valueerror(raw):
    try:
        name = normalise_username(raw)
    except ValueError as exc:
        assert str(exc).isprintable()
    else:
        assert 1 <= len(name) <= 30
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._")


# --------------------------------------------------------------------------- profile files


def test_txt_with_comments_blanks_at_urls_and_duplicates(tmp_path):
    path = write(
        tmp_path,
        "profiles.txt",
        "# my list\n"
        "\n"
        "alice\n"
        "   \n"
        "@Bob   # the boss\n"
        "https://www.instagram.com/carol/\n"
        "instagram.com/ALICE?igshid=xyz\n"
        "\t# indented comment\n"
        "dave\r\n"
        "bob\n",
    )
    result = load_profiles(path)
    assert isinstance(result, ProfileList)
    assert result.usernames == ["alice", "bob", "carol", "dave"]
    assert result.duplicates == 2
    assert result.invalid == []
    assert result.source == str(path)


def test_source_is_the_path_as_given(tmp_path, monkeypatch):
    write(tmp_path, "p.txt", "alice\n")
    monkeypatch.chdir(tmp_path)
    assert load_profiles("p.txt").source == "p.txt"


def test_utf8_bom_and_old_mac_line_endings(tmp_path):
    path = write(tmp_path, "p.txt", "\ufeffalice\rbob\r\ncarol")
    assert load_profiles(path).usernames == ["alice", "bob", "carol"]


def test_csv_with_username_column(tmp_path):
    path = write(
        tmp_path,
        "p.csv",
        "\ufeffid,UserName,notes\r\n"
        '1,alice,"likes, commas"\r\n'
        '2,@Bob,"two\nlines"\r\n'
        ",,\r\n"
        "3,https://instagram.com/carol/,\r\n"
        "4,alice,dup\r\n",
    )
    result = load_profiles(path)
    assert result.usernames == ["alice", "bob", "carol"]
    assert result.duplicates == 1


def test_csv_without_header_uses_first_column(tmp_path):
    path = write(tmp_path, "p.csv", "alice,10\nbob,20\nname,30\n")
    assert load_profiles(path).usernames == ["alice", "bob", "name"]


def test_csv_semicolon_separated(tmp_path):
    path = write(tmp_path, "p.csv", "username;followers\nalice;10\nbob;20\n")
    assert load_profiles(path).usernames == ["alice", "bob"]


def test_csv_errors_name_the_line_of_the_record(tmp_path):
    path = write(tmp_path, "p.csv", 'username,notes\nalice,"multi\nline"\nb$d,x\n,only notes\n')
    with pytest.raises(InputErrors) as info:
        load_profiles(path)
    assert str(info.value).splitlines() == [
        f"{path}:4: invalid character '$' in username \"b$d\"",
        f"{path}:5: no username in this row",
    ]


def test_invalid_lines_are_all_reported_and_nothing_is_imported(tmp_path):
    path = write(
        tmp_path,
        "p.txt",
        "alice\na$b\nbob\n" + "x" * 31 + "\nhttps://www.instagram.com/\nevil\x1b[2Jname\n",
    )
    with pytest.raises(InputErrors) as info:
        load_profiles(path)
    err = info.value
    assert [e.line for e in err.errors] == [2, 4, 5, 6]
    assert all(e.source == str(path) for e in err.errors)
    assert str(err).splitlines() == [
        f"{path}:2: invalid character '$' in username \"a$b\"",
        f"{path}:4: username longer than 30 characters (31)",
        f'{path}:5: URL has no username: "https://www.instagram.com/"',
        f"{path}:6: invalid character '\\x1b' in username \"evil\\x1b[2Jname\"",
    ]
    assert "\x1b" not in str(err)


def test_skip_invalid_keeps_the_good_lines_and_lists_the_bad(tmp_path):
    path = write(tmp_path, "p.txt", "alice\na$b\nbob\n\n!!\n")
    result = load_profiles(path, skip_invalid=True)
    assert result.usernames == ["alice", "bob"]
    assert [(e.line, e.source) for e in result.invalid] == [(2, str(path)), (5, str(path))]
    assert all(isinstance(e, InputError) for e in result.invalid)


def test_skip_invalid_with_nothing_valid_is_an_error(tmp_path):
    path = write(tmp_path, "p.txt", "a$b\n!!\n")
    with pytest.raises(InputError) as info:
        load_profiles(path, skip_invalid=True)
    assert str(info.value) == f"{path}: no valid usernames (2 invalid lines skipped)"


def test_not_utf8_names_the_line_of_the_first_bad_byte(tmp_path):
    path = write(tmp_path, "p.txt", b"alice\r\nbob\rcarol\n\xe9ric\nzo\xff\n")
    with pytest.raises(InputError) as info:
        load_profiles(path)
    err = info.value
    assert (err.source, err.line) == (str(path), 4)
    assert str(err) == f"{path}:4: not valid UTF-8 (byte 0xe9); save the file as UTF-8"


def test_not_utf8_far_into_a_big_file(tmp_path):
    lines = [f"user{i}".encode() for i in range(50_000)]
    lines[41_234] = b"caf\xe9"
    path = write(tmp_path, "p.txt", b"\n".join(lines))
    with pytest.raises(InputError) as info:
        load_profiles(path)
    assert info.value.line == 41_235


def test_utf16_file_says_so(tmp_path):
    path = write(tmp_path, "p.txt", "alice\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        load_profiles(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "# only\n# comments\n", "\ufeff"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "p.txt", content)
    with pytest.raises(InputError) as info:
        load_profiles(path)
    assert str(info.value).startswith(f"{path}: no usernames found")


def test_empty_csv_with_only_a_header(tmp_path):
    path = write(tmp_path, "p.csv", "username\n")
    with pytest.raises(InputError, match="no usernames found"):
        load_profiles(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(InputError) as info:
        load_profiles(path)
    assert str(info.value) == f"{path}: file not found"


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_profiles(tmp_path)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "p.txt", "alice\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_profiles(path)


def test_hundred_thousand_lines(tmp_path):
    names = [f"user_{i}" for i in range(100_000)]
    path = write(tmp_path, "big.txt", "\n".join(names) + "\n")
    result = load_profiles(path)
    assert len(result.usernames) == 100_000
    assert result.usernames[:2] == ["user_0", "user_1"]


def test_bad_lines_past_the_first_hundred_are_counted_not_kept(tmp_path):
    """Every bad line used to be kept (a million: 819 MB; these 200,000: 160 MB). Now the first
    MAX_LISTED are listed and one more line gives the number of the others; memory does not
    grow with them."""
    import tracemalloc

    path = write(tmp_path, "bad.txt", "bad name\n" * 200_000)
    tracemalloc.start()
    try:
        with pytest.raises(InputErrors) as info:
            load_profiles(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    errors = info.value.errors
    assert len(errors) == MAX_LISTED + 1 == 101
    assert [e.line for e in errors[:3]] == [1, 2, 3] and errors[99].line == 100
    assert str(errors[-1]) == f"{path}: 199,900 more invalid lines not listed (200,000 in all)"
    assert peak < 10_000_000, peak
    # skipping them: the same first hundred, and the count of all of them
    write(tmp_path, "mixed.txt", "alice\n" + "bad name\n" * 250 + "bob\n")
    plist = load_profiles(tmp_path / "mixed.txt", skip_invalid=True)
    assert len(plist.invalid) == 101 and plist.invalid_count == 250
    assert plist.usernames == ["alice", "bob"]


@FEW
@given(lines=st.lists(st.text(), max_size=20), ext=st.sampled_from([".txt", ".csv"]), skip=st.booleans())
def test_any_text_file_ends_in_a_list_or_an_input_error(tmp_path, lines, ext, skip):
    path = write(tmp_path, "fuzz" + ext, "\n".join(lines))
    try:
        result = load_profiles(path, skip_invalid=skip)
    except InputErrors as exc:
        assert exc.errors and all(e.line for e in exc.errors)
        assert all(str(e).isprintable() for e in exc.errors)
    except InputError:
        pass
    else:
        assert result.usernames
        assert len(set(result.usernames)) == len(result.usernames)


@FEW
@given(data=st.binary(max_size=200))
def test_any_bytes_end_in_a_list_or_an_input_error(tmp_path, data):
    path = write(tmp_path, "fuzz.txt", data)
    try:
        load_profiles(path)
    except (InputError, InputErrors):
        pass


# --------------------------------------------------------------------------- proxies


@pytest.mark.parametrize(
    "line, url, label",
    [
        ("1.2.3.4:8080", "http://1.2.3.4:8080", "http://1.2.3.4:8080"),
        ("Proxy.Example.com:3128", "http://proxy.example.com:3128", "http://proxy.example.com:3128"),
        ("http://1.2.3.4:8080", "http://1.2.3.4:8080", "http://1.2.3.4:8080"),
        ("https://proxy.example:443", "https://proxy.example:443", "https://proxy.example:443"),
        ("socks5://10.0.0.1:1080", "socks5://10.0.0.1:1080", "socks5://10.0.0.1:1080"),
        ("SOCKS5H://bob:pw12@h.example:1080/", "socks5h://bob:pw12@h.example:1080", "socks5h://bob@h.example:1080"),
        ("http://bob:p%40ss@h:8000", "http://bob:p%40ss@h:8000", "http://bob@h:8000"),
        ("h.example:8000:bob:s3cret", "http://bob:s3cret@h.example:8000", "http://bob@h.example:8000"),
        ("h.example:8000:bob:p@ss/w:rd", "http://bob:p%40ss%2Fw%3Ard@h.example:8000", "http://bob@h.example:8000"),
        ("h.example:8000:b b:x://y", "http://b%20b:x%3A%2F%2Fy@h.example:8000", "http://b%20b@h.example:8000"),
        ("bob:pw12@h.example:8000", "http://bob:pw12@h.example:8000", "http://bob@h.example:8000"),
        ("[2001:DB8::1]:8080", "http://[2001:db8::1]:8080", "http://[2001:db8::1]:8080"),
        ("[::1]:8080:bob:pw12", "http://bob:pw12@[::1]:8080", "http://bob@[::1]:8080"),
        ("socks5://bob:pw12@[::1]:1080", "socks5://bob:pw12@[::1]:1080", "socks5://bob@[::1]:1080"),
        ("h:1", "http://h:1", "http://h:1"),
        ("h:65535", "http://h:65535", "http://h:65535"),
        ("http://bob@h:1", "http://bob@h:1", "http://bob@h:1"),
    ],
)
def test_proxy_forms(line, url, label):
    spec = parse_proxy_line(line)
    assert spec == ProxySpec(url=url, label=label)


@pytest.mark.parametrize(
    "line, reason",
    [
        ("socks4://h:1080", "unsupported proxy scheme 'socks4' (use http, https, socks5 or socks5h)"),
        ("ftp://h:21", "unsupported proxy scheme 'ftp' (use http, https, socks5 or socks5h)"),
        ("h:abc", "invalid port 'abc'"),
        ("h:0", "port 0 out of range (1-65535)"),
        ("h:65536", "port 65536 out of range (1-65535)"),
        ("h", "missing port: expected host:port, host:port:user:pass or a URL"),
        ("h:1:bob", "expected host:port, host:port:user:pass or a URL"),
        ("http://h", "missing port: a proxy URL must end in :port"),
        ("http://h:1/path", "a proxy URL must not have a path, query or fragment: it ends with :port"),
        ("::1:8080", "an IPv6 address must be in brackets: [addr]:port"),
        ("[zz]:1", "invalid IPv6 address '[zz]'"),
        ("300.1.1.1:80", "invalid IPv4 address '300.1.1.1'"),
        ("bad host:80", "invalid host name 'bad host'"),
        ("-bad.example:80", "invalid host name '-bad.example'"),
        ("", "empty proxy line"),
        ("h\x1b[2J:1", "invalid host name 'h\\x1b[2J'"),
    ],
)
def test_proxy_rejects_with_precise_reason(line, reason):
    with pytest.raises(ValueError) as info:
        parse_proxy_line(line)
    assert str(info.value) == reason


SECRET = "Tr0ub4dor&3xyz"


@pytest.mark.parametrize(
    "line",
    [
        f"http://bob:{SECRET}@h:abc",
        f"http://bob:{SECRET}@h:99999",
        f"http://bob:{SECRET}@h",
        f"http://bob:{SECRET}@h:1/path",
        f"http://bob:{SECRET}@bad host:1",
        f"http://bob:{SECRET}@[zz]:1",
        f"socks4://bob:{SECRET}@h:1",
        f"ftp://bob:{SECRET}@h:1",
        f"h:abc:bob:{SECRET}",
        f"h:1:bob:{SECRET}:x:y@z://w",  # fine, really: checked below that it parses
        f"bad host:1:bob:{SECRET}",
        f"h:1::{SECRET}",
        f"bob:{SECRET}:1.2.3.4:8080",  # user:pass:host:port, swapped
        f"1.2.3.4:8080@bob:{SECRET}",  # host:port@user:pass, swapped
        f"{SECRET}@h",
        f"bob:{SECRET}@",
        f"://bob:{SECRET}@h:1",
        f"bob:{SECRET}://h:1",
        f"[::1]:x:bob:{SECRET}",
        f"[::1]:1:bob:{SECRET}\x00",
    ],
)
def test_bad_proxy_lines_never_echo_the_password(line):
    try:
        spec = parse_proxy_line(line)
    except ValueError as exc:
        for secret in (SECRET, quote(SECRET, safe=""), "Tr0ub4dor"):
            assert secret not in str(exc) and secret not in repr(exc)
    else:
        assert SECRET not in spec.label and SECRET not in repr(spec) and SECRET not in str(spec)


@pytest.mark.parametrize(
    "line", [f"http://bob:{SECRET}@h:abc", f"h:abc:bob:{SECRET}", f"bob:{SECRET}:1.2.3.4:8080", f"h:1:bob:{SECRET}"]
)
def test_password_is_registered_even_when_the_line_is_bad(line):
    try:
        parse_proxy_line(line)
    except ValueError:
        pass
    assert masking.scrub(f"boom {SECRET}") == "boom ***"


def test_bad_proxy_file_never_echoes_passwords(tmp_path):
    path = write(
        tmp_path,
        "proxies.txt",
        f"# pool\nh:1:bob:{SECRET}\nbob:{SECRET}:1.2.3.4:8080\nhttp://bob:{SECRET}@h:port\n{SECRET}:1\n",
    )
    with pytest.raises(InputErrors) as info:
        load_proxies(path)
    text = str(info.value)
    assert SECRET not in text
    assert [e.line for e in info.value.errors] == [3, 4, 5]
    # line 5 has no credentials of its own, but the password is known from line 2: scrubbed
    assert text.splitlines()[2] == f"{path}:5: invalid host name '***'"


def test_passwords_are_registered_for_scrubbing():
    parse_proxy_line("h:1:bob:p@ss w0rd")
    parse_proxy_line("http://amy:sec%2Fret99@h:2")
    assert masking.scrub("auth p@ss w0rd / p%40ss%20w0rd failed") == "auth *** / *** failed"
    assert masking.scrub("sec/ret99 and sec%2Fret99") == "*** and ***"


def test_proxy_spec_repr_hides_the_url():
    spec = parse_proxy_line(f"h:1:bob:{SECRET}")
    assert quote(SECRET, safe="") in spec.url  # the engine needs it
    assert SECRET not in repr(spec) and SECRET not in str(spec) and SECRET not in f"{spec}"
    assert str(spec) == "http://bob@h:1"


@FEW
@given(st.text())
def test_parse_proxy_line_returns_or_raises_valueerror(text):
    try:
        spec = parse_proxy_line(text)
    except ValueError as exc:
        assert str(exc).isprintable()
    else:
        assert spec.url.split("://")[0] in ("http", "https", "socks5", "socks5h")
        assert parse_proxy_line(spec.url) == spec  # the canonical URL reads back the same


@FEW
@given(
    host=st.from_regex(r"[a-z](?:[a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True),
    port=st.integers(1, 65535),
    user=st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x85\u2028\u2029"), min_size=1).filter(
        lambda u: ":" not in u and u.strip() == u
    ),
    password=st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x85\u2028\u2029"), min_size=4).filter(
        lambda p: p.strip() == p and " #" not in p and "\t#" not in p
    ),
)
def test_colon_form_round_trips_any_credentials(host, port, user, password):
    spec = parse_proxy_line(f"{host}:{port}:{user}:{password}")
    parts = urlsplit(spec.url)
    assert (parts.hostname, parts.port) == (host, port)
    assert (unquote(parts.username), unquote(parts.password)) == (user, password)
    # the label shows no secret: a password found in it is a piece of what it shows anyway
    # (the scheme, the user, the host: password "http" is in every http:// label)
    assert password not in spec.label or password in f"http://{user}@{host}:{port}"


def test_load_proxies_all_forms_comments_and_duplicates(tmp_path):
    path = write(
        tmp_path,
        "proxies.txt",
        "\ufeff# my pool\n"
        "\n"
        "1.2.3.4:8080\n"
        "http://1.2.3.4:8080   # same as above\n"
        "h.example:8000:bob:s3cret\n"
        "http://bob:s3cret@H.EXAMPLE:8000/\n"
        "socks5h://amy:pw99@[::1]:1080\n"
        "https://secure.example:443\n",
    )
    specs = load_proxies(path)
    assert [s.label for s in specs] == [
        "http://1.2.3.4:8080",
        "http://bob@h.example:8000",
        "socks5h://amy@[::1]:1080",
        "https://secure.example:443",
    ]


def test_load_proxies_reports_every_bad_line(tmp_path):
    path = write(tmp_path, "proxies.txt", "h:1\nsocks4://h:2\nh:1\nh:x\nh:2:u\n")
    with pytest.raises(InputErrors) as info:
        load_proxies(path)
    assert str(info.value).splitlines() == [
        f"{path}:2: unsupported proxy scheme 'socks4' (use http, https, socks5 or socks5h)",
        f"{path}:4: invalid port 'x'",
        f"{path}:5: expected host:port, host:port:user:pass or a URL",
    ]


def test_load_proxies_skip_invalid(tmp_path):
    path = write(tmp_path, "proxies.txt", "h:1\nsocks4://h:2\nh:3\n")
    assert [s.url for s in load_proxies(path, skip_invalid=True)] == ["http://h:1", "http://h:3"]


def test_load_proxies_file_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_proxies(tmp_path / "none.txt")
    with pytest.raises(InputError, match="no proxies found"):
        load_proxies(write(tmp_path, "empty.txt", "# nothing\n\n"))
    with pytest.raises(InputError) as info:
        load_proxies(write(tmp_path, "latin1.txt", b"h:1\nh\xe9:2\n"))
    assert info.value.line == 2
    with pytest.raises(InputError, match=r"no valid proxies \(1 invalid line skipped\)"):
        load_proxies(write(tmp_path, "bad.txt", "h:x\n"), skip_invalid=True)


def test_many_distinct_passwords_load_fast(tmp_path):
    """Registering each password used to recompile the scrub pattern: quadratic."""
    lines = [f"10.0.{i // 256}.{i % 256}:8080:user{i}:pass-{i:08d}" for i in range(5_000)]
    path = write(tmp_path, "proxies.txt", "\n".join(lines))
    assert len(load_proxies(path)) == 5_000


@FEW
@given(lines=st.lists(st.text(), max_size=10), skip=st.booleans())
def test_any_proxy_file_ends_in_a_list_or_an_input_error(tmp_path, lines, skip):
    path = write(tmp_path, "fuzz.txt", "\n".join(lines))
    try:
        specs = load_proxies(path, skip_invalid=skip)
    except (InputError, InputErrors):
        pass
    else:
        assert specs and len({s.url for s in specs}) == len(specs)
