"""Monitoring end to end: real `storycheck worker` processes run the rounds of a watch while
the story server's stories change between rounds; events reach a webhook receiver that
verifies them with the Standard Webhooks reference library; kill -9 of a worker mid-round and
of the deliverer mid-POST never loses an event nor gives one story two event ids.

The story server and the receiver run in the test process (real HTTP on 127.0.0.1); workers
are subprocesses, polled through the database, never with blind sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


from helpers import Reply, StoryServer, wait_for
from storycheck_tui.monitor.signing import ENV_VAR, new_secret
from storycheck_tui.store import history, outbox, queue
from storycheck_tui.store.db import open_store
from test_monitor import Receiver


FAST = """
[proxies]
# direct checks are paced at one a second by default (to spare the source); a round of 12
# profiles every second or two needs more
rate = 200
burst = 20

[retry]
base_wait = 0.05
max_wait = 0.5

[engine]
workers = 4
lease_seconds = 3
claim_size = 4
commit_every = 0.1
heartbeat_every = 0.5
grace_seconds = 2
"""


def write_config(path: Path, base: str) -> Path:
    path.write_text(f"""[source]
url = "{base}/stories?u={{username}}"
items = "items"
health_url = "{base}/health"
timeout = 2.0
""" + FAST)
    return path


def start_worker(url: str, config: Path, log_dir: Path, secret: str) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    err = open(log_dir / f"worker-{time.monotonic_ns()}.err", "w+")
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(log_dir), "STORYCHECK_DB": "", ENV_VAR: secret}
    proc = subprocess.Popen([sys.executable, "-m", "storycheck_tui", "worker", "--db", url, "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=err, env=env)
    proc.err = err  # type: ignore[attr-defined]
    return proc


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        p.err.close()  # type: ignore[attr-defined]


def stderr_of(procs: list[subprocess.Popen]) -> str:
    out = []
    for p in procs:
        p.err.flush()  # type: ignore[attr-defined]
        p.err.seek(0)  # type: ignore[attr-defined]
        out.append(p.err.read()[-1500:])  # type: ignore[attr-defined]
    return " | ".join(out)


class Stories:
    """What the story server answers now: username -> story ids (changed by the test)."""

    def __init__(self, users: list[str], delay: float = 0.0):
        self.now: dict[str, list[str]] = {u: [] for u in users}
        self.delay = delay
        self.lock = threading.Lock()

    def respond(self, username: str, n: int) -> Reply:
        with self.lock:
            ids = list(self.now.get(username, []))
        taken = int(time.time()) - 60
        return Reply(200, {"items": [{"pk": i, "taken_at": taken} for i in ids]}, delay=self.delay)

    def post(self, username: str, story_id: str) -> None:
        with self.lock:
            self.now[username].append(story_id)

    def expire(self, username: str, story_id: str) -> None:
        with self.lock:
            self.now[username].remove(story_id)


def _cli(url: str, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "storycheck_tui", *argv, "--db", url], check=True, capture_output=True,
                   timeout=60, env={**os.environ, "STORYCHECK_DB": ""})


def scalar(store, sql: str, *params):
    return store.db.execute_sql(sql.replace("?", store.dialect.param), params).fetchone()[0]


def _story_events(store) -> list[tuple[str, str, int]]:
    return [(e.username, e.story_id, e.id) for e in history.events(store) if e.type == "story.new"]


def _rounds(store, name: str) -> list:
    from storycheck_tui.store import batches as ops

    return [b for b in ops.list_batches(store) if b.watch == name]


def test_two_workers_run_rounds_as_the_simulators_stories_change_and_deliver_each_story_once(db_url, tmp_path):
    """The simulator posts and expires stories between rounds (its control calls); two workers
    run the rounds every second (the shortest a watch allows): one event per story, one webhook
    id per story at the receiver, never two rounds of the watch at once."""
    from storycheck_tui.sim import SimConfig, Simulator

    users = [f"nostories_u{i}" for i in range(12)]
    secret = new_secret()
    rx = Receiver(secret)
    procs: list[subprocess.Popen] = []
    store = None
    posted: list[tuple[str, str]] = []
    with Simulator(SimConfig(rate=0)) as sim:
        try:
            for u in users[:6]:
                posted.append((u, sim.post_story(u)["pk"]))
            (tmp_path / "w.txt").write_text("\n".join(users) + "\n")
            _cli(db_url, "watch", "add", str(tmp_path / "w.txt"), "--name", "camp", "--every", "1s", "--webhook", rx.url)
            config = tmp_path / "w.toml"
            config.write_text(sim.config_snippet() + FAST)
            procs = [start_worker(db_url, config, tmp_path / "logs", secret) for _ in range(2)]
            store = open_store(db_url)
            wait_for(lambda: len(_story_events(store)) == 6, 30, lambda: "round 1 events: " + stderr_of(procs))
            # between rounds: two stories posted, one expired
            first = max(b.id for b in _rounds(store, "camp"))
            posted.append(("nostories_u0", sim.post_story("nostories_u0")["pk"]))
            posted.append(("nostories_u9", sim.post_story("nostories_u9")["pk"]))
            sim.expire_stories("nostories_u1")
            wait_for(lambda: len(_story_events(store)) == 8, 30, lambda: "new stories: " + stderr_of(procs))
            # rounds keep coming: let two more finish, then every event must be delivered
            wait_for(lambda: sum(b.state == "finished" and b.id > first + 1 for b in _rounds(store, "camp")) >= 2, 30,
                     lambda: "two more rounds: " + stderr_of(procs))
            wait_for(lambda: len(rx.received) >= 8 and all(e.delivery == "delivered" for e in history.events(store)),
                     30, lambda: f"delivery: {rx.received} {rx.rejected}")
        finally:
            stop(procs)
            rx.close()
    try:
        evs = _story_events(store)
        assert sorted((u, s) for u, s, _ in evs) == sorted(posted)  # one event per story, every round included
        assert not rx.rejected
        got: dict[tuple[str, str], set[str]] = {}
        for msg_id, payload in rx.received:  # as a receiver sees them: verified, one id per story
            got.setdefault((payload["username"], payload["story_id"]), set()).add(msg_id)
        assert all(len(ids) == 1 for ids in got.values()) and sorted(got) == sorted(posted)
        rounds = sorted(_rounds(store, "camp"), key=lambda b: b.id)
        for a, b in zip(rounds, rounds[1:]):  # never two rounds of one watch at once, whatever the workers
            assert a.finished_at is not None and b.created_at >= a.finished_at, (a, b)
        assert all(b.total == 12 for b in rounds)
    finally:
        store.close()


def test_kill_9_of_a_worker_mid_round_loses_and_duplicates_no_event(db_url, tmp_path):
    """The worker is killed while the round's checks are half done; a second worker finishes the
    round: every story has exactly one event (finish and events commit together)."""
    users = [f"user{i}" for i in range(24)]
    stories = Stories(users, delay=0.15)
    for u in users:
        stories.post(u, f"{u}-s1")
    secret = new_secret()
    server = StoryServer(stories.respond)
    procs: list[subprocess.Popen] = []
    store = open_store(db_url)
    try:
        (tmp_path / "w.txt").write_text("\n".join(users) + "\n")
        _cli(db_url, "watch", "add", str(tmp_path / "w.txt"), "--name", "once", "--every", "1d")
        config = write_config(tmp_path / "w.toml", server.base)
        victim = start_worker(db_url, config, tmp_path / "logs", secret)
        procs.append(victim)
        wait_for(lambda: len(_story_events(store)) >= 5, 30, lambda: "some events: " + stderr_of(procs))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        (r,) = _rounds(store, "once")
        assert r.state == "running" and r.completed < 24  # killed mid-round
        procs.append(start_worker(db_url, config, tmp_path / "logs", secret))
        wait_for(lambda: _rounds(store, "once")[0].state == "finished", 30, lambda: "round end: " + stderr_of(procs))
        evs = _story_events(store)
        assert sorted((u, s) for u, s, _ in evs) == sorted((u, f"{u}-s1") for u in users)
    finally:
        stop(procs)
        server.close()
        store.close()


def test_kill_9_of_the_deliverer_mid_post_redelivers_the_same_event_id(db_url, tmp_path):
    """The receiver has the POST but the worker dies before the answer: the event is posted
    again (after the delivery lease) with the same webhook-id; never a second id for it."""
    hold = threading.Event()
    secret = new_secret()
    rx = Receiver(secret, hold=hold)
    stories = Stories(["ann"])
    stories.post("ann", "ann-s1")
    server = StoryServer(stories.respond)
    procs: list[subprocess.Popen] = []
    store = open_store(db_url)
    try:
        (tmp_path / "w.txt").write_text("ann\n")
        _cli(db_url, "watch", "add", str(tmp_path / "w.txt"), "--name", "w", "--every", "1d", "--webhook", rx.url)
        config = write_config(tmp_path / "w.toml", server.base)
        procs.append(start_worker(db_url, config, tmp_path / "logs", secret))
        assert rx.holding.wait(30), stderr_of(procs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        hold.set()
        # The dead deliverer's claim holds the event for the default DELIVERY_LEASE (20 s): it
        # is checked to be that, then its end is moved to the past (the database clock's
        # "20 s later") instead of waiting it out. What expires it is the same row state.
        (claimed,) = history.events(store)
        left = scalar(store, "SELECT lease_until FROM event WHERE id = ?", claimed.id) - queue.now(store)
        assert outbox.DELIVERY_LEASE - 10 < left <= outbox.DELIVERY_LEASE, left
        store.db.execute_sql(f"UPDATE event SET lease_until = {store.dialect.param} WHERE id = {store.dialect.param}",
                             (queue.now(store) - 1, claimed.id))
        procs.append(start_worker(db_url, config, tmp_path / "logs", secret))
        wait_for(lambda: [e.delivery for e in history.events(store)] == ["delivered"], 60,
                 lambda: f"redelivery: {rx.received} " + stderr_of(procs))
        (event,) = history.events(store)
        assert [i for i, _p in rx.received] == [str(event.id), str(event.id)]  # the same id, twice
        assert not rx.rejected
    finally:
        hold.set()
        stop(procs)
        server.close()
        rx.close()
        store.close()
