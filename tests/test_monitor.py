"""Monitoring: watches, rounds coordinated in the database, story history, the event outbox
written with the fenced finish, Standard Webhooks delivery (verified with the spec's reference
library), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storycheck_tui.sources.base import Outcome, Story
from storycheck_tui.states import DeliveryState, JobState
from storycheck_tui.store import batches as ops
from storycheck_tui.store import history, outbox, watches
from storycheck_tui.store import queue as q
from storycheck_tui.store.models import Watch


def _stories(*ids: str) -> Outcome:
    return Outcome("has_stories" if ids else "no_stories",
                   stories=tuple(Story(i, 1_700_000_000.0 + n) for n, i in enumerate(ids)))


def _run_round(store, answers: dict[str, Outcome], owner: str = "w1") -> int:
    """Claim and finish every job of the due round with ``answers``; returns the batch id."""
    (r,) = watches.start_due_rounds(store)
    claimed = q.claim(store, owner, 30, 1000, [r.batch_id])
    q.finish(store, owner, [q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=answers[c.username], http_status=200,
                                        tries=1) for c in claimed])
    assert ops.get_batch(store, r.batch_id).state == "finished"
    return r.batch_id


def _make_due(store, name: str) -> None:
    Watch.update(next_round_at=0.0).where(Watch.name == name).execute()


def test_story_new_once_per_story_and_profile_changed_between_rounds(store):
    watches.add_watch(store, "campaign", ["ann", "bob", "cat"], every=3600.0)
    b1 = _run_round(store, {"ann": _stories("a1"), "bob": _stories(), "cat": Outcome("private")})
    assert watches.start_due_rounds(store) == []  # not due again for an hour
    evs = list(history.events(store))
    assert [(e.type, e.username, e.story_id) for e in evs] == [("story.new", "ann", "a1")]  # first round: no change yet
    _make_due(store, "campaign")
    b2 = _run_round(store, {"ann": _stories("a1", "a2"), "bob": Outcome("not_found"), "cat": _stories("c1")})
    assert b2 != b1
    evs = [(e.type, e.username, e.story_id, e.details.get("from"), e.details.get("to")) for e in history.events(store)]
    assert sorted(evs[1:]) == sorted([
        ("story.new", "ann", "a2", None, None), ("story.new", "cat", "c1", None, None),
        ("profile.changed", "bob", None, "public", "not_found"), ("profile.changed", "cat", None, "private", "public")])
    hist = history.history(store, "ann")
    assert [s.story_id for s in hist] == ["a1", "a2"] and hist[0].last_seen > hist[0].first_seen
    assert [c.status for c in history.status_history(store, "cat")] == ["private", "public"]
    assert all(e.delivery == DeliveryState.NONE for e in history.events(store))  # no webhook on this watch
    assert [b.watch for b in ops.list_batches(store)] == ["campaign", "campaign"]


def test_a_round_waits_for_the_previous_one_and_catches_up_once(store):
    watches.add_watch(store, "w", ["ann"], every=60.0)
    (r,) = watches.start_due_rounds(store)
    _make_due(store, "w")
    assert watches.start_due_rounds(store) == []  # the first round is unfinished
    claimed = q.claim(store, "w1", 30, 10)
    q.finish(store, "w1", [q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=_stories(), tries=1) for c in claimed])
    # a week of downtime: one catch-up round, the next one on the grid after now
    Watch.update(next_round_at=q.now(store) - 7 * 86400).where(Watch.name == "w").execute()
    assert len(watches.start_due_rounds(store)) == 1
    w = watches.get_watch(store, "w")
    assert q.now(store) < w.next_round_at <= q.now(store) + 60 and w.rounds == 2


def test_two_workers_never_start_the_same_round_twice(db_url):
    """Eight threads (one store: one connection each) race for the due rounds of five watches."""
    from storycheck_tui.store.db import open_store

    s = open_store(db_url, pool_size=12)
    try:
        for i in range(5):
            watches.add_watch(s, f"w{i}", [f"u{i}"], every=3600.0)
        started, errors = [], []
        go = threading.Barrier(8)

        def race():
            try:
                go.wait()
                started.extend(watches.start_due_rounds(s))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=race) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert sorted(r.watch for r in started) == [f"w{i}" for i in range(5)]
        assert len(ops.list_batches(s)) == 5
    finally:
        s.close()


def test_an_event_is_written_with_its_finish_or_not_at_all(store):
    """A finish that loses its lease writes no event; the later finish of the new lease writes it once."""
    watches.add_watch(store, "w", ["ann"], every=3600.0)
    (r,) = watches.start_due_rounds(store)
    (old,) = q.claim(store, "dead", 30, 1)
    q.extend_leases(store, "dead", -1.0)
    q.reap_expired(store, max_claims=5)
    (new,) = q.claim(store, "alive", 30, 1)
    assert q.finish(store, "dead", [q.JobResult(job=old, state=JobState.SUCCEEDED, outcome=_stories("s1"), tries=1)]).stale
    assert list(history.events(store)) == []
    q.finish(store, "alive", [q.JobResult(job=new, state=JobState.SUCCEEDED, outcome=_stories("s1"), tries=1)])
    assert [(e.type, e.story_id) for e in history.events(store)] == [("story.new", "s1")]


def test_durations_and_webhook_urls_are_checked():
    from storycheck_tui.errors import InputError

    assert [watches.parse_duration(t) for t in ("30s", "15m", "1h", "1d")] == [30, 900, 3600, 86400]
    for bad in ("", "10", "1w", "0s", "nan", "-5m"):
        with pytest.raises(InputError):
            watches.parse_duration(bad)
    with pytest.raises(InputError):
        watches.check_webhook("ftp://x/")
    assert watches.check_webhook("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"


# --- webhooks -----------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on loopback that verifies each POST with the standardwebhooks library."""

    def __init__(self, secret: str, *, fail_first: int = 0, hold: threading.Event | None = None):
        from standardwebhooks import Webhook

        self.hook = Webhook(secret)
        self.fail_first = fail_first
        self.hold = hold  # the first verified POST is recorded, then left unanswered until this is set
        self.holding = threading.Event()
        self.received: list[tuple[str, dict]] = []  # (webhook-id, verified payload)
        self.rejected: list[str] = []
        self.tries = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.tries += 1
                if outer.tries <= outer.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    payload = outer.hook.verify(body, dict(self.headers.items()))
                except Exception as exc:  # noqa: BLE001
                    outer.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                outer.received.append((self.headers["webhook-id"], payload))
                if outer.hold is not None and not outer.holding.is_set():
                    outer.holding.set()
                    outer.hold.wait(60)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret():
    from storycheck_tui.monitor.signing import new_secret

    return new_secret()


