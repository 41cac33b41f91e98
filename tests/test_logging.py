"""The ONE logging setup: idempotent, one line per record, secrets scrubbed everywhere it
writes (file, ring, batch_log), bounded buffers."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading

import pytest

from helpers import sqlite_store
from storycheck_tui import logs
from storycheck_tui.masking import secrets
from storycheck_tui.store import logrows
from storycheck_tui.store.models import BatchLog

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")


@pytest.fixture
def fresh(tmp_path):
    logs.reset_logging()
    yield tmp_path / "logs"
    logs.reset_logging()


def file_lines(setup: logs.Logging) -> list[str]:
    for h in logs.log.handlers:
        h.flush()
    return setup.file_path.read_text(encoding="utf-8").splitlines()


def test_setup_logging_is_idempotent(fresh, tmp_path):
    root_before = list(logging.getLogger().handlers)
    first = logs.setup_logging(fresh)
    handlers = list(logs.log.handlers)
    assert len(handlers) == 3 and first.file_path == fresh / "storycheck.log"
    again = logs.setup_logging(tmp_path / "other", stderr_level=logging.DEBUG)
    assert again is first and logs.log.handlers == handlers
    assert not (tmp_path / "other").exists()
    assert logging.getLogger().handlers == root_before and logs.log.propagate is False
    # one record is written once, not once per setup call
    logs.event(logging.INFO, logs.BATCH_CREATED, "only once", batch_id=1)
    assert sum("only once" in line for line in file_lines(first)) == 1
    assert len([e for e in first.ring.snapshot() if e.message == "only once"]) == 1
    assert len([e for e in first.sink.drain() if e.message == "only once"]) == 1


def test_setup_logging_from_many_threads_installs_one_set(fresh):
    barrier = threading.Barrier(8)
    got = []

    def setup() -> None:
        barrier.wait()
        got.append(logs.setup_logging(fresh))

    threads = [threading.Thread(target=setup) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(s is got[0] for s in got)
    assert len(logs.log.handlers) == 3


FORGED = "2099-01-01 00:00:00 INFO    STORY_CHECK_SUCCESS forged: all profiles checked"


def test_a_username_with_a_newline_cannot_forge_a_line(fresh):
    setup = logs.setup_logging(fresh)
    logs.event(logging.INFO, logs.STORY_CHECK_SUCCESS, "evil\n" + FORGED, batch_id=1, job_id=2,
               username="evil\n" + FORGED, proxy="http://h:1\r\n" + FORGED, details={"note": "x\n" + FORGED})
    logs.event(logging.ERROR, logs.CHECK_FAILED, "with a carriage return\r" + FORGED, username="u\u2028" + FORGED)
    try:
        raise ValueError("boom\n" + FORGED)
    except ValueError:
        logs.log.error("unexpected\n" + FORGED, exc_info=True, extra={"event": logs.CHECK_FAILED, "username": "v"})
    lines = file_lines(setup)
    records = [ln for ln in lines if not ln.startswith("  | ")]
    assert len(records) == 3, lines
    assert all(STAMP.match(ln) for ln in records), lines
    assert not any(ln.startswith(FORGED[:19]) for ln in lines)
    assert all(ln.startswith("  | ") for ln in lines if not STAMP.match(ln))
    assert "evil\\n2099-01-01" in records[0] and "username=evil\\n2099" in records[0]
    # the ring and the batch_log entries: messages, proxies and details are one line each; the
    # username is data (kept literally for the console, which escapes it when it draws)
    for e in setup.ring.snapshot() + setup.sink.drain():
        assert "\n" not in e.message and "\r" not in e.message, e
        assert "\n" not in (e.proxy or "") and "\n" not in str(e.details or ""), e
    assert setup.ring.snapshot()[0].username == "evil\n" + FORGED


def test_secrets_are_scrubbed_from_file_ring_and_batch_log(fresh, tmp_path):
    secret = "T0pS3cret-value-8842"
    secrets.add(secret)
    setup = logs.setup_logging(fresh)
    logs.event(logging.WARNING, logs.PROXY_FAILOVER, f"proxy http://bob:{secret}@10.0.0.1:8080 failed; key {secret}",
               batch_id=7, job_id=1, username="alice", proxy=f"http://bob:{secret}@10.0.0.1:8080",
               details={"response": f"echo x-access-key: {secret}"})
    logs.event(logging.WARNING, logs.PROXY_FAILOVER, "proxy http://carol:an0ther-pw-1@10.0.0.2:8080 failed",
               batch_id=7)  # not registered: masked by its URL form
    try:
        raise RuntimeError(f"connect to http://bob:{secret}@10.0.0.1:8080 failed")
    except RuntimeError:
        logs.log.error("crash", exc_info=True, extra={"event": "ENGINE_CRASH", "batch_id": 7})
    text = "\n".join(file_lines(setup))
    ring = repr(setup.ring.snapshot())
    entries = setup.sink.drain()
    assert len(entries) == 3
    store = sqlite_store(tmp_path)
    try:
        logrows.store_logs(store, entries)
        stored = repr([r.__data__ for r in BatchLog.select()])
    finally:
        store.close()
    for where, out in (("file", text), ("ring", ring), ("batch_log", stored)):
        assert secret not in out and "an0ther-pw-1" not in out, where
        assert "http://bob:***@10.0.0.1:" in out and "http://carol:***@10.0.0.2:" in out, where
        assert "crash" in out and "RuntimeError" in out, where


def test_only_batch_records_go_to_the_sink(fresh):
    setup = logs.setup_logging(fresh, debug=True)
    logs.event(logging.INFO, logs.BATCH_CREATED, "batch one", batch_id=1)
    logs.event(logging.INFO, logs.PROXY_RECOVERED, "no batch")
    logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, "debug of a batch", batch_id=1)
    logs.log.info("already stored", extra={"event": logs.STORY_CHECK_SUCCESS, "batch_id": 1, "persisted": True})
    assert [e.message for e in setup.sink.drain()] == ["batch one"]
    assert [e.message for e in setup.ring.snapshot()] == ["batch one", "no batch", "debug of a batch", "already stored"]


def test_an_event_record_is_the_record_the_logging_library_makes(fresh):
    """event() makes its records without LogRecord.__init__ (the writer makes one per check):
    attribute for attribute they are what Logger.makeRecord makes, in this thread and another,
    and a field that would overwrite one of the record's own attributes is refused as makeRecord
    refuses it; a record factory of someone else's is used when set."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logs.setup_logging(fresh, file=False)
    logs.log.addHandler(Keep())
    fields = {"batch_id": 3, "job_id": 9, "username": "alice", "proxy": "proxy 1", "persisted": True}

    def one() -> None:
        logs.event(logging.WARNING, logs.RETRY_SCHEDULED, "alice: retrying", **fields)

    one()
    worker = threading.Thread(target=one, name="check-7")
    worker.start()
    worker.join()
    for record, thread in zip(seen, (threading.current_thread(), worker)):
        made = logs.log.makeRecord(logs.LOGGER_NAME, logging.WARNING, "(unknown file)", 0, "alice: retrying", (), None,
                                   "(unknown function)", dict(fields, event=logs.RETRY_SCHEDULED))
        made.thread, made.threadName = thread.ident, thread.name
        mine = {k: v for k, v in vars(record).items() if not k.startswith("_sc_")}  # the ring's number
        theirs = vars(made)
        assert mine.keys() == theirs.keys()
        assert {k: v for k, v in mine.items() if k not in ("created", "msecs", "relativeCreated")} == \
            {k: v for k, v in theirs.items() if k not in ("created", "msecs", "relativeCreated")}
        assert abs(record.created - made.created) < 5 and record.msecs == int((record.created % 1) * 1000)
    with pytest.raises(KeyError):
        logs.event(logging.INFO, logs.BATCH_CREATED, "x", lineno=3)

    class Mine(logging.LogRecord):
        pass

    logging.setLogRecordFactory(Mine)
    try:
        logs.event(logging.INFO, logs.BATCH_CREATED, "batch one", batch_id=1)
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
    assert type(seen[-1]) is Mine and seen[-1].batch_id == 1


