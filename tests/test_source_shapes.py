"""Real story API shapes: request templates, response rules, presets and `storycheck source test`.

Every shape class that vendors and public clients document (tests/shapes.py) is served on
127.0.0.1 from fixtures taken from their published examples, and read with the config that
the README gives as its recipe. Each fixture must end in its documented outcome; a definite
answer costs exactly one request; the engine keeps the seed-defect guarantees for every shape
(a success is logged only for a parsed answer; a failure names user, status and the rule);
no key from the environment ever shows.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from helpers import Engine, cli, fast_settings, log_text, logsetup  # noqa: F401  (fixtures)
from shapes import ANSWERS, SHAPES, Answer, Shape, ShapeServer
from storycheck_tui import logs
from storycheck_tui.config import SourceSettings, parse_settings
from storycheck_tui.errors import CheckError, InputError
from storycheck_tui.sources.base import DIRECT
from storycheck_tui.sources.http import HttpSource
from storycheck_tui.sources.http.decide import by_items, by_rules
from storycheck_tui.sources.http.parsing import BadBody, items_at, load_json
from storycheck_tui.sources.rules import MISSING, RULE_OUTCOMES, parse_rules


@pytest.fixture(params=sorted(SHAPES))
def shape(request, monkeypatch) -> Shape:
    s = SHAPES[request.param]
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    return s


@pytest.fixture
def served(shape):
    with ShapeServer(shape) as srv:
        yield srv


def source_of(shape: Shape, srv: ShapeServer, **extra) -> SourceSettings:
    s = parse_settings(shape.config_for(srv.base), source=f"{shape.name}.toml").source
    return s.__class__(**{**s.__dict__, "timeout": 2.0, **extra})


def outcome_or_error(src: HttpSource, username: str) -> tuple[str, str, int]:
    """(kind, what decided it or the error message, HTTP status)."""
    try:
        o = src.check(username, DIRECT)
    except CheckError as err:
        return err.kind, err.message, err.status or 0
    return str(o.kind), o.decided_by, o.http_status


def test_every_fixture_of_every_shape_ends_in_its_documented_outcome(shape, served):
    with HttpSource(source_of(shape, served)) as src:
        for username, want in shape.expect.items():
            kind, said, status = outcome_or_error(src, username)
            assert kind == want.kind, (shape.name, username, kind, said)
            assert want.says in said, (shape.name, username, said)
            if kind in ANSWERS:
                assert served.count(username) == 1, f"{shape.name}/{username}: an answer must cost one request"
            if want.stories:
                assert src.check(username, DIRECT).story_count == want.stories
    secrets = list(shape.env.values())
    for req in served.requests:  # the keys travelled where the recipe puts them
        sent = json.dumps([req.path, req.query, req.headers, req.body])
        for value in secrets:
            assert value in sent or value.replace("%3A", ":") in sent, (shape.name, "key not sent")


def test_every_shape_keeps_the_seed_guarantees_through_the_engine(shape, served, tmp_path, logsetup):
    # auth_failed pauses the batch, rate limits and proxy blocks are retried on other routes:
    # those are checked above; here the engine reads the answers and the failures it reports
    users = [u for u, e in shape.expect.items() if e.kind in ANSWERS | {"bad_response", "source_unavailable"}]
    settings = fast_settings(source_of(shape, served), retry={"max_attempts": 2})
    with Engine(tmp_path, settings, users) as eng:
        eng.done()
        jobs = {j.username: j for j in eng.jobs()}
        succeeded = {u for u, j in jobs.items() if j.state == "succeeded"}
        assert succeeded == {u for u in users if shape.expect[u].kind in ANSWERS}
        for u in succeeded:
            assert jobs[u].outcome == shape.expect[u].kind and served.count(u) == 1, u
        per_job = Counter(r.job for r in eng.logs(logs.STORY_CHECK_SUCCESS))
        for u, j in jobs.items():
            assert per_job[j.id] == (1 if u in succeeded else 0), u
        for u in set(users) - succeeded:
            j = jobs[u]
            want = shape.expect[u]
            assert j.state == "failed" and j.error_kind == want.kind and want.says in j.error_message, (u, j.error_message)
            [row] = eng.logs(logs.CHECK_FAILED, username=u)
            assert u in row.message and want.says in row.message and f"HTTP {j.http_status}" in row.message
            assert f"after {j.tries} tr" in row.message and "via direct" in row.message, row.message
        text = "\n".join(r.message + (r.details or "") for r in eng.logs())
        text += "\n".join(str(j.error_message) for j in jobs.values())
    text += log_text(logsetup)
    for value in shape.env.values():
        assert value not in text, shape.name


def test_source_test_explains_an_answer(shape, served, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(shape.config_for(served.base))
    for username, want in shape.expect.items():
        res = cli(capsys, "source", "test", username, "--config", str(config))
        out = res.out
        assert res.code == (0 if want.kind in ANSWERS else 1), (username, out, res.err)
        lines = out.splitlines()
        assert lines[0].startswith("request ") and "via       direct" in out and lines[-1].startswith("time ")
        assert want.says in out, (username, out)
        if want.kind in ANSWERS:
            assert f"outcome   {want.kind}" in out
            assert sum(line.startswith("story ") for line in lines) == want.stories
        else:
            assert f"failed    {want.kind}: " in out
        for value in shape.env.values():
            assert value not in out, out


def test_source_test_names_the_fields_a_wrong_items_path_found(tmp_path, capsys, monkeypatch):
    shape = SHAPES["keyapi"]
    monkeypatch.setenv("KEYAPI_TOKEN", shape.env["KEYAPI_TOKEN"])
    with ShapeServer(shape) as srv:
        config = tmp_path / "c.toml"
        config.write_text(shape.config_for(srv.base).replace('items = "data.data.items"', 'items = "data.items"'))
        res = cli(capsys, "source", "test", "natgeo", "--config", str(config))
    assert res.code == 1
    assert "expected a list at 'data.items', found dict without key 'items' at 'data'" in res.out
    assert "(the body: an object with keys code, message, data)" in res.out
    assert "Authorization: ***" in res.out and "keyapi-TOKEN" not in res.out


def test_source_test_shows_the_post_body_and_masks_the_query_key(tmp_path, capsys, monkeypatch):
    for name, needle in (("rocketapi", '{"ids": ["787132"]}'), ("instagrapi-rest", "sessionid=***&user_id=natgeo")):
        shape = SHAPES[name]
        for k, v in shape.env.items():
            monkeypatch.setenv(k, v)
        with ShapeServer(shape) as srv:
            config = tmp_path / f"{name}.toml"
            config.write_text(shape.config_for(srv.base))
            user = "787132" if name == "rocketapi" else "natgeo"
            res = cli(capsys, "source", "test", user, "--config", str(config))
        assert res.code == 0 and needle in res.out, res.out


def test_source_test_exit_codes_for_config_errors(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[source]\nurl = "http://127.0.0.1:9/s?u={username}"\n\n[[source.rules]]\nfield = "x"\n'
                      'outcome = "private"\n')
    res = cli(capsys, "source", "test", "alice", "--config", str(config))
    assert res.code == 2 and res.err_lines == [
        f"storycheck: {config}:5: [[source.rules]] #1: a rule with a field needs exactly one test "
        "(equals, in, contains, missing), found none"]
    config.write_text('[source]\nurl = "http://127.0.0.1:9/s?u={username}"\n')
    res = cli(capsys, "source", "test", "alice", "--config", str(config), "--proxy", "not a proxy")
    assert res.code == 2 and res.err_lines[0].startswith("storycheck: --proxy:")
    res = cli(capsys, "source")
    assert res.code == 2


def test_source_test_through_a_proxy(tmp_path, capsys, monkeypatch):
    from helpers import free_port, start_pproxy, wait_port

    shape = SHAPES["hikerapi"]
    monkeypatch.setenv("HIKERAPI_KEY", shape.env["HIKERAPI_KEY"])
    port = free_port()
    proc = start_pproxy(f"http://127.0.0.1:{port}#user:Pr0xy-PW-6e5f", "--auth", "0")
    try:
        wait_port(port)
        with ShapeServer(shape) as srv:
            config = tmp_path / "c.toml"
            config.write_text(shape.config_for(srv.base))
            res = cli(capsys, "source", "test", "natgeo", "--config", str(config),
                      "--proxy", f"127.0.0.1:{port}:user:Pr0xy-PW-6e5f")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert res.code == 0, res.out + res.err
    assert f"via       http://user@127.0.0.1:{port}" in res.out and "Pr0xy-PW" not in res.out


# ------------------------------------------------------------------------------------------
# presets and the config: every rule that cannot match is refused with its line
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule, message", [
    ('outcome = "gone"', "outcome: expected one of no_stories, private, not_found"),
    ('field = "a"\nequals = 1\ncontains = "x"\noutcome = "private"', "exactly one test"),
    ('field = "a"\noutcome = "private"', "exactly one test"),
    ('outcome = "private"', "would match every answer"),
    ('equals = 1\noutcome = "private"', "equals: needs a field"),
    ('status = [999]\noutcome = "private"', "status: expected a list of HTTP status codes"),
    ('field = "a"\nin = []\noutcome = "private"', "in: expected a non-empty list"),
    ('field = "a"\nequals = [1]\noutcome = "private"', "equals: expected a string, number or boolean"),
    ('field = "a"\nmissing = false\noutcome = "private"', "missing: expected true"),
    ('field = "a"\nequals = 1\noutcome = "private"\ncolour = "red"', "unknown key 'colour'"),
])
def test_a_rule_that_can_never_match_is_a_config_error_with_its_line(rule, message):
    text = '[source]\nurl = "http://h/s?u={username}"\n\n[[source.rules]]\nstatus = [404]\noutcome = "not_found"\n' \
           f'\n[[source.rules]]\n{rule}\n'
    with pytest.raises(InputError) as info:
        parse_settings(text, source="c.toml")
    err = info.value
    assert message in err.reason and err.reason.startswith("[[source.rules]] #2"), err.reason
    assert err.line is not None and 8 <= err.line <= 9 + rule.count("\n"), (err.line, str(err))


@pytest.mark.parametrize("text, message", [
    ('[source]\npreset = "nope"\n', "unknown preset 'nope' (known: hikerapi, sim)"),
    ('[source]\npreset = "sim"\n', "preset 'sim' needs url"),
    ('[source]\nurl = "http://h/s?u={username}"\nmethod = "PUT"\n', "method: expected \"GET\" or \"POST\""),
    ('[source]\nurl = "http://h/s"\njson = { u = "{username}" }\n', "a JSON body needs method = \"POST\""),
    ('[source]\nurl = "http://h/s"\nmethod = "POST"\njson = 3\n', "json: expected a table"),
    ('[source]\nurl = "http://h/s?k=${NOT_SET_ANYWHERE_1}&u={username}"\n', "NOT_SET_ANYWHERE_1 is not set"),
])
def test_request_and_preset_errors_name_their_line(text, message):
    with pytest.raises(InputError) as info:
        parse_settings(text, source="c.toml")
    assert message in str(info.value) and str(info.value).startswith("c.toml:"), str(info.value)


def test_the_hikerapi_preset_fills_what_the_config_leaves_out_and_the_config_wins(monkeypatch):
    monkeypatch.setenv("HIKERAPI_KEY", "hk-0123456789")
    s = parse_settings('[source]\npreset = "hikerapi"\n', source="c.toml").source
    assert s.url == "https://api.hikerapi.com/v1/user/stories/by/username?username={username}"
    assert s.headers == {"x-access-key": "hk-0123456789"} and s.items == "" and s.story_id == "pk"
    assert s.health_url == "https://api.hikerapi.com/sys/balance" and s.preset == "hikerapi"
    assert [r.status for r in s.rules] == [(402,), (410,)] and all(r.origin == "preset hikerapi" for r in s.rules)
    monkeypatch.setenv("MY_KEY", "mine-0123456789")
    s = parse_settings('[source]\npreset = "hikerapi"\nheaders = { "x-access-key" = "${MY_KEY}", "x-extra" = "1" }\n'
                       'private = [403, 451]\n\n[[source.rules]]\nstatus = [451]\noutcome = "not_found"\n',
                       source="c.toml").source
    assert s.headers == {"x-access-key": "mine-0123456789", "x-extra": "1"} and s.private == (403, 451)
    assert [r.name for r in s.rules] == ["rule 1 (line 6)", "rule 2 (preset hikerapi)", "rule 3 (preset hikerapi)"]


def test_kind_sim_and_preset_sim_build_the_same_source():
    from storycheck_tui.sources.presets import build_source

    a = parse_settings('[source]\nkind = "sim"\nurl = "http://127.0.0.1:8765"\n', source="c").source
    b = parse_settings('[source]\npreset = "sim"\nurl = "http://127.0.0.1:8765"\n', source="c").source
    with build_source(a) as sa, build_source(b) as sb:
        for f in ("url", "health_url", "items", "story_id", "taken_at", "expires_at", "media_type"):
            assert getattr(sa.settings, f) == getattr(sb.settings, f), f
    assert sa.settings.url == "http://127.0.0.1:8765/v1/stories?username={username}"


def test_the_presets_ship_with_the_package():
    import tomllib

    pyproject = tomllib.loads((__import__("pathlib").Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "sources/preset_data/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["storycheck_tui"]


# ------------------------------------------------------------------------------------------
# hypothesis: any rule config, any body
# ------------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 50_000), st.sampled_from(["ok", "fail", "", "x.y"]),
                    st.text(max_size=8))
json_doc = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.sampled_from(["items", "data", "code", "status", "message", "pk",
                                                              "taken_at", "reel"]), c, max_size=4)), max_leaves=12)
rule_table = st.dictionaries(
    st.sampled_from(["status", "field", "outcome", "message", "equals", "in", "contains", "missing", "zap"]),
    st.one_of(scalars, st.lists(st.one_of(st.integers(100, 599), scalars), max_size=3),
              st.sampled_from(list(RULE_OUTCOMES) + ["code", "data.items", "status", "message"])),
    max_size=5)


@hsettings(max_examples=400, deadline=None)
@given(tables=st.lists(rule_table, max_size=4))
def test_any_rule_config_is_read_or_refused_with_a_line(tables):
    try:
        rules = parse_rules(tables, source="c.toml", line_of=lambda i, key: 10 + i)
    except InputError as err:
        assert err.line is not None and err.reason.startswith("[[source.rules]] #") and "\n" not in err.reason
        return
    for r in rules:
        assert r.outcome in RULE_OUTCOMES and (r.field or r.status)
        assert (r.test != "") == bool(r.field)


@hsettings(max_examples=400, deadline=None)
@given(tables=st.lists(rule_table, max_size=4), status=st.sampled_from([200, 201, 400, 404, 429, 500]),
       doc=st.one_of(st.just(MISSING), json_doc), path=st.sampled_from(["", "items", "data.items", "reel.items"]))
def test_no_success_from_a_body_that_no_rule_or_items_path_accepted(tables, status, doc, path):
    try:
        rules = parse_rules(tables, source="c", line_of=lambda i, key: 1)
    except InputError:
        rules = ()
    s = SourceSettings(url="http://h/s?u={username}", items=path, rules=rules)
    decided = by_rules(rules, status, __import__("httpx").Headers(), doc, 1.0)
    if decided is not None:
        return  # a rule decided: that is the config's word
    if not 200 <= status < 300 or doc is MISSING:
        return
    body = json.dumps(doc).encode()
    try:
        outcome = by_items(body, s, status, 1.0)
    except BadBody as err:
        assert "\n" not in str(err)
        return
    accepted = items_at(load_json(body), path)  # the items path found a list: only then a success
    assert isinstance(accepted, list) and outcome.story_count <= len(accepted)
    for story in outcome.stories:
        assert story.story_id and story.taken_at is not None and math.isfinite(story.taken_at)


class _Served:
    def __init__(self) -> None:
        self.answer = Answer(200, b"")
        self.lock = threading.Lock()


@pytest.fixture(scope="module")
def any_answer():
    served = _Served()
    shape = Shape("any", "", {}, {}, {}, user_from=lambda p, q, b: "u")

    class Fixed(dict):
        def get(self, key, default=None):
            with served.lock:
                return served.answer

    object.__setattr__(shape, "answers", Fixed())
    with ShapeServer(shape) as srv:
        yield served, srv


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=st.lists(rule_table, max_size=3), status=st.sampled_from([200, 400, 404, 429, 500, 503]),
       doc=st.one_of(json_doc, st.binary(max_size=40)))
def test_any_rules_and_any_answer_over_a_socket_give_an_outcome_or_a_typed_error(any_answer, tables, status, doc):
    served, srv = any_answer
    try:
        rules = parse_rules(tables, source="c", line_of=lambda i, key: 1)
    except InputError:
        rules = ()
    with served.lock:
        served.answer = Answer(status, doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    with HttpSource(SourceSettings(url=f"{srv.base}/s?u={{username}}", items="items", rules=rules,
                                   timeout=2.0)) as src:
        try:
            outcome = src.check("u", DIRECT)
        except CheckError as err:
            assert err.message and "\n" not in err.message and err.kind
            return
    assert outcome.decided_by
    if outcome.kind in ("has_stories", "no_stories") and not outcome.decided_by.startswith("rule"):
        assert 200 <= status < 300 and isinstance(doc, dict) and isinstance(doc.get("items"), list)


def test_every_readme_recipe_is_a_valid_config(monkeypatch):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    recipes = readme.split("### Recipes", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", recipes, re.S)
    assert len(blocks) == 5
    for name in ("ROCKETAPI_KEY", "KEYAPI_TOKEN", "IG_SESSIONID", "ENSEMBLE_TOKEN"):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    for block in blocks:
        s = parse_settings(block, source="README").source
        with HttpSource(s):
            assert s.rules, block


def test_rules_written_inline_are_named_by_the_line_of_rules():
    text = '[source]\nurl = "http://h/s?u={username}"\nrules = [ { status = [404], outcome = "private" } ]\n'
    assert parse_settings(text, source="c").source.rules[0].name == "rule 1 (line 3)"
    with pytest.raises(InputError) as info:
        parse_settings(text.replace('"private"', '"nope"'), source="c")
    assert str(info.value).startswith("c:3: [[source.rules]] #1: outcome:")