def test_webhooks_are_signed_as_the_reference_library_verifies_and_failures_are_retried(store, secret):
    import httpx

    from storycheck_tui.monitor.deliver import Deliverer
    from storycheck_tui.monitor.signing import parse_secret

    rx = Receiver(secret, fail_first=2)
    try:
        watches.add_watch(store, "w", ["ann", "bob"], every=3600.0, webhook=rx.url)
        _run_round(store, {"ann": _stories("a1", "a2"), "bob": _stories()})
        d = Deliverer(store, parse_secret(secret))
        with httpx.Client() as client:
            d.deliver_due(client)  # two tries fail (503): retried later
            evs = list(history.events(store))
            assert rx.tries == 2 and all(e.delivery == "pending" and e.attempts == 1 for e in evs), evs
            assert all(e.last_error == "HTTP 503" for e in evs)
            assert d.deliver_due(client) is False  # not due yet: the first retry comes within seconds
            store.db.execute_sql("UPDATE event SET next_try_at = 0")
            d.deliver_due(client)
        assert not rx.rejected
        assert sorted((p["story_id"], p["type"], p["watch"], p["username"]) for _i, p in rx.received) == [
            ("a1", "story.new", "w", "ann"), ("a2", "story.new", "w", "ann")]
        assert sorted(i for i, _p in rx.received) == sorted(str(e.id) for e in history.events(store))
        assert all(e.delivery == "delivered" for e in history.events(store))
    finally:
        rx.close()


