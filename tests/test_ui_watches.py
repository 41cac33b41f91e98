"""The console's monitoring views, driven with Textual's Pilot over a real SQLite database whose
watches, rounds, story history and events are made by the store's own functions (a round is
claimed and finished as a worker does: the history and the events come from the fenced finish).

* ``w``: the watch view (interval, next round, last round's summary, new stories), live;
* the result detail shows the profile's story history.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from pilot import screen_text, until
from storycheck_tui.config import Settings
from storycheck_tui.engine.wiring import build_runner
from storycheck_tui.logs import LogRing
from storycheck_tui.sources.base import Outcome, Story
from storycheck_tui.states import JobState, OutcomeKind
from storycheck_tui.store import queue as q
from storycheck_tui.store import reads, watches
from storycheck_tui.store.db import open_store
from storycheck_tui.store.models import Watch
from storycheck_tui.ui import keymap
from storycheck_tui.ui.app import StorycheckApp
from storycheck_tui.ui.commands import commands
from storycheck_tui.ui.modals.watches import NewStoriesTable, WatchesScreen, WatchesTable

SIZE = (120, 40)
TAKEN = 1_767_000_000.0  # 2025-12-29 09:20:00 UTC


def stories(*ids: str) -> Outcome:
    return Outcome(OutcomeKind.HAS_STORIES if ids else OutcomeKind.NO_STORIES,
                   stories=tuple(Story(i, TAKEN + n * 60) for n, i in enumerate(ids)))


def run_round(store, name: str, answers: dict[str, Outcome], *, check: int | None = None) -> int:
    """Start ``name``'s round now and finish ``check`` of its jobs (all: None) as a worker does."""
    Watch.update(next_round_at=0.0).where(Watch.name == name).execute()
    (r,) = [r for r in watches.start_due_rounds(store) if r.watch == name]
    claimed = q.claim(store, "w1", 30, check or 1000, [r.batch_id])
    q.finish(store, "w1", [q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=answers[c.username], http_status=200,
                                       tries=1) for c in claimed])
    return r.batch_id


def finish_round(store, name: str, answers: dict[str, Outcome]) -> None:
    """Check the rest of ``name``'s running round as a worker does."""
    (r,) = [r for r in watches.list_watches(store) if r.name == name]
    claimed = q.claim(store, "w1", 30, 1000, [r.last_round])
    q.finish(store, "w1", [q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=answers[c.username], http_status=200,
                                       tries=1) for c in claimed])


@pytest.fixture
def console(tmp_path):
    store = open_store(str(tmp_path / "watch.db"))
    runners = []

    def make(**kw) -> StorycheckApp:
        runner = build_runner(store, Settings(), workers=0)  # watch-only: rounds come from this test
        runner.start()
        runners.append(runner)
        return StorycheckApp(runner, store, LogRing(), refresh_every=0.1, **kw)

    yield store, make
    for r in runners:
        r.stop(0)
    store.close()


def asyncio_test(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return run


@asyncio_test
async def test_w_shows_each_watch_live_with_its_next_round_last_round_and_new_stories(console):
    store, make = console
    watches.add_watch(store, "campaign", ["ann", "bob", "cat"], every=900.0,
                      webhook="http://u:hunter2@10.0.0.5/in")
    watches.add_watch(store, "brands", ["acme"], every=3600.0)
    watches.set_paused(store, "brands", True)
    run_round(store, "campaign", {"ann": stories("a1"), "bob": stories(), "cat": Outcome(OutcomeKind.PRIVATE)})
    Watch.update(next_round_at=q.now(store) + 600).where(Watch.name == "campaign").execute()
    app = make()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("w")
        assert isinstance(app.screen, WatchesScreen)
        table = app.screen.query_one(WatchesTable)
        await until(pilot, lambda: table.row_count == 2, "both watches")
        text = screen_text(app)
        assert "in 10m00s" in text or "in 9m5" in text
        for expected in ("campaign", "15m", "#1", "finished", "3/3", "brands", "1h", "paused",
                         "http://10.0.0.5/***", "New stories in campaign", "ann", "a1",
                         "2025-12-29 "):
            assert expected in text, expected
        assert "hunter2" not in text

        # a second round while the view is open: it shows within a read or two, and a toast says so
        run_round(store, "campaign", {"ann": stories("a1", "a2"), "bob": stories("b1"), "cat": stories()}, check=2)
        await until(pilot, lambda: "#2" in screen_text(app) and "running" in screen_text(app), "round 2 running")
        stories_table = app.screen.query_one(NewStoriesTable)
        await until(pilot, lambda: stories_table.row_count == 2, "round 2's two new stories")
        text = screen_text(app)
        assert "2/3" in text and "a2" in text and "b1" in text and "a1" not in text.split("New stories in")[1]
        assert not any("new stor" in str(t.render()) for t in app.screen.query("Toast"))  # said when the round ends
        finish_round(store, "campaign", {"cat": stories()})
        await until(pilot, lambda: any("2 new stories in watch 'campaign': ann, bob" in str(t.render())
                                       for t in app.screen.query("Toast")), "the new-stories toast")

        # sorting by a column keeps the rows and marks the header
        await pilot.press("s")
        await pilot.pause()
        assert table.sort_key == "name" and table.row_keys() == ["brands", "campaign"]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WatchesScreen)


