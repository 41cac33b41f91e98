"""Settings from TOML: a valid file round-trips; every bad one is an InputError that names
the file, the line and the reason."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from storycheck_tui.config import (
    EngineSettings, ProxySettings, RetrySettings, Settings, SourceSettings, load_settings, parse_settings,
)
from storycheck_tui.errors import InputError
from storycheck_tui.masking import scrub


def to_toml(settings: Settings) -> str:
    """A TOML text for ``settings`` (every field of every section)."""
    out = []
    for name in ("source", "retry", "proxies", "engine"):
        out.append(f"[{name}]")
        for f in dataclasses.fields(getattr(settings, name)):
            value = getattr(getattr(settings, name), f.name)
            if value is None:  # TOML has no null: an unset optional key is left out
                continue
            if isinstance(value, dict):
                text = "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
            elif isinstance(value, tuple):
                text = json.dumps(list(value))
            else:
                text = json.dumps(value)  # strings, numbers and booleans are valid TOML this way
            out.append(f"{f.name} = {text}")
        out.append("")
    return "\n".join(out)


def test_valid_config_round_trips(tmp_path):
    original = Settings(
        source=SourceSettings(kind="http", url="https://api.example.com/v1/{username}/stories",
                              headers={"x-client": "storycheck", "accept-language": "en"}, items="data.items",
                              story_id="id", taken_at="ts", expires_at="exp", media_type="kind",
                              not_found=(404, 410), private=(403,), rate_limited=(429, 420), auth_failed=(401,),
                              health_url="https://api.example.com/health", timeout=7.5, max_body_bytes=2048),
        retry=RetrySettings(max_attempts=6, base_wait=0.25, max_wait=12.0, deadline=90.0, max_claims=5),
        proxies=ProxySettings(rate=2.5, burst=4.0, cooldown=3.0, max_cooldown=120.0, dead_after=7,
                              validate_every=15.0),
        engine=EngineSettings(workers=8, lease_seconds=45.0, claim_size=64, commit_every=0.5, heartbeat_every=3.0,
                              grace_seconds=4.0),
    )
    path = tmp_path / "storycheck.toml"
    path.write_text(to_toml(original), encoding="utf-8")
    loaded = load_settings(path)
    assert loaded == dataclasses.replace(original, path=str(path))
    # and again: what was read writes the same file
    assert to_toml(loaded) == to_toml(original)


def test_partial_config_keeps_the_defaults_and_types(tmp_path):
    s = parse_settings('[engine]\nworkers = 3\n\n[retry]\nbase_wait = 1\n', source="c.toml")
    assert s.engine.workers == 3 and s.engine.lease_seconds == EngineSettings().lease_seconds
    assert s.retry.base_wait == 1.0 and isinstance(s.retry.base_wait, float)
    assert s.source == SourceSettings() and s.proxies == ProxySettings()
    assert load_settings(None) == Settings()


def test_env_reference_is_expanded_and_registered_as_a_secret(monkeypatch):
    monkeypatch.setenv("STORY_API_KEY", "k3y-from-env-4411")
    s = parse_settings('[source]\nurl = "http://h/{username}"\nheaders = { "x-access-key" = "${STORY_API_KEY}" }\n')
    assert s.source.headers == {"x-access-key": "k3y-from-env-4411"}
    assert scrub("sent k3y-from-env-4411 upstream") == "sent *** upstream"


BAD = [
    # (file text, line, the reason the message starts with)
    ('[retry]\nmax_attempts = 3\nmax_atempts = 4\n', 3, "[retry] unknown key 'max_atempts'"),
    ('[engine]\nworkers = 2\n\n[enigne]\nworkers = 3\n', 4, "unknown section [enigne]"),
    ('[retry] # how often\nmax_attempts = "four"\n', 2, "[retry] max_attempts: expected a number, got 'four'"),
    ('[engine]\nworkers = 2.5\n', 2, "[engine] workers: expected a whole number, got 2.5"),
    ('[engine]\n\nworkers = true\n', 3, "[engine] workers: expected a number, got True"),
    ('[proxies]\ncooldown = -1\n', 2, "[proxies] cooldown: must not be negative"),
    ('[engine]\nworkers = 0\n', 2, "[engine] workers: must be greater than 0"),
    ('[source]\nnot_found = [404, "410"]\n', 2, "[source] not_found: expected a list of HTTP status codes"),
    ('[source]\nurl = 5\n', 2, "[source] url: expected a string, got 5"),
    ('[source]\nkind = "ftp"\n', 2, '[source] kind: expected "http" or "sim"'),
    ('[source]\nurl = "http://api/stories"\n', 2, "[source] url: must contain {username}"),
    ('[source]\nurl = "ftp://api/{username}"\n', 2, "[source] url: must start with http:// or https://"),
    ('[retry]\nbase_wait = 10.0\nmax_wait = 1.0\n', 2, "[retry] base_wait must not exceed max_wait"),
    ('[source]\nurl = "http://h/{username}"\n\n[source.headers]\nx-key = 5\n', 4, "[source] headers: expected a table"),
    ('[source]\n"timeout" = "soon"\n', 2, "[source] timeout: expected a number"),
    ('retry.max_attempts = "x"\n', 1, "[retry] max_attempts: expected a number"),
    ('\nworkers = 4\n', 2, "unknown key 'workers' outside any section"),
    ('[retry]\nmax_attempts = 3\n[retry]\nmax_wait = 2\n', 3, "not valid TOML: Cannot declare ('retry',) twice"),
    ('[retry]\nmax_wait = = 3\n', 2, "not valid TOML: Invalid value"),
    ('[engine\nworkers = 3\n', 1, "not valid TOML"),
]


@pytest.mark.parametrize("text, line, reason", BAD, ids=[r for _, _, r in BAD])
def test_bad_config_names_file_line_and_reason(tmp_path, text, line, reason):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_settings(path)
    err = info.value
    assert (err.source, err.line) == (str(path), line), str(err)
    assert str(err).startswith(f"{path}:{line}: {reason}"), str(err)
    assert "\n" not in str(err)


def test_missing_env_var_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "c.toml"
    path.write_text('[source]\nkind = "http"\n\nheaders = { "x-access-key" = "${NOT_SET_ANYWHERE}" }\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}:4: environment variable NOT_SET_ANYWHERE is not set"


def test_unreadable_config_files(tmp_path):
    with pytest.raises(InputError) as info:
        load_settings(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: config file not found"
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b'[source]\nurl = "http://h/\xe9/{username}"\n')
    with pytest.raises(InputError) as info:
        load_settings(latin)
    assert str(info.value).startswith(f"{latin}: cannot read config file")
    with pytest.raises(InputError) as info:
        load_settings(Path(tmp_path))
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file")


# --- hostile values (issue 15, items 3 and 9) -----------------------------------------------

@pytest.mark.parametrize("value, reason", [
    ("K3y-S3cret-0042\r", "holds a control character (\\r)"),  # a key file with Windows line endings
    ("K3y-S3cret-0042\n", "holds a control character (\\n)"),
    ("K3y\x1bS3cret-0042", "holds a control character (\\x1b)"),
    ("K3y-S3cret-0042\x85", "holds a control character (\\x85)"),
    (" K3y-S3cret-0042", "starts or ends with whitespace"),
    ("K3y-S3cret-0042\t", "holds a control character (\\t)"),
    ("K3y-S3cret-0042 ", "starts or ends with whitespace"),
])
def test_an_env_value_with_a_control_character_or_whitespace_is_refused(tmp_path, monkeypatch, value, reason):
    """The key would fail every request (``Illegal header value``) and its escaped form would
    leak through the error message: refuse it when the config loads, naming the setting and the
    variable, never the value."""
    monkeypatch.setenv("STORY_API_KEY", value)
    path = tmp_path / "c.toml"
    path.write_text('[source]\nkind = "sim"\nurl = "http://127.0.0.1:9"\n'
                    'headers = { "x-client" = "storycheck", "x-access-key" = "${STORY_API_KEY}" }\n')
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert str(info.value) == (f"{path}:4: [source] headers.x-access-key: environment variable STORY_API_KEY "
                               f"{reason}")
    assert "S3cret" not in str(info.value)


def test_a_literal_header_with_a_control_character_or_a_bad_name_is_refused():
    with pytest.raises(InputError, match=r"^c.toml:2: \[source\] headers.x-a: holds a control character \(\\r\)$"):
        parse_settings('[source]\nheaders = { "x-a" = "b\\r\\nInjected: 1" }\n', source="c.toml")
    with pytest.raises(InputError, match=r"^c.toml:2: \[source\] headers: 'x a' is not a header name"):
        parse_settings('[source]\nheaders = { "x a" = "b" }\n', source="c.toml")
    # httpx encodes header values as ASCII: such a key failed every request with UnicodeEncodeError
    with pytest.raises(InputError) as info:
        parse_settings('[source]\nheaders = { "x-a" = "k\u00e9y-S3cret" }\n', source="c.toml")
    assert str(info.value) == "c.toml:2: [source] headers.x-a: holds a character outside ASCII, which a header cannot carry"
    # a plain value with an inner space is fine
    assert parse_settings('[source]\nheaders = { "accept-language" = "en, de" }\n').source.headers == {
        "accept-language": "en, de"}


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("section, key", [("source", "timeout"), ("retry", "deadline"), ("retry", "base_wait"),
                                          ("proxies", "rate"), ("engine", "lease_seconds")])
def test_nan_and_inf_are_refused_with_the_line(section, key, text):
    body = f"[{section}]\n# a comment\n{key} = {text}\n"
    with pytest.raises(InputError) as info:
        parse_settings(body, source="c.toml")
    assert str(info.value).startswith(f"c.toml:3: [{section}] {key}: ")
    assert "finite" in str(info.value) or "greater than 0" in str(info.value) or "negative" in str(info.value)


def test_a_multi_line_string_in_a_json_body_is_kept(monkeypatch):
    """Only header values are refused for a line break: a request body may hold one (a GraphQL
    query), and a ${VAR} inside it is still checked."""
    text = ('[source]\nurl = "https://api.example/graphql"\nmethod = "POST"\n'
            'json = { query = """query {\n  user(name: "{username}") { stories }\n}""", key = "${STORY_API_KEY}" }\n')
    monkeypatch.setenv("STORY_API_KEY", "K3y-0042")
    body = parse_settings(text, source="c.toml").source.json
    assert body["query"].count("\n") == 2 and body["key"] == "K3y-0042"
    monkeypatch.setenv("STORY_API_KEY", "K3y-0042\r")
    with pytest.raises(InputError, match=r"^c.toml:4: \[source\] json: environment variable STORY_API_KEY holds a "
                                         r"control character \(\\r\)$"):
        parse_settings(text, source="c.toml")