def test_a_wrong_secret_is_refused_by_the_receiver(store, secret):
    import httpx

    from storycheck_tui.monitor.deliver import Deliverer
    from storycheck_tui.monitor.signing import new_secret, parse_secret

    rx = Receiver(secret)
    try:
        watches.add_watch(store, "w", ["ann"], every=3600.0, webhook=rx.url)
        _run_round(store, {"ann": _stories("a1")})
        with httpx.Client() as client:
            Deliverer(store, parse_secret(new_secret())).deliver_due(client)
        assert rx.rejected and not rx.received
    finally:
        rx.close()


def test_an_event_not_delivered_for_24_hours_is_marked_failed(store):
    watches.add_watch(store, "w", ["ann"], every=3600.0, webhook="http://127.0.0.1:9/")
    _run_round(store, {"ann": _stories("a1")})
    (e,) = history.events(store)
    store.db.execute_sql(f"UPDATE event SET at = at - {outbox.GIVE_UP_AFTER}")
    assert outbox.failed_try(store, e.id, "ConnectError: refused") == "failed"
    (e,) = history.events(store)
    assert e.delivery == "failed" and e.last_error == "ConnectError: refused"


def test_the_console_reads_each_watch_with_its_last_round_and_new_stories(store):
    from storycheck_tui.store import reads

    watches.add_watch(store, "camp", ["ann", "bob"], every=900.0)
    watches.add_watch(store, "idle", ["zed"], every=60.0)
    watches.set_paused(store, "idle", True)
    _run_round(store, {"ann": _stories("a1", "a2"), "bob": _stories()})
    camp, idle = reads.watch_overview(store)
    assert (camp.name, camp.every, camp.profiles, camp.rounds, camp.new_stories) == ("camp", 900.0, 2, 1, 2)
    assert camp.last_round.state == "finished" and camp.last_round.succeeded == 2
    assert [s.story_id for s in camp.recent] == ["a2", "a1"] and camp.next_round_at > camp.last_round.created_at
    assert idle.paused and idle.last_round is None and idle.new_stories == 0
    assert [s.story_id for s in reads.new_stories_after(store, camp.recent[-1].event_id)] == ["a2"]
    assert [s.story_id for s in reads.story_history(store, "ann")] == ["a1", "a2"]


# --- the commands -------------------------------------------------------------------------------

def test_watch_events_and_history_commands(db_url, tmp_path, capsys):
    from helpers import cli
    from storycheck_tui.store.db import open_store

    (tmp_path / "w.txt").write_text("ann\nbob\n")
    db = ("--db", db_url)
    r = cli(capsys, "watch", "add", tmp_path / "w.txt", "--name", "camp", "--every", "15m",
            "--webhook", "http://hook:S3cretPw@127.0.0.1:9/h", *db)
    assert r.code == 0, r.err
    r = cli(capsys, "watch", "add", tmp_path / "w.txt", "--name", "bad", "--every", "15 minutes", *db)
    assert r.code == 2 and r.err.count("\n") == 1 and "not a duration" in r.err
    assert cli(capsys, "watch", "pause", "nope", *db).err.strip() == "storycheck: no watch named 'nope' (storycheck watch list)"
    r = cli(capsys, "watch", "list", "--json", *db)
    (row,) = [json.loads(line) for line in r.out.splitlines()]
    assert (row["name"], row["every"], row["profiles"], row["paused"]) == ("camp", "15m", 2, False)
    assert row["last_round"] is None and row["new_stories"] == 0
    assert "S3cretPw" not in r.out and "***" in row["webhook"]
    (tmp_path / "more.txt").write_text("cat\n")
    assert cli(capsys, "watch", "add-profiles", "camp", tmp_path / "more.txt", *db).code == 0
    assert cli(capsys, "watch", "set", "camp", "--every", "1h", "--webhook", "", *db).code == 0
    s = open_store(db_url)
    try:
        _run_round(s, {"ann": _stories("a1"), "bob": _stories(), "cat": Outcome("private")})
    finally:
        s.close()
    (row,) = [json.loads(line) for line in cli(capsys, "watch", "list", "--json", *db).out.splitlines()]
    assert row["last_round"]["state"] == "finished" and row["new_stories"] == 1 and row["every"] == "1h"
    assert "#1 finished 3/3" in cli(capsys, "watch", "list", *db).out
    r = cli(capsys, "batches", "--json", *db)
    assert json.loads(r.out.splitlines()[0])["watch"] == "camp"
    r = cli(capsys, "events", "--json", "--watch", "camp", *db)
    (ev,) = [json.loads(line) for line in r.out.splitlines()]
    assert {k: ev[k] for k in ("type", "watch", "username", "story_id", "delivery")} == {
        "type": "story.new", "watch": "camp", "username": "ann", "story_id": "a1", "delivery": "none"}
    assert set(ev) >= {"id", "taken_at", "at", "attempts", "last_error"}
    assert cli(capsys, "events", "--since", "1h", "--format", "csv", *db).out.splitlines()[1].split(",")[3] == "ann"
    r = cli(capsys, "history", "ann", "--json", *db)
    (h,) = [json.loads(line) for line in r.out.splitlines()]
    assert h["story_id"] == "a1" and h["first_seen"] and h["last_seen"] and h["watch"] == "camp"
    assert cli(capsys, "watch", "remove", "camp", *db).code == 0
    assert cli(capsys, "watch", "list", "--json", *db).out == ""
    r = cli(capsys, "watch", "secret")
    assert r.out.startswith("whsec_") and r.code == 0


