"""Loopback story APIs, one per shape class that vendors and public clients document.

Each :class:`Shape` is a config (the README recipe for that class, with the loopback base
URL in place of the vendor's host), fixtures taken from the published examples (see
``shared/VENDORS.md``: HikerAPI's docs, instagrapi, instagrapi-rest, RocketAPI, keyapi,
EnsembleData), and what each username must end in. :class:`ShapeServer` answers ``GET`` and
``POST`` on 127.0.0.1 from those fixtures, and counts every request per username.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

NOW = 1_775_658_675  # 2026-04-08T14:31:15Z, HikerAPI's example time


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # an object sent as JSON, or bytes


@dataclass(frozen=True)
class Expect:
    kind: str  # an outcome (has_stories, no_stories, private, not_found) or an error kind
    stories: int = 0
    says: str = ""  # a part of the error message or of decided_by


@dataclass(frozen=True)
class Shape:
    name: str
    config: str  # the [source] table, "{base}" for the server's base URL
    env: dict[str, str]
    answers: dict[str, Answer]  # username -> answer
    expect: dict[str, Expect]
    user_from: Callable[[str, dict[str, list[str]], Any], str]  # (path, query, json body) -> username

    def config_for(self, base: str) -> str:
        return self.config.replace("{base}", base)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class ShapeServer:
    """``with ShapeServer(shape) as srv:`` a threaded HTTP/1.1 server on 127.0.0.1."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                self._answer(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                self._answer(body)

            def _answer(self, body: Any) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                req = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    outer.requests.append(req)
                if parts.path in ("/health", "/sys/balance"):
                    self._send(Answer(200, {"requests": 100, "rate": 10, "amount": 5.0}))
                    return
                user = outer.shape.user_from(parts.path, query, body)
                self._send(outer.shape.answers.get(user, Answer(404, {"detail": "no fixture"})))

            def _send(self, a: Answer) -> None:
                data = a.body if isinstance(a.body, bytes) else json.dumps(a.body).encode()
                try:
                    self.send_response(a.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, username: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path not in ("/health", "/sys/balance")
                       and self.shape.user_from(r.path, r.query, r.body) == username)

    def __enter__(self) -> "ShapeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _q(name: str) -> Callable[[str, dict[str, list[str]], Any], str]:
    return lambda path, query, body: (query.get(name) or [""])[0]


# ------------------------------------------------------------------------------------------
# HikerAPI v1: the body is the list (the hikerapi preset)
# ------------------------------------------------------------------------------------------

def _hiker_story(pk: str, user_pk: str, username: str, media_type: int) -> dict:
    return {
        "pk": pk, "id": f"{pk}_{user_pk}", "code": "DA1b2C3d4E5", "taken_at": "2026-04-08T14:31:15Z",
        "media_type": media_type, "product_type": "story",
        "thumbnail_url": f"https://scontent.example/{pk}.jpg",
        "video_url": f"https://scontent.example/{pk}.mp4" if media_type == 2 else None,
        "user": {"pk": user_pk, "username": username, "full_name": "", "is_private": False},
        "sponsor_tags": [], "mentions": [], "links": [], "hashtags": [], "stickers": [],
    }


HIKERAPI = Shape(
    name="hikerapi",
    config='''[source]
preset = "hikerapi"
url = "{base}"   # the service's base URL; leave it out to use https://api.hikerapi.com
''',
    env={"HIKERAPI_KEY": "hiker-KEY-7c1d0e"},
    answers={
        "natgeo": Answer(200, [_hiker_story("3600000000000000001", "787132", "natgeo", 1),
                               _hiker_story("3600000000000000002", "787132", "natgeo", 2)]),
        "quiet": Answer(200, []),
        "locked": Answer(403, {"detail": "Private account", "exc_type": "PrivateAccount"}),
        "gone": Answer(404, {"detail": "Target user not found", "exc_type": "UserNotFound"}),
        "broke": Answer(402, {"detail": "Payment required: insufficient balance"}),
        "retired": Answer(410, {"detail": "This endpoint is deprecated"}),
        "busy": Answer(429, {"detail": "Too many requests"}),
    },
    expect={
        "natgeo": Expect("has_stories", 2, "items path ''"),
        "quiet": Expect("no_stories", 0, "items path ''"),
        "locked": Expect("private", 0, "status list private"),
        "gone": Expect("not_found", 0, "status list not_found"),
        "broke": Expect("auth_failed", 0, "payment required"),
        "retired": Expect("auth_failed", 0, "endpoint retired"),
        "busy": Expect("rate_limited", 0, "rate limited (HTTP 429)"),
    },
    user_from=_q("username"),
)


# ------------------------------------------------------------------------------------------
# an object with the list inside, null when empty, errors in the body (instagrapi)
# ------------------------------------------------------------------------------------------