def test_records_logged_together_reach_every_handler_in_order(fresh):
    """logs.events() (the writer's result records, one call per group commit) hands its records
    to the ring, the batch-log sink and the log file's queue in one call each: every record
    reaches each of them, in order, levels mixed, secrets masked, as event() one by one would."""
    setup = logs.setup_logging(fresh)
    before = secrets.values()
    secrets.add("s3cr3t-key")
    try:
        logs.event(logging.INFO, logs.BATCH_CREATED, "before", batch_id=1)
        logs.events([
            (logging.INFO, logs.STORY_CHECK_SUCCESS, "alice: no stories", {"batch_id": 1, "job_id": 1, "persisted": True}),
            (logging.ERROR, logs.CHECK_FAILED, "bob: failed via s3cr3t-key", {"batch_id": 1, "job_id": 2, "proxy": "p"}),
            (logging.DEBUG, logs.STORY_CHECK_STARTED, "carol: checking", {"batch_id": 1}),  # not enabled: not made
            (logging.INFO, logs.STORY_CHECK_SUCCESS, "dave: 2 active stories", {"batch_id": 1, "job_id": 4}),
        ])
        logs.event(logging.INFO, logs.BATCH_FINISHED, "after", batch_id=1)
        expected = ["before", "alice: no stories", "bob: failed via ***", "dave: 2 active stories", "after"]
        ring = setup.ring.snapshot()
        assert [e.message for e in ring] == expected
        assert [e.seq for e in ring] == sorted(e.seq for e in ring)
        assert [e.level for e in ring] == ["INFO", "INFO", "ERROR", "INFO", "INFO"]
        assert [e.message for e in setup.sink.drain()] == [m for m in expected if m != "alice: no stories"]
        lines = [ln for ln in file_lines(setup) if " BATCH_" in ln or "CHECK" in ln]
        assert [re.match(r"^\S+ \S+ \S+ +\S+ (.*?)(?: \(.*\))?$", ln).group(1) for ln in lines] == expected
        assert "s3cr3t" not in "".join(lines) and "job_id=2 proxy=p" in lines[2]
    finally:
        secrets.restore(before)