def test_history_is_pruned_past_its_retention_and_events_are_kept(store):
    watches.add_watch(store, "w", ["ann"], every=3600.0)
    _run_round(store, {"ann": _stories("old", "new")})
    store.db.execute_sql("UPDATE watch_story SET last_seen = 1000 WHERE story_id = 'old'")
    assert history.prune_stories(store, 2000) == 1
    assert [s.story_id for s in history.history(store, "ann")] == ["new"]
    assert len(list(history.events(store))) == 2


def test_rounds_are_batches_named_after_their_watch_and_number(store):
    watches.add_watch(store, "camp", ["ann"], every=3600.0)
    _run_round(store, {"ann": _stories()})
    _make_due(store, "camp")
    _run_round(store, {"ann": _stories()})
    assert [(b.name, b.watch) for b in ops.list_batches(store)] == [("camp #1", "camp"), ("camp #2", "camp")]
    assert ops.find_batch(store, "camp #2").id == ops.list_batches(store)[1].id  # steerable by name


def test_a_receiver_that_never_answers_does_not_hold_up_the_checks(store, secret):
    """While the deliverer waits on a POST, no transaction is open: the next round's results are
    committed at once (on SQLite a transaction held over the POST would block every writer)."""
    from storycheck_tui.monitor.deliver import Deliverer
    from storycheck_tui.monitor.signing import parse_secret

    hold = threading.Event()
    rx = Receiver(secret, hold=hold)
    d = None
    try:
        watches.add_watch(store, "w", ["ann"], every=3600.0, webhook=rx.url)
        _run_round(store, {"ann": _stories("a1")})
        d = Deliverer(store, parse_secret(secret), poll=0.05).start()
        assert rx.holding.wait(10)  # the POST is in flight, unanswered
        _make_due(store, "w")
        done = threading.Event()
        threading.Thread(target=lambda: (_run_round(store, {"ann": _stories("a1", "a2")}), done.set()),
                         daemon=True).start()
        assert done.wait(10), "a round's finish waited for the webhook receiver"
        assert [e.story_id for e in history.events(store)] == ["a1", "a2"]
    finally:
        hold.set()
        if d:
            d.stop()
        rx.close()


