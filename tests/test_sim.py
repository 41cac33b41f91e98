"""The simulator, tested as a server: real HTTP on loopback with httpx, no mocks."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import select
import socket
import threading
import time
import tomllib
from collections import Counter
from typing import Callable

import httpx
import pytest

from storycheck_tui.sim import ProxyFault, SimConfig, Simulator
from storycheck_tui.sim.main import run_sim_command
from storycheck_tui.sim import server as sim_server
from storycheck_tui.sim.server import IDLE_TIMEOUT, REQUEST_TIMEOUT, SWEEP_EVERY
from storycheck_tui.sim.world import World

from helpers import stays, wait_for

NAMES = [f"user{i}" for i in range(400)]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def make_sim():
    sims: list[Simulator] = []

    def make(**kw) -> Simulator:
        kw.setdefault("rate", 0)  # most tests do not want rate limiting in the way
        sim = Simulator(**kw).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        assert sim.stats()["internal_errors"] == 0
        sim.stop()


def get_story(client: httpx.Client, sim: Simulator, username: str, **kw) -> httpx.Response:
    return client.get(sim.stories_url_template.format(username=username), **kw)


# world --------------------------------------------------------------------------------------


def test_categories_are_deterministic_per_seed_and_match_answers(make_sim):
    a, b, other = make_sim(seed=7), make_sim(seed=7), make_sim(seed=8)
    outcomes = [a.outcome_for(n) for n in NAMES]
    assert outcomes == [b.outcome_for(n) for n in NAMES]
    assert outcomes != [other.outcome_for(n) for n in NAMES]
    shares = Counter(outcomes)
    assert 0.35 < shares["has_stories"] / len(NAMES) < 0.55
    assert 0.25 < shares["no_stories"] / len(NAMES) < 0.45
    assert 0.04 < shares["private"] / len(NAMES) < 0.18
    assert 0.04 < shares["not_found"] / len(NAMES) < 0.18

    expected_status = {"has_stories": 200, "no_stories": 200, "private": 403, "not_found": 404}
    with httpx.Client() as client:
        for name in NAMES[:60]:
            ra, rb = get_story(client, a, name), get_story(client, b, name)
            outcome = a.outcome_for(name)
            assert ra.status_code == rb.status_code == expected_status[outcome]
            assert ra.headers["content-type"] == "application/json"
            body = ra.json()
            if outcome == "has_stories":
                assert body["user"]["username"] == name
                assert 1 <= len(body["items"]) <= 5
                assert [i["pk"] for i in body["items"]] == [i["pk"] for i in rb.json()["items"]]
            elif outcome == "no_stories":
                assert body["items"] == []
            else:
                assert body == {"error": outcome}


def test_world_is_stable_across_processes():
    """Golden values: a salted hash() (or any change of derivation) would break these."""
    world = World(seed=1, now=1_700_000_000)
    assert [world.outcome(f"user{i}") for i in range(10)] == [
        "no_stories", "has_stories", "not_found", "not_found", "has_stories",
        "has_stories", "not_found", "no_stories", "has_stories", "private"]
    assert world.stories("alice")[0] == {
        "pk": "7573838383067784691", "taken_at": 1699965018, "expiring_at": 1700051418,
        "media_type": 2}


def test_story_items_shape():
    world = World(seed=3, now=1_700_000_000)
    items = world.stories("stories_alice")
    assert 1 <= len(items) <= 5
    for item in items:
        assert isinstance(item["pk"], str) and item["pk"]
        assert 0 <= world.now - item["taken_at"] < 23 * 3600
        assert item["expiring_at"] == item["taken_at"] + 86400
        assert item["media_type"] in (1, 2)
    assert len({i["pk"] for i in items}) == len(items)
    assert World(seed=3, now=1_700_000_000).stories("stories_alice") == items
    assert World(seed=3).stories("nostories_alice") == []


def test_stories_posted_and_expired_by_hand(make_sim):
    """Issue 13: monitoring needs stories that come and go between rounds. Over HTTP, as a
    worker in another process would see them; the control calls as a test would make them."""
    sim = make_sim()
    control = sim.api_url + "/_sim/"
    with httpx.Client(timeout=5) as client:
        def items(name: str) -> list[dict]:
            answer = get_story(client, sim, name)
            assert answer.status_code == 200, answer.text
            return answer.json()["items"]

        assert items("nostories_bob") == [] and sim.outcome_for("nostories_bob") == "no_stories"
        first = client.post(control + "post", json={"username": "nostories_bob", "taken_at": 1_700_000_000}).json()
        assert first["ok"] and first["story"]["taken_at"] == 1_700_000_000
        assert first["story"]["expiring_at"] == 1_700_000_000 + 86400
        assert items("nostories_bob") == [first["story"]] == items("nostories_bob")  # same id every answer
        assert sim.outcome_for("nostories_bob") == "has_stories"
        second = sim.post_story("nostories_bob")
        assert second["pk"] != first["story"]["pk"]
        assert items("nostories_bob") == [second, first["story"]]  # newest first
        gone = client.post(control + "expire", json={"username": "nostories_bob",
                                                     "story_ids": [first["story"]["pk"], "unknown"]}).json()
        assert gone == {"ok": True, "expired": [first["story"]["pk"]]}
        assert items("nostories_bob") == [second]
        assert sim.expire_stories("nostories_bob") == [second["pk"]]
        assert items("nostories_bob") == [] and sim.outcome_for("nostories_bob") == "no_stories"

        # a profile with stories of its own: they expire like the posted ones
        own = items("stories_carol")
        assert own and sim.stories_of("stories_carol") == own
        assert sorted(sim.expire_stories("stories_carol")) == sorted(i["pk"] for i in own)
        assert items("stories_carol") == [] and sim.outcome_for("stories_carol") == "no_stories"
        # posting to a private profile makes it public with that story
        assert get_story(client, sim, "private_dan").status_code == 403
        story = sim.post_story("private_dan")
        assert items("private_dan") == [story]

        for body in ({}, {"username": ""}, {"username": "x", "story_ids": "all"}):
            path = "expire" if "story_ids" in body else "post"
            assert client.post(control + path, json=body).status_code == 400


def test_stories_on_a_schedule_post_one_and_expire_the_oldest():
    """story_every: each profile with stories posts a new one every N s at its own phase and
    its oldest expires; ids and dates follow from seed and clock (two worlds agree)."""
    clock = [1_700_000_000.0]
    worlds = [World(seed=5, now=1_700_000_000, story_every=60, clock=lambda: clock[0]) for _ in range(2)]
    names = [f"stories_{i}" for i in range(20)]
    before = {n: worlds[0].stories(n) for n in names}
    for _ in range(3):
        clock[0] += 59.0  # within one period every profile moves on by at most one post
        for n in names:
            now = worlds[0].stories(n)
            assert now == worlds[1].stories(n)
            assert len(now) == len(before[n])
            new = [i for i in now if i not in before[n]]
            assert len(new) <= 1
            for item in now:
                assert item["taken_at"] <= clock[0] < item["expiring_at"]
                assert item["expiring_at"] - item["taken_at"] == 60 * len(now)
            if new:
                assert new[0] == now[0] and now[1:] == before[n][:-1]  # the newest in, the oldest out
            before[n] = now
        clock[0] += 1.0
    moved = [n for n in names if worlds[0].stories(n) != World(seed=5, now=1_700_000_000).stories(n)]
    assert moved  # the schedule is not the static world
    assert all(World(seed=5, now=1_700_000_000, story_every=60, clock=lambda: clock[0]).stories(n) ==
               worlds[0].stories(n) for n in names)


def test_a_scheduled_story_change_reaches_the_api(make_sim):
    sim = make_sim()
    with httpx.Client(timeout=5) as client:
        assert client.post(sim.api_url + "/_sim/config", json={"story_every": 0.2}).status_code == 200
        first = {i["pk"] for i in get_story(client, sim, "stories_eve").json()["items"]}
        wait_for(lambda: {i["pk"] for i in get_story(client, sim, "stories_eve").json()["items"]} - first,
                 5.0, "a new story of stories_eve")


def test_prefix_overrides(make_sim):
    sim = make_sim(seed=99)
    with httpx.Client() as client:
        for i in range(20):
            assert sim.outcome_for(f"stories_{i}") == "has_stories"
            assert sim.outcome_for(f"nostories_{i}") == "no_stories"
            assert sim.outcome_for(f"private_{i}") == "private"
            assert sim.outcome_for(f"missing_{i}") == "not_found"
        assert get_story(client, sim, "stories_x").json()["items"]
        assert get_story(client, sim, "nostories_x").json()["items"] == []
        assert get_story(client, sim, "private_x").status_code == 403
        assert get_story(client, sim, "missing_x").status_code == 404


def test_profiles_list_restricts_the_world(make_sim):
    listed = [f"p{i}" for i in range(50)]
    sim = make_sim(profiles=listed + ["missing_listed"])
    assert all(sim.outcome_for(n) != "not_found" for n in listed)
    assert sim.outcome_for("missing_listed") == "not_found"
    assert sim.outcome_for("stories_unlisted") == "not_found"
    with httpx.Client() as client:
        assert get_story(client, sim, "unlisted").status_code == 404
        sim.update(profiles=None)
        assert sim.outcome_for("stories_unlisted") == "has_stories"
        assert get_story(client, sim, "stories_unlisted").status_code == 200


def test_missing_username_and_unknown_paths(make_sim):
    sim = make_sim()
    with httpx.Client() as client:
        assert client.get(sim.api_url + "/v1/stories").status_code == 400
        assert client.get(sim.api_url + "/v1/stories?username=").status_code == 400
        assert client.get(sim.api_url + "/nope").status_code == 404
        health = client.get(sim.health_url)
        assert health.status_code == 200 and health.json() == {"ok": True}


# rate limits ----------------------------------------------------------------------------------


def test_429_with_retry_after_once_burst_is_spent(make_sim):
    sim = make_sim(rate=0.01, burst=3, retry_after=2)
    with httpx.Client() as client:
        assert [get_story(client, sim, f"stories_{i}").status_code for i in range(3)] == [200] * 3
        limited = get_story(client, sim, "stories_3")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        # health and stats are never rate limited
        assert client.get(sim.health_url).status_code == 200
        assert client.get(sim.api_url + "/_sim/stats").status_code == 200
    total = sim.stats()["total"]
    assert (total["requests"], total["ok"], total["rate_limited"], total["health"]) == (4, 3, 1, 1)


def test_retry_after_as_http_date(make_sim):
    sim = make_sim(rate=0.01, burst=1, retry_after=30, retry_after_http_date=True)
    with httpx.Client() as client:
        get_story(client, sim, "stories_a")
        limited = get_story(client, sim, "b")
    assert limited.status_code == 429
    when = email.utils.parsedate_to_datetime(limited.headers["retry-after"]).timestamp()
    assert 29 <= when - time.time() <= 32


def test_bucket_refills(make_sim):
    sim = make_sim(rate=20, burst=1)
    with httpx.Client() as client:
        assert get_story(client, sim, "stories_a").status_code == 200
        assert get_story(client, sim, "stories_a").status_code == 429
        wait_for(lambda: get_story(client, sim, "stories_a").status_code == 200, 2, "a refilled token")


# proxy ports ------------------------------------------------------------------------------------


def test_proxy_port_is_its_own_identity(make_sim):
    sim = make_sim(proxies=2, rate=0.01, burst=2)
    with httpx.Client() as direct, httpx.Client(proxy=sim.proxy_urls[1]) as via:
        assert [get_story(direct, sim, "stories_x").status_code for _ in range(3)] == [200, 200, 429]
        # direct is exhausted, proxy-1 has its own bucket
        assert [get_story(via, sim, "stories_x").status_code for _ in range(3)] == [200, 200, 429]
        assert via.get(sim.health_url).status_code == 200
    ids = sim.stats()["identities"]
    assert ids["direct"]["requests"] == 3 and ids["direct"]["rate_limited"] == 1
    assert ids["proxy-1"]["requests"] == 3 and ids["proxy-1"]["ok"] == 2
    assert ids["proxy-1"]["health"] == 1
    assert ids["proxy-0"]["requests"] == 0
    sim.reset_stats()
    assert sim.stats()["total"]["requests"] == 0


def test_dead_port_refuses_then_revives_on_the_same_port(make_sim):
    sim = make_sim(proxies=2, faults={0: "dead"})
    dead_port = port_of(sim.proxy_urls[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", dead_port), timeout=2).close()
    with httpx.Client(proxy=sim.proxy_urls[0], timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(sim.health_url)

    sim.set_fault(0, "healthy")
    assert port_of(sim.proxy_urls[0]) == dead_port
    with httpx.Client(proxy=sim.proxy_urls[0], timeout=2) as client:
        assert client.get(sim.health_url).status_code == 200
        # going dead again also drops the open keep-alive connection
        sim.set_fault(0, ProxyFault("dead"))
        with pytest.raises(httpx.TransportError):
            client.get(sim.health_url)


def test_auth_port_needs_proxy_credentials(make_sim):
    sim = make_sim(proxies=1, faults={0: ProxyFault("auth", username="bob", password="s3cr:t")})
    url = sim.proxy_urls[0]
    assert url.startswith("http://bob:s3cr%3At@127.0.0.1:")
    bare = "http://" + url.rsplit("@", 1)[1]
    with httpx.Client(proxy=bare) as client:
        denied = get_story(client, sim, "stories_x")
        assert denied.status_code == 407
        assert denied.headers["proxy-authenticate"] == 'Basic realm="sim"'
        wrong = "Basic " + base64.b64encode(b"bob:nope").decode()
        assert client.get(sim.health_url, headers={"Proxy-Authorization": wrong}).status_code == 407
    with httpx.Client(proxy=url) as client:
        assert get_story(client, sim, "stories_x").status_code == 200
        assert client.get(sim.health_url).status_code == 200
    ids = sim.stats()["identities"]["proxy-0"]
    assert ids["rejected"] == 1 and ids["ok"] == 1


def test_banned_slow_and_flaky_ports(make_sim):
    sim = make_sim(proxies=3, faults={0: "banned", 1: ProxyFault("slow", delay=0.3),
                                      2: ProxyFault("flaky", error_rate=1.0)})
    with httpx.Client(proxy=sim.proxy_urls[0]) as client:
        banned = get_story(client, sim, "stories_x")
        assert banned.status_code == 429 and banned.headers["retry-after"] == "3600"
        assert client.get(sim.health_url).status_code == 429
    with httpx.Client(proxy=sim.proxy_urls[1]) as client:
        t0 = time.monotonic()
        assert get_story(client, sim, "stories_x").status_code == 200
        assert time.monotonic() - t0 >= 0.3
    with httpx.Client(proxy=sim.proxy_urls[2]) as client:
        assert {get_story(client, sim, "stories_x").status_code for _ in range(10)} <= {502, 503}
    assert ProxyFault("slow").delay == 0.5 and ProxyFault("flaky").error_rate == 0.5
    with pytest.raises(ValueError):
        ProxyFault("on-fire")


def test_proxy_refuses_connect_and_other_hosts(make_sim):
    sim = make_sim(proxies=1)
    port = port_of(sim.proxy_urls[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 501 ")
    with httpx.Client(proxy=sim.proxy_urls[0]) as client:
        assert client.get("http://example.invalid/v1/stories?username=x").status_code == 502
        # "localhost" names the API too
        local = sim.stories_url_template.replace("127.0.0.1", "localhost").format(username="a")
        assert client.get(local).status_code in (200, 403, 404)


# api faults ---------------------------------------------------------------------------------


def test_api_key(make_sim):
    sim = make_sim(api_key="k3y")
    with httpx.Client() as client:
        denied = get_story(client, sim, "stories_x")
        assert denied.status_code == 401 and denied.json() == {"error": "unauthorized"}
        assert get_story(client, sim, "stories_x", headers={"x-access-key": "k3y"}).status_code == 200
        sim.update(api_key=None)
        assert get_story(client, sim, "stories_x").status_code == 200
    assert '"x-access-key" = "${STORY_API_KEY}"' in Simulator(api_key="k").config_snippet()


def test_error_rate_gives_5xx(make_sim):
    sim = make_sim(error_rate=1.0)
    with httpx.Client() as client:
        statuses = {get_story(client, sim, f"u{i}").status_code for i in range(20)}
        assert statuses <= {500, 502, 503} and statuses
        assert client.get(sim.health_url).status_code == 200  # health is not error-injected
    assert sim.stats()["total"]["errors"] == 20


def test_malformed_rate_gives_invalid_json(make_sim):
    sim = make_sim(malformed_rate=1.0)
    with httpx.Client() as client:
        for i in range(10):
            response = get_story(client, sim, f"stories_{i}")
            assert response.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(response.content)


def test_hanging_requests_time_out_and_the_sim_stays_responsive(make_sim):
    sim = make_sim(timeout_rate=1.0, hang_seconds=30)
    with httpx.Client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            get_story(client, sim, "stories_x")
    with httpx.Client(timeout=2) as client:
        # hanging requests do not block others: health and stats answer at once
        assert client.get(sim.health_url).status_code == 200
        sim.update(timeout_rate=0.0)
        assert get_story(client, sim, "stories_x").status_code == 200


def test_stop_is_prompt_with_hanging_requests(capfd):
    sim = Simulator(timeout_rate=1.0, hang_seconds=60, rate=0).start()
    results: list[object] = []

    def hang() -> None:
        try:
            with httpx.Client(timeout=30) as client:
                results.append(get_story(client, sim, "stories_x").status_code)
        except httpx.HTTPError as err:
            results.append(err)

    threads = [threading.Thread(target=hang) for _ in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: sim.stats()["total"]["requests"] == 5, 5, "5 hanging requests")
    t0 = time.monotonic()
    sim.stop()
    assert time.monotonic() - t0 < 1.0
    for t in threads:
        t.join(5)
    assert len(results) == 5 and all(isinstance(r, httpx.TransportError) for r in results)
    sim.stop()  # idempotent
    # a client vanishing mid-hang and the stop itself print nothing
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_client_disconnect_mid_request_is_quiet(make_sim, capfd):
    sim = make_sim(latency=0.2)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port_of(sim.api_url))) as sock:
            sock.sendall(b"GET /v1/stories?username=x HTTP/1.1\r\nHost: x\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port_of(sim.api_url))) as sock:
            sock.sendall(b"GET /v1/sto")  # half a request, then gone
    with socket.create_connection(("127.0.0.1", port_of(sim.api_url))) as sock:
        sock.sendall(b"garbage\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    with httpx.Client() as client:
        assert client.get(sim.health_url).status_code == 200
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# control and CLI ------------------------------------------------------------------------------


def test_control_endpoints(make_sim):
    sim = make_sim(proxies=2)
    with httpx.Client(timeout=5) as client:
        get_story(client, sim, "stories_x")
        stats = client.get(sim.api_url + "/_sim/stats").json()
        assert stats["identities"]["direct"]["ok"] == 1 and stats == sim.stats()
        assert client.post(sim.api_url + "/_sim/reset", json={}).json() == {"ok": True}
        assert sim.stats()["total"]["requests"] == 0

        answer = client.post(sim.api_url + "/_sim/fault", json={"index": 1, "kind": "dead"})
        assert answer.status_code == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port_of(sim.proxy_urls[1])), timeout=2).close()
        client.post(sim.api_url + "/_sim/fault", json={"index": 1, "kind": "healthy"})
        with httpx.Client(proxy=sim.proxy_urls[1]) as via:
            assert via.get(sim.health_url).status_code == 200

        assert client.post(sim.api_url + "/_sim/fault", json={"index": 9, "kind": "dead"}).status_code == 400
        assert client.post(sim.api_url + "/_sim/fault", json={"index": 0, "kind": "??"}).status_code == 400
        assert client.post(sim.api_url + "/_sim/config", json={"error_rate": 1.0}).status_code == 200
        assert get_story(client, sim, "stories_x").status_code >= 500


def test_control_calls_refuse_what_a_web_page_can_send(make_sim):
    """Issue 15 item 12: a web page can POST text/plain (or a form) to loopback without a CORS
    preflight; a control call must not take it. Nor anything a browser sends with ``Origin``."""
    sim = make_sim(proxies=1)
    with httpx.Client(timeout=5) as client:
        body = json.dumps({"error_rate": 1.0})
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                        {}, {"Content-Type": "application/json", "Origin": "http://evil.example"}):
            for path in ("/_sim/config", "/_sim/fault", "/_sim/reset"):
                answer = client.post(sim.api_url + path, content=body, headers=headers)
                assert answer.status_code in (403, 415), (path, headers, answer.status_code)
        assert sim.config.error_rate == 0.0
        assert get_story(client, sim, "stories_x").status_code == 200
        assert sim.stats()["total"]["requests"] == 1  # the resets were refused too
        ok = client.post(sim.api_url + "/_sim/config", content=body,
                         headers={"Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 200 and sim.config.error_rate == 1.0


# hostile clients: the server's bounds ---------------------------------------------------------


def exchange(sim: Simulator, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything the simulator answers until it closes."""
    with socket.create_connection(("127.0.0.1", port_of(sim.api_url)), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_content_length_must_be_plain_digits(make_sim):
    sim = make_sim()
    for value in (b"1_0", b"+10", b"0x0a", b" 10 10"):
        raw = exchange(sim, b"POST /_sim/config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: " + value + b"\r\n\r\n{}        ")
        assert statuses(raw) == [400], (value, raw[:200])


def test_two_content_lengths_cannot_smuggle_a_second_request(make_sim):
    """A front end that reads the first Content-Length and a server that reads the last one
    disagree on where the request ends: the rest would be a request nobody sent."""
    sim = make_sim()
    hidden = b"POST /_sim/config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n" \
             b"\r\n{\"error_rate\": 1.0}\n"
    for first, second in ((len(hidden), 0), (0, len(hidden))):
        raw = exchange(sim, b"POST /_sim/reset HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (first, second) + hidden)
        assert statuses(raw) == [400], raw[:300]
    assert sim.config.error_rate == 0.0


def test_a_half_sent_request_is_dropped_even_if_it_trickles(make_sim):
    """One byte a second (slowloris) never completes a request head: the connection is closed
    REQUEST_TIMEOUT after the request's first byte, whatever keeps arriving."""
    sim = make_sim()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", port_of(sim.api_url)), timeout=5) as sock:
        started = time.monotonic()
        closed_after = None
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset: closed
                closed_after = time.monotonic() - started
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(100) == b"":
                    closed_after = time.monotonic() - started
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "the trickling request was held"
        assert REQUEST_TIMEOUT <= closed_after <= REQUEST_TIMEOUT + SWEEP_EVERY + 1.0
    with httpx.Client() as client:
        assert client.get(sim.health_url).status_code == 200


def test_an_idle_connection_is_closed(make_sim, monkeypatch):
    # Loosened: the default IDLE_TIMEOUT (60 s) is too long to wait for in a test; the sweep
    # reads the module's value, so this is the same code path with a shorter wait.
    assert IDLE_TIMEOUT <= 120
    monkeypatch.setattr(sim_server, "IDLE_TIMEOUT", 1.0)
    sim = make_sim()
    with socket.create_connection(("127.0.0.1", port_of(sim.api_url)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert sock.recv(1000) == b""  # closed by the simulator, not by the 10 s socket timeout
        assert time.monotonic() - started <= 1.0 + SWEEP_EVERY + 1.0


def test_unread_pipelined_answers_do_not_pile_up(make_sim):
    """A client that pipelines requests and reads no answer stops being read: the answers the
    simulator holds for it stay near asyncio's write buffer limit (64 KiB), whatever it sends."""
    sim = make_sim()
    request = b"GET /v1/stories?username=stories_a HTTP/1.1\r\nHost: x\r\n\r\n"
    block = request * 1000  # ~50 KB of requests, ~700 KB of answers
    cap = 64 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port_of(sim.api_url))) as sock:
        sock.setblocking(False)
        sent = peak = 0
        while sent < cap:
            try:
                sent += sock.send(block)
            except BlockingIOError:
                peak = max(peak, sim.stats()["connections"]["unsent_bytes"])
                # not writable for 2 s: the simulator stopped reading (an observation window)
                if not select.select([], [sock], [], 2.0)[1]:
                    break
        connections = sim.stats()["connections"]
        assert connections["open"] == 1 and sent < cap
        # before the fix: 23 MB of answers held at the peak (70,000 answered), here <= 0.1 MB
        assert max(peak, connections["unsent_bytes"]) <= 1024 * 1024, (peak, connections, sent)