@asyncio_test
async def test_a_read_only_console_shows_the_watch_view_and_its_key(console):
    store, make = console
    app = make(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        assert "w Watches" in screen_text(app), "the key is in the footer"
        await pilot.press("w")
        assert isinstance(app.screen, WatchesScreen)
        await until(pilot, lambda: "no watches yet: storycheck watch add" in screen_text(app), "the empty view")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WatchesScreen)
    # the palette of a read-only console offers it (help lists every binding: test_ui)
    assert keymap.WATCHES in [b for _, _, b in commands(read_only=True)]


@asyncio_test
async def test_the_result_detail_shows_the_profile_story_history(console):
    from storycheck_tui.store import batches as ops
    from storycheck_tui.ui.modals.detail import DetailScreen
    from storycheck_tui.ui.panes.batches import BatchesPane
    from storycheck_tui.ui.panes.results import ResultsPane

    store, make = console
    watches.add_watch(store, "campaign", ["ann", "bob"], every=900.0)
    run_round(store, "campaign", {"ann": stories("a1"), "bob": stories()})
    second = run_round(store, "campaign", {"ann": stories("a1", "a2"), "bob": stories()})
    plain = ops.create_batch(store, "plain", ["zed"])
    app = make()
    async with app.run_test(size=SIZE) as pilot:

        async def open_detail(batch_id: int, username: str) -> str:
            app.main.query_one(BatchesPane).select(batch_id)
            pane = app.main.query_one(ResultsPane)
            await until(pilot, lambda: pane.window is not None and pane.window.batch_id == batch_id
                        and any(j.username == username for j in pane.window.rows), f"{username} in the results")
            pane.focus_target()
            pane.target().move_cursor(row=next(i for i, j in enumerate(pane.window.rows) if j.username == username),
                                      animate=False)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DetailScreen) and "Attempt history" in screen_text(app),
                        f"{username}'s detail")
            return screen_text(app)

        text = await open_detail(second, "ann")
        assert "Story history (2, watch campaign)" in text
        for expected in ("a1", "a2", "2025-12-29 09:20:00", "2025-12-29 09:21:00", "First seen", "Last seen"):
            assert expected in text, expected
        assert text.index("a2") < text.index("a1"), "newest first"
        await pilot.press("escape")
        await pilot.pause()
        text = await open_detail(plain, "zed")
        assert "Story history" not in text, "no section for a profile no watch has seen"


@asyncio_test
async def test_the_first_round_of_a_watch_is_one_toast_not_one_per_story(console):
    """Every story of a watch's first round is new: 30 stories make one toast when the round
    ends, not 30 (nor one per read while it runs)."""
    store, make = console
    names = [f"user{i:02d}" for i in range(30)]
    watches.add_watch(store, "launch", names, every=900.0)
    app = make()

    def said() -> list[str]:
        return [str(t.render()) for t in app.screen.query("Toast") if "new stor" in str(t.render())]

    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.alerts.story_after is not None, "the alerts to start")  # nothing older is news
        run_round(store, "launch", {u: stories(f"{u}-s") for u in names}, check=10)
        last = reads.last_event_id(store)
        await until(pilot, lambda: app.alerts.story_after == last, "the first 10 stories read")
        assert said() == []  # the round runs on: nothing said yet
        finish_round(store, "launch", {u: stories(f"{u}-s") for u in names})
        toast = "30 new stories in watch 'launch': user00, user01, user02 and 27 more"
        await until(pilot, lambda: said(), "the toast")
        last = reads.last_event_id(store)
        await until(pilot, lambda: app.alerts.story_after == last, "every story read")
        assert said() == [toast]


@asyncio_test
async def test_a_due_watch_says_no_worker_while_none_runs_to_start_its_round(console):
    from storycheck_tui.store import workers as registry

    store, make = console
    watches.add_watch(store, "campaign", ["ann"], every=900.0)  # due at once
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await until(pilot, lambda: "no worker" in screen_text(app), "no worker for the due round")
        assert "1 due, no worker running to start them" in screen_text(app)
        registry.register_worker(store, registry.new_worker_id(), 4)
        await until(pilot, lambda: "due now" in screen_text(app), "due now once a worker runs")
        assert "no worker" not in screen_text(app)