def test_a_webhook_token_in_its_path_or_query_is_masked_wherever_the_url_is_shown(db_url, tmp_path, capsys):
    """Hooks carry their credentials in the path (``/T000/B000/XXXX``) or the query (``?token=``):
    `watch list` (text and JSON), `watch set`, the console's watch read and the delivery log
    show neither; the host stays, to say which hook it is."""
    import httpx

    from helpers import cli, fresh_logging, log_text
    from storycheck_tui.monitor.deliver import Deliverer
    from storycheck_tui.monitor.signing import new_secret, parse_secret
    from storycheck_tui.store import reads
    from storycheck_tui.store.db import open_store

    hook = "http://127.0.0.1:9/T000/B0b0Path/XyzPathToken?token=Qu3rySecret"
    (tmp_path / "w.txt").write_text("ann\n")
    db = ("--db", db_url)
    assert cli(capsys, "watch", "add", tmp_path / "w.txt", "--name", "camp", "--every", "1h",
               "--webhook", hook, *db).code == 0
    shown = [cli(capsys, "watch", "list", *db), cli(capsys, "watch", "list", "--json", *db),
             cli(capsys, "watch", "set", "camp", "--webhook", hook + "&x=1", *db)]
    text = "".join(r.out + r.err for r in shown)
    assert "http://127.0.0.1:9/***?***" in text, text
    s = open_store(db_url)
    try:
        (v,) = reads.watch_overview(s)
        assert v.webhook == "http://127.0.0.1:9/***?***"
        _run_round(s, {"ann": _stories("a1")})
        with fresh_logging(tmp_path / "logs") as setup, httpx.Client() as client:
            Deliverer(s, parse_secret(new_secret())).deliver_due(client)  # port 9 refuses: a failed try, logged
            logged = log_text(setup)
        assert "WEBHOOK_FAILED" in logged and "127.0.0.1:9/***?***" in logged, logged
    finally:
        s.close()
    for secret in ("B0b0Path", "XyzPathToken", "Qu3rySecret"):
        assert secret not in text and secret not in logged


@pytest.mark.parametrize("hook, shown, secret", [
    # a bot token in the first path segment
    ("http://127.0.0.1:9/bot123456:AAH-s3cretT0kenValue/sendMessage", "http://127.0.0.1:9/***", "AAH-s3cret"),
    # a private topic: the whole path is the credential
    ("http://127.0.0.1:9/my-private-topic", "http://127.0.0.1:9/***", "my-private-topic"),
])
def test_a_webhook_credential_in_its_first_path_segment_is_masked(db_url, tmp_path, capsys, hook, shown, secret):
    """`watch list`, the console's watch read and a WEBHOOK_FAILED record show the hook as its
    scheme, host and port and ``/***``: a token in the first segment is not shown either."""
    import httpx

    from helpers import cli, fresh_logging, log_text
    from storycheck_tui.monitor.deliver import Deliverer
    from storycheck_tui.monitor.signing import new_secret, parse_secret
    from storycheck_tui.store import reads
    from storycheck_tui.store.db import open_store

    (tmp_path / "w.txt").write_text("ann\n")
    db = ("--db", db_url)
    assert cli(capsys, "watch", "add", tmp_path / "w.txt", "--name", "camp", "--every", "1h",
               "--webhook", hook, *db).code == 0
    r = cli(capsys, "watch", "list", *db)
    text = r.out + r.err
    assert shown in text, text
    s = open_store(db_url)
    try:
        (v,) = reads.watch_overview(s)
        assert v.webhook == shown
        _run_round(s, {"ann": _stories("a1")})
        with fresh_logging(tmp_path / "logs") as setup, httpx.Client() as client:
            Deliverer(s, parse_secret(new_secret())).deliver_due(client)  # port 9 refuses: a failed try, logged
            logged = log_text(setup)
        assert "WEBHOOK_FAILED" in logged and shown in logged, logged
    finally:
        s.close()
    assert secret not in text and secret not in logged


def test_watch_list_says_a_due_round_waits_for_a_worker_when_none_runs(db_url, tmp_path, capsys):
    from helpers import cli
    from storycheck_tui.store import workers as registry
    from storycheck_tui.store.db import open_store

    (tmp_path / "w.txt").write_text("ann\n")
    db = ("--db", db_url)
    assert cli(capsys, "watch", "add", tmp_path / "w.txt", "--name", "camp", "--every", "1h", *db).code == 0
    assert "due (no worker running)" in cli(capsys, "watch", "list", *db).out  # due at once; nobody starts it
    s = open_store(db_url)
    try:
        registry.register_worker(s, registry.new_worker_id(), 4)
    finally:
        s.close()
    r = cli(capsys, "watch", "list", *db)
    assert "due now" in r.out and "no worker" not in r.out, r.out
    (row,) = [json.loads(line) for line in cli(capsys, "watch", "list", "--json", *db).out.splitlines()]
    assert row["next_round"] == "due now" and row["next_round_at"]