def test_debug_records_are_made_only_when_asked_for(fresh):
    setup = logs.setup_logging(fresh)
    logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, "alice: checking", batch_id=1, job_id=7)
    logs.event(logging.INFO, logs.BATCH_CREATED, "batch one", batch_id=1)
    assert [e.message for e in setup.ring.snapshot()] == ["batch one"]
    assert not any("STORY_CHECK_STARTED" in ln for ln in file_lines(setup))
    assert logs.setup_logging(fresh, debug=True) is setup  # e.g. a later --debug: turned on, nothing added
    logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, "bob: checking", batch_id=1, job_id=8)
    assert [e.message for e in setup.ring.snapshot()] == ["batch one", "bob: checking"]
    assert [ln for ln in file_lines(setup) if "STORY_CHECK_STARTED" in ln][0].endswith(
        "bob: checking (batch_id=1 job_id=8)")


def test_ring_is_bounded_and_drains_by_sequence(fresh):
    ring = logs.LogRing(capacity=50)
    for i in range(120):
        ring.emit(logging.makeLogRecord({"name": "storycheck", "msg": f"m{i}", "levelname": "INFO",
                                         "levelno": logging.INFO}))
    snap = ring.snapshot()
    assert len(snap) == 50 and [e.message for e in snap] == [f"m{i}" for i in range(70, 120)]
    seqs = [e.seq for e in snap]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert [e.message for e in ring.since(seqs[-3])] == ["m118", "m119"]
    assert ring.since(seqs[-1]) == []
    assert len(ring.since(0)) == 50  # what was dropped is gone; nothing grows
    # the ring installed by setup_logging is bounded too
    setup = logs.setup_logging(fresh, debug=True)
    cap = setup.ring._buf.maxlen
    assert cap is not None and cap <= 10_000
    for i in range(cap + 200):
        logs.event(logging.DEBUG, logs.STORY_CHECK_STARTED, f"n{i}")
    snap = setup.ring.snapshot()
    assert len(snap) == cap and snap[-1].message == f"n{cap + 199}"


