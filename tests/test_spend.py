"""Spend: requests counted per batch and per result, shown, and a batch's request budget.

Real engine, real loopback story API, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from helpers import (  # noqa: F401  (fixtures)
    Engine, Reply, cli, counts_by_state, fast_settings, logsetup, sqlite_store, story_server, wait_for,
)
from storycheck_tui.config import Settings
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import Batch, Meta_
from storycheck_tui.store.spend import spend_of


def _answers(u: str, n: int) -> Reply:
    """ok*: stories (1 request); gone*: 404 (1 request); down*: 503 (every try)."""
    if u.startswith("gone"):
        return Reply(404, {"detail": "not found"})
    if u.startswith("down"):
        return Reply(503, {"error": "backend down"})
    return Reply(200, {"items": [{"pk": f"{u}-1", "taken_at": 1_775_658_675}]})


def test_requests_are_counted_per_batch_and_result_and_shown(tmp_path, logsetup, story_server, capsys):
    srv = story_server(_answers)
    users = [f"ok{i}" for i in range(5)] + ["gone1", "gone2", "down1"]
    with Engine(tmp_path, fast_settings(srv.source(), retry={"max_attempts": 3}), users) as eng:
        eng.done()
        sent = sum(srv.count(u) for u in users)
        b = eng.batch()
        assert b.requests == sent == 5 + 2 + 3
        assert spend_of(eng.store, b.id) == {"has_stories": 5, "source_unavailable": 3, "not_found": 2}
        from storycheck_tui.cli.run import print_summary

        capsys.readouterr()
        print_summary(eng.store, [b.id], 1.0)
        out = capsys.readouterr().out
        assert "requests sent 10: has_stories 5, source_unavailable 3, not_found 2" in out
    res = cli(capsys, "batches", "--json", "--db", str(tmp_path / "storycheck.db"))
    row = json.loads(res.out.splitlines()[0])
    assert row["requests"] == 10 and row["max_requests"] is None
    assert row["requests_by_result"] == {"has_stories": 5, "source_unavailable": 3, "not_found": 2}


def test_a_request_budget_pauses_the_batch_and_resume_goes_on(tmp_path, logsetup, story_server, capsys):
    srv = story_server(lambda u, n: Reply(200, {"items": []}, delay=0.02))
    users = [f"user{i:03d}" for i in range(60)]
    profiles = tmp_path / "p.txt"
    profiles.write_text("\n".join(users) + "\n")
    db = tmp_path / "storycheck.db"
    res = cli(capsys, "add", str(profiles), "--max-requests", "10", "--db", str(db))
    assert res.code == 0, res.err
    store = open_store(str(db))
    settings = fast_settings(srv.source())
    with Engine(tmp_path, settings, store=store) as eng:
        wait_for(lambda: eng.batch(1).state == "paused", 20, "the budget to pause the batch")
        b = eng.batch(1)
        assert b.state_reason.startswith("request budget spent:") and "--max-requests 10" in b.state_reason
        assert 10 <= b.requests < 10 + 3 * settings.engine.workers, b.requests
        assert sum(srv.count(u) for u in users) < len(users)  # it stopped well before the end
        [row] = [r for r in eng.logs("BATCH_PAUSED") if "request budget" in r.message]
        assert row.level == "WARNING"
        assert ops.resume(eng.store, 1)
        b = eng.done(1)
        assert b.max_requests is None and b.requests == len(users) == sum(srv.count(u) for u in users)
    res = cli(capsys, "add", str(profiles), "--max-requests", "0", "--db", str(db))
    assert res.code == 2 and "--max-requests must be at least 1" in res.err


def test_requests_of_a_check_handed_back_are_counted(tmp_path, logsetup, story_server):
    """A source refusing the credentials: each check that sent its request hands its job back
    (auth_failed) and the batch pauses; every request the server got is in the spend.
    Default settings (16 check threads: several requests go out before the pause lands)."""
    srv = story_server(lambda u, n: Reply(401, {"detail": "bad key"}, delay=0.05))
    users = [f"user{i:03d}" for i in range(100)]
    with Engine(tmp_path, Settings(source=srv.source()), users) as eng:
        wait_for(lambda: eng.batch().state == "paused", 20, "the refused credentials to pause the batch")
        wait_for(lambda: counts_by_state(eng.store, eng.batch_id) == {"pending": len(users)}, 20,
                 "every profile back to pending")
        sent = sum(srv.count(u) for u in users)
        assert sent >= 1
        wait_for(lambda: eng.batch().requests == sent, 10,
                 f"the {sent} requests sent to be counted")
        assert spend_of(eng.store, eng.batch_id) == {"auth_failed": sent}
        b = eng.batch()
        assert (b.completed_profiles, b.failed_checks) == (0, 0)


def test_a_version_3_database_gets_the_spend_columns(db_url):
    from playhouse.migrate import SchemaMigrator, migrate

    s = open_store(db_url)
    bid = ops.create_batch(s, "old", ["a", "b"])
    m = SchemaMigrator.from_database(s.db)
    migrate(m.drop_column("batch", "requests"), m.drop_column("batch", "max_requests"))
    s.db.execute_sql("DROP TABLE spend")
    Meta_.update(value="3").where(Meta_.key == "schema_version").execute()
    s.close()
    s = open_store(db_url)
    try:
        assert Meta_.get(Meta_.key == "schema_version").value == "8"
        b = Batch.get_by_id(bid)
        assert (b.name, b.total_profiles, b.requests, b.max_requests) == ("old", 2, 0, None)
        assert spend_of(s, bid) == {}
    finally:
        s.close()
