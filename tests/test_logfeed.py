"""The console's log feed: this process's records and the batch_log table, each record once."""

from __future__ import annotations

import logging

from helpers import logsetup  # noqa: F401  (fixture)
from storycheck_tui import logs
from storycheck_tui.engine.batchboard import BatchBoard
from storycheck_tui.engine.writer import Writer
from storycheck_tui.sources.base import Outcome
from storycheck_tui.states import JobState
from storycheck_tui.store import batches as ops
from storycheck_tui.store import queue as q
from storycheck_tui.store import reads
from storycheck_tui.ui.logfeed import LogFeed


def test_results_written_by_this_process_are_shown_once(store, logsetup):  # noqa: F811
    """The writer stores a result's row in its transaction, stamped with the database clock,
    and logs the record after the commit, stamped with the local clock: the feed shows the
    record from the ring and does not show its row again when the table's tail brings it
    (the demo's log pane showed nearly every result twice); a row of another process is shown."""
    users = [f"user{i}" for i in range(5)]
    batch = ops.create_batch(store, "b", users)
    writer = Writer(store, "w1", BatchBoard(store, lambda: None), logsetup.sink, commit_every=1.0)
    claimed = q.claim(store, "w1", 30, 100, [batch])
    writer.claims.put(claimed)
    for c in claimed:
        writer.results.put(q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=Outcome("no_stories"),
                                       http_status=200, latency_ms=1.0, tries=1))
    feed = LogFeed(logsetup.ring)
    feed.from_db(reads.log_tail(store, None))  # the tail starts (empty table)
    writer.flush()
    logs.event(logging.WARNING, "LEASE_EXPIRED", "from the ring only: no batch")
    shown = [e.message for e in feed.from_ring()]
    assert sum(u in m for u in users for m in shown) == 5, shown
    store.db.execute_sql("INSERT INTO batch_log (created, level, event, batch, message) VALUES (1.5, 'INFO', 'X', "
                         f"{batch}, 'user0: no stories from another worker')")
    lines, more = feed.from_db(reads.log_tail(store, feed.db_after))
    shown += [e.message for e in lines]
    for u in users:
        assert sum(m.startswith(f"{u}:") for m in shown) == (2 if u == "user0" else 1), shown
    assert sum("finished" in m for m in shown) == 1, shown
    assert [e.message for e in lines] == ["user0: no stories from another worker"] and not more