# --- the log file cannot be redirected or read by others (issue 15, item 7) ---------------------

def _mode(path) -> int:
    return os.stat(path, follow_symlinks=False).st_mode & 0o777


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlink_planted_as_the_log_file_is_refused(fresh, tmp_path, dangling):
    """A shared, world-writable log directory: someone plants storycheck.log -> a file of the
    user's (or where one would be created). The link is neither followed nor written through:
    the file is disabled, with a warning that says why."""
    fresh.mkdir(mode=0o777)
    os.chmod(fresh, 0o777)
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious\n")
    (fresh / "storycheck.log").symlink_to(victim)
    setup = logs.setup_logging(fresh)
    logs.event(logging.WARNING, logs.CHECK_FAILED, "must not land in the victim")
    for h in logs.log.handlers:
        h.flush()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "precious\n"
    assert setup.file_path is None
    said = [e.message for e in setup.ring.snapshot() if e.event == logs.LOG_FILE_UNSAFE]
    assert any("log file disabled" in m and "symbolic link" in m for m in said), said
    assert _mode(fresh) == 0o700  # the loose directory of ours was tightened first


def test_a_loose_log_directory_and_file_are_tightened_with_a_warning(fresh, capsys):
    fresh.mkdir()
    os.chmod(fresh, 0o777)
    (fresh / "storycheck.log").write_text("older line\n")
    os.chmod(fresh / "storycheck.log", 0o666)
    setup = logs.setup_logging(fresh, stderr_level=logging.CRITICAL)  # as a headless command
    logs.event(logging.INFO, logs.BATCH_CREATED, "appended")
    assert setup.file_path == fresh / "storycheck.log"
    assert _mode(fresh) == 0o700 and _mode(setup.file_path) == 0o600
    lines = file_lines(setup)
    assert lines[0] == "older line" and lines[-1].endswith("appended")
    assert any("mode 0777" in ln and "set to 0700" in ln for ln in lines), lines
    assert any("mode 0666" in ln and "set to 0600" in ln for ln in lines), lines
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(ln.startswith("storycheck: warning: log ") for ln in err), err


def test_a_writable_log_directory_of_another_user_is_refused(fresh):
    if os.geteuid() != 0:
        pytest.skip("needs to give the directory to another user (root only)")
    fresh.mkdir()
    os.chown(fresh, 65534, 65534)
    os.chmod(fresh, 0o777)
    setup = logs.setup_logging(fresh)
    assert setup.file_path is None and not (fresh / "storycheck.log").exists()
    said = [e.message for e in setup.ring.snapshot() if e.event == logs.LOG_FILE_UNSAFE]
    assert any("others may write in it" in m for m in said), said
    assert _mode(fresh) == 0o777  # not ours to change
    # a sticky one (like /tmp) is used: others cannot replace or remove the file there
    logs.reset_logging()
    os.chmod(fresh, 0o1777)
    setup = logs.setup_logging(fresh)
    logs.event(logging.INFO, logs.BATCH_CREATED, "in a sticky directory")
    assert setup.file_path == fresh / "storycheck.log" and file_lines(setup)[-1].endswith("in a sticky directory")


def test_a_hard_link_or_a_fifo_planted_as_the_log_file_is_refused(fresh, tmp_path):
    fresh.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.link(victim, fresh / "storycheck.log")
    setup = logs.setup_logging(fresh)
    logs.event(logging.WARNING, logs.CHECK_FAILED, "must not land in the victim")
    assert setup.file_path is None and victim.read_text() == "precious\n"
    logs.reset_logging()
    (fresh / "storycheck.log").unlink()
    os.mkfifo(fresh / "storycheck.log")
    setup = logs.setup_logging(fresh)  # returns: the open does not wait for a reader
    assert setup.file_path is None