def _reel(user_pk: int, n: int) -> dict:
    items = [{"pk": 3600000000000000000 + k, "id": f"{3600000000000000000 + k}_{user_pk}", "taken_at": NOW - 60 * k,
              "media_type": 1, "image_versions2": {"candidates": [{"url": f"https://scontent.example/{k}.jpg"}]}}
             for k in range(n)]
    return {"reel": {"id": user_pk, "items": items, "expiring_at": NOW + 86_400, "latest_reel_media": NOW},
            "status": "ok"}


INSTAGRAPI = Shape(
    name="instagrapi",
    config='''[source]
url = "{base}/api/v1/feed/reels_media/?username={username}"
items = "reel.items"
story_id = "pk"
taken_at = "taken_at"          # epoch seconds

[[source.rules]]               # HTTP 200 with {"status": "fail", "message": "Please wait a few minutes..."}
field = "message"
contains = "Please wait a few minutes"
outcome = "rate_limited"

[[source.rules]]
status = [400]
field = "message"
contains = "Not authorized to view user"
outcome = "private"

[[source.rules]]               # instagrapi reads this one as "the proxy's address is blocked"
field = "message"
contains = "The username you entered"
outcome = "proxy_blocked"

[[source.rules]]
field = "message"
in = ["challenge_required", "feedback_required"]
outcome = "proxy_blocked"

[[source.rules]]               # {"reel": null, "status": "ok"}: no stories
status = [200]
field = "reel"
missing = true
outcome = "no_stories"
''',
    env={},
    answers={
        "natgeo": Answer(200, _reel(787132, 3)),
        "quiet": Answer(200, {"reel": None, "status": "ok"}),
        "locked": Answer(400, {"message": "Not authorized to view user", "status": "fail"}),
        "gone": Answer(404, {"message": "User not found", "status": "fail"}),
        "slow": Answer(200, {"message": "Please wait a few minutes before you try again.", "status": "fail"}),
        "banned": Answer(400, {"message": "The username you entered doesn't appear to belong to an account.",
                               "status": "fail", "error_type": "invalid_user"}),
        "challenged": Answer(400, {"message": "challenge_required", "challenge": {"url": "https://i.example/c/"},
                                   "status": "fail"}),
        "odd": Answer(200, {"reel": {"id": 1, "items": "none"}, "status": "ok"}),
    },
    expect={
        "natgeo": Expect("has_stories", 3, "items path 'reel.items'"),
        "quiet": Expect("no_stories", 0, "rule 5 (line 28)"),
        "locked": Expect("private", 0, "rule 2 (line 12)"),
        "gone": Expect("not_found", 0, "status list not_found"),
        "slow": Expect("rate_limited", 0, "rule 1 (line 7)"),
        "banned": Expect("proxy_failed", 0, "rule 3 (line 18)"),
        "challenged": Expect("proxy_failed", 0, "rule 4 (line 23)"),
        "odd": Expect("bad_response", 0, "expected a list at 'reel.items'"),
    },
    user_from=_q("username"),
)


# ------------------------------------------------------------------------------------------
# every error as HTTP 500 with the cause in a field; the key in the query string (instagrapi-rest)
# ------------------------------------------------------------------------------------------

INSTAGRAPI_REST = Shape(
    name="instagrapi-rest",
    config='''[source]
url = "{base}/story/user/stories?sessionid=${IG_SESSIONID}&user_id={username}"
items = ""

[[source.rules]]
status = [500]
field = "exc_type"
equals = "UserNotFound"
outcome = "not_found"

[[source.rules]]
status = [500]
field = "exc_type"
equals = "PrivateAccount"
outcome = "private"

[[source.rules]]
status = [500]
field = "exc_type"
in = ["LoginRequired", "ChallengeRequired"]
outcome = "auth_failed"
message = "the session id is no longer accepted"
''',
    env={"IG_SESSIONID": "sess%3AABC-secret-55aa"},
    answers={
        "natgeo": Answer(200, [{"pk": "3600000000000000001", "id": "3600000000000000001_787132", "taken_at": NOW,
                                "media_type": 2, "video_url": "https://v.example/1.mp4"}]),
        "quiet": Answer(200, []),
        "gone": Answer(500, {"detail": "User natgeo_missing not found", "exc_type": "UserNotFound"}),
        "locked": Answer(500, {"detail": "Private account", "exc_type": "PrivateAccount"}),
        "loggedout": Answer(500, {"detail": "login_required", "exc_type": "LoginRequired"}),
        "flaky": Answer(500, {"detail": "HTTPSConnectionPool: Read timed out.", "exc_type": "ReadTimeout"}),
    },
    expect={
        "natgeo": Expect("has_stories", 1, "items path ''"),
        "quiet": Expect("no_stories", 0, "items path ''"),
        "gone": Expect("not_found", 0, "rule 1 (line 5)"),
        "locked": Expect("private", 0, "rule 2 (line 11)"),
        "loggedout": Expect("auth_failed", 0, "rule 3 (line 17)"),
        "flaky": Expect("source_unavailable", 0, "source error HTTP 500"),
    },
    user_from=_q("user_id"),
)


# ------------------------------------------------------------------------------------------
# an envelope that is always HTTP 200, POST with a JSON body (RocketAPI)
# ------------------------------------------------------------------------------------------