def test_records_queued_before_exit_reach_the_file(tmp_path):
    """The file is written by a background thread: a process that logs and exits at once
    (no flush of its own) still has every record on disk."""
    script = ("import logging, sys; from storycheck_tui import logs; logs.setup_logging(sys.argv[1]);\n"
              "for i in range(5000): logs.event(logging.INFO, logs.BATCH_CREATED, f'record {i}', batch_id=1)\n")
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "logs" / "storycheck.log").read_text().splitlines()
    assert len(lines) == 5000 and lines[-1].endswith("record 4999 (batch_id=1)")


def test_flush_returns_with_everything_logged_before_it_while_threads_keep_logging(fresh):
    """The file is written by the queue's thread: flush() is the point where what was logged
    before it is on disk, even while 8 threads keep logging (they queue up behind it)."""
    setup = logs.setup_logging(fresh)
    stop = threading.Event()

    def chatter(n: int) -> None:
        i = 0
        while not stop.is_set():
            logs.event(logging.INFO, logs.BATCH_CREATED, f"t{n} r{i}")
            i += 1

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        for k in range(5):
            logs.event(logging.WARNING, logs.CHECK_FAILED, f"marker {k}")
            done = threading.Event()
            flusher = threading.Thread(target=lambda: ([h.flush() for h in logs.log.handlers], done.set()))
            flusher.start()
            assert done.wait(10), "flush did not return while other threads kept logging"
            assert f"marker {k}" in setup.file_path.read_text(encoding="utf-8")
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_records_logged_together_rotate_the_file_at_its_size_in_order(fresh, monkeypatch):
    """Records queued together (logs.events) are written as one piece while they fit: the file
    still rotates before it passes maxBytes, and every record is in one of the files, in order."""
    from storycheck_tui.logfile import OwnerOnlyRotatingFile

    setup = logs.setup_logging(fresh)
    setup.file_handler.maxBytes = 3000
    for n in range(40):
        logs.events([(logging.INFO, logs.STORY_CHECK_SUCCESS, f"user{n:02d}{i}: no stories",
                      {"batch_id": 1, "job_id": 10 * n + i, "persisted": True}) for i in range(10)])
    for h in logs.log.handlers:
        h.flush()
    files = sorted(fresh.glob("storycheck.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    assert len(files) == 6 and isinstance(setup.file_handler, OwnerOnlyRotatingFile)  # 5 backups, rotated past
    assert all(p.stat().st_size <= 3000 for p in files), [p.stat().st_size for p in files]
    lines = [ln for p in files for ln in p.read_text(encoding="utf-8").splitlines()]
    jobs = [int(re.search(r"job_id=(\d+)", ln).group(1)) for ln in lines if "STORY_CHECK_SUCCESS" in ln]
    assert jobs == list(range(400 - len(jobs), 400)) and len(jobs) > 60


def test_the_file_rotates_at_its_size_and_keeps_every_record_in_order(tmp_path):
    """The file's thread writes to the stream's buffer and counts the size itself: the file
    still rotates before it passes maxBytes, and every record is in one of the files, in order."""
    from storycheck_tui.logfile import FileQueue, OwnerOnlyRotatingFile, private_dir

    private_dir(tmp_path / "logs")
    path = tmp_path / "logs" / "storycheck.log"
    handler = OwnerOnlyRotatingFile(path, maxBytes=2000, backupCount=20, encoding="utf-8")
    handler.setFormatter(logs.LineFormatter())
    fq = FileQueue(handler)
    logger = logging.Logger("rotation-test")
    logger.addHandler(fq)
    try:
        for i in range(200):
            logger.info("record %03d of the rotation test", i, extra={"event": logs.BATCH_CREATED})
        fq.flush()
        files = sorted(tmp_path.joinpath("logs").glob("storycheck.log*"),
                       key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
        assert len(files) > 5
        assert all(p.stat().st_size <= 2000 for p in files), [p.stat().st_size for p in files]
        lines = [ln for p in files for ln in p.read_text(encoding="utf-8").splitlines()]
        assert [ln.rpartition("record ")[2][:3] for ln in lines] == [f"{i:03d}" for i in range(200)]
    finally:
        fq.close()