def _envelope(status_code: int, body: Any) -> dict:
    return {"status": "done", "response": {"status_code": status_code, "content_type": "application/json",
                                           "body": body}}


ROCKETAPI = Shape(
    name="rocketapi",
    config='''[source]
url = "{base}/instagram/user/get_stories"
method = "POST"
json = { ids = ["{username}"] }
headers = { Authorization = "Token ${ROCKETAPI_KEY}" }
items = "response.body.reels_media.0.items"

[[source.rules]]
field = "response.status_code"
equals = 404
outcome = "not_found"

[[source.rules]]
field = "response.status_code"
equals = 429
outcome = "rate_limited"

[[source.rules]]                # the inner answer has no reel: no stories
field = "response.body.reels_media.0"
missing = true
outcome = "no_stories"
''',
    env={"ROCKETAPI_KEY": "rocket-KEY-0f9e8d"},
    answers={
        "787132": Answer(200, _envelope(200, {"reels_media": [_reel(787132, 2)["reel"]], "status": "ok"})),
        "111": Answer(200, _envelope(200, {"reels_media": [], "status": "ok"})),
        "222": Answer(200, _envelope(404, {"message": "User not found", "status": "fail"})),
        "333": Answer(200, _envelope(429, {"message": "Please wait a few minutes", "status": "fail"})),
    },
    expect={
        "787132": Expect("has_stories", 2, "items path 'response.body.reels_media.0.items'"),
        "111": Expect("no_stories", 0, "rule 3 (line 18)"),
        "222": Expect("not_found", 0, "rule 1 (line 8)"),
        "333": Expect("rate_limited", 0, "rule 2 (line 13)"),
    },
    user_from=lambda path, query, body: str((body or {}).get("ids", [""])[0]) if isinstance(body, dict) else "",
)


# ------------------------------------------------------------------------------------------
# a result code in the body (keyapi)
# ------------------------------------------------------------------------------------------

def _coded(code: int, message: str, items: list | None = None) -> dict:
    doc: dict[str, Any] = {"code": code, "message": message}
    if items is not None:
        doc["data"] = {"data": {"items": items, "count": len(items),
                                "additional_data": {"expiring_at": NOW + 86_400, "latest_reel_media": NOW}}}
    return doc


KEYAPI = Shape(
    name="keyapi",
    config='''[source]
url = "{base}/v1/instagram/fetch_user_stories?username={username}"
headers = { Authorization = "Bearer ${KEYAPI_TOKEN}" }
items = "data.data.items"

[[source.rules]]
field = "code"
equals = 40401
outcome = "not_found"

[[source.rules]]
field = "code"
equals = 42901
outcome = "rate_limited"
''',
    env={"KEYAPI_TOKEN": "keyapi-TOKEN-3b4c5d"},
    answers={
        "natgeo": Answer(200, _coded(0, "success", _reel(787132, 4)["reel"]["items"])),
        "quiet": Answer(200, _coded(0, "success", [])),
        "gone": Answer(200, _coded(40401, "user not found")),
        "busy": Answer(429, _coded(42901, "too many requests")),
        "weird": Answer(200, _coded(50001, "internal error")),
    },
    expect={
        "natgeo": Expect("has_stories", 4, "items path 'data.data.items'"),
        "quiet": Expect("no_stories", 0, "items path 'data.data.items'"),
        "gone": Expect("not_found", 0, "rule 1 (line 6)"),
        "busy": Expect("rate_limited", 0, "rule 2 (line 11)"),
        "weird": Expect("bad_response", 0, "found dict without key 'data' at the top level"),
    },
    user_from=_q("username"),
)


# ------------------------------------------------------------------------------------------
# the token in the query string; a non-standard 495 when the daily quota is used (EnsembleData)
# ------------------------------------------------------------------------------------------

ENSEMBLEDATA = Shape(
    name="ensembledata",
    config='''[source]
url = "{base}/instagram/user/stories?username={username}&token=${ENSEMBLE_TOKEN}"
items = "data"

[[source.rules]]
status = [495]
outcome = "auth_failed"
message = "the token's daily quota is used up"
''',
    env={"ENSEMBLE_TOKEN": "ens-TOKEN-a1b2c3"},
    answers={
        "natgeo": Answer(200, {"data": _reel(787132, 1)["reel"]["items"]}),
        "quiet": Answer(200, {"data": []}),
        "spent": Answer(495, {"detail": "Daily units limit reached"}),
    },
    expect={
        "natgeo": Expect("has_stories", 1, "items path 'data'"),
        "quiet": Expect("no_stories", 0, "items path 'data'"),
        "spent": Expect("auth_failed", 0, "rule 1 (line 5)"),
    },
    user_from=_q("username"),
)

SHAPES = {s.name: s for s in (HIKERAPI, INSTAGRAPI, INSTAGRAPI_REST, ROCKETAPI, KEYAPI, ENSEMBLEDATA)}
#: outcomes that are answers: a success, never retried (each costs exactly one request)
ANSWERS = {"has_stories", "no_stories", "private", "not_found"}
