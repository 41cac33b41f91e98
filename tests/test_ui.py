"""The operator console, driven with Textual's Pilot: every key action, and what it did to the
engine and the database afterwards (not only to the screen).

Most tests run on a copy of the fixed sample database (``storycheck_tui.ui.sample``) with a
watch-only runner and the redraw timer off; the ones about quitting, re-validating and
other processes run a real engine with a fake story source.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import logging
import time
from pathlib import Path

import pytest
from rich.text import Text

from helpers import wait_for
from pilot import screen_strips, screen_text, until
from storycheck_tui.config import EngineSettings, ProxySettings, Settings
from storycheck_tui.engine.wiring import build_runner
from storycheck_tui.inputs.proxies import ProxySpec
from storycheck_tui.logs import LogEntry, LogRing
from storycheck_tui.sources.base import Outcome
from storycheck_tui.store import batches as ops
from storycheck_tui.store import reads
from storycheck_tui.store.models import Batch, Event, Job, Proxy, Worker
from storycheck_tui.ui import keymap
from storycheck_tui.ui.app import StorycheckApp
from storycheck_tui.ui.commands import commands
from storycheck_tui.ui.logfeed import LOG_CAP_PER_TICK, LogFeed
from storycheck_tui.ui.modals.confirm import ConfirmScreen
from storycheck_tui.ui.modals.detail import DetailScreen
from storycheck_tui.ui.modals.export import ExportScreen
from storycheck_tui.ui.modals.help import HelpScreen
from storycheck_tui.ui.modals.new_batch import NewBatchScreen
from storycheck_tui.ui.panes.batches import BatchesPane
from storycheck_tui.ui.panes.logview import LogPane, LogView
from storycheck_tui.ui.panes.proxies import ProxiesPane
from storycheck_tui.ui.panes.results import ResultsPane
from storycheck_tui.ui.sample import FIXED_NOW, sample_app, sample_copy

SIZE = (120, 40)


def async_test(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return run


@pytest.fixture
def sample(tmp_path):
    store = sample_copy(tmp_path)
    made = []

    def make(**kw):
        app, runner = sample_app(store, **kw)
        made.append(runner)
        return app

    yield store, make
    for runner in made:
        runner.stop(0)
    store.close()


def batch(name: str) -> Batch:
    return Batch.get(Batch.name == name)


async def settle(app, pilot) -> None:
    """Let thread workers (commands, reads) finish and their messages arrive."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def select_batch(app, pilot, name: str) -> None:
    app.main.query_one(BatchesPane).select(batch(name).id)
    await pilot.pause()


async def select_proxy(app, pilot, label: str) -> None:
    pane = app.main.query_one(ProxiesPane)
    pane.focus_target()
    table = pane.target()
    key = str(Proxy.get(Proxy.label == label).id)
    table.move_cursor(row=table.get_row_index(key), animate=False)
    await pilot.pause()
    assert pane.selected_key == key


# --- batches ---------------------------------------------------------------------------------------


@async_test
async def test_p_pauses_then_resumes_the_selected_batch(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        assert app.main.query_one(BatchesPane).selected.name == "spring-campaign"
        await pilot.press("p")
        await settle(app, pilot)
        assert batch("spring-campaign").state == "paused"
        app.refresh_now()
        await pilot.press("p")
        await settle(app, pilot)
        assert batch("spring-campaign").state == "running"


@async_test
async def test_c_cancels_after_yes_and_keeps_the_batch_after_no(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await select_batch(app, pilot, "overnight-retry")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(app, pilot)
        assert batch("overnight-retry").state == "queued"
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("ctrl+y")
        await settle(app, pilot)
        b = batch("overnight-retry")
        assert b.state == "cancelled"
        assert b.cancelled_profiles == 5_000
        assert Job.select().where((Job.batch == b.id) & (Job.state == "pending")).count() == 0


@async_test
async def test_f_queues_the_failed_checks_again(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await select_batch(app, pilot, "vip-accounts")
        before = batch("vip-accounts")
        assert before.failed_checks == 12
        await pilot.press("f")
        await settle(app, pilot)
        after = batch("vip-accounts")
        assert after.failed_checks == 0
        assert after.completed_profiles == before.completed_profiles - 12
        assert Job.select().where((Job.batch == after.id) & (Job.state == "failed")).count() == 0


@async_test
async def test_n_shows_file_errors_in_the_modal_then_creates_the_batch(sample, tmp_path, monkeypatch):
    store, make = sample
    monkeypatch.chdir(tmp_path)
    Path("leads.txt").write_text("alice\nbob\n[/bold]bad user\ncarol\n", encoding="utf-8")
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, NewBatchScreen)
        modal.query_one("#path").value = "leads.tx"
        await pilot.press("t", "ctrl+s")
        await settle(app, pilot)
        assert app.screen is modal, "a bad file keeps the modal open"
        errors = str(modal.query_one("#errors").render())
        assert "leads.txt:3: invalid character '/' in username" in errors
        assert "[/bold]bad user" in errors  # shown as typed, not as markup
        assert Batch.select().where(Batch.name == "leads").count() == 0

        modal.query_one("#skip").value = True
        modal.query_one("#name").value = "leads-ok"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert not isinstance(app.screen, NewBatchScreen)
        b = batch("leads-ok")
        assert b.total_profiles == 3
        assert sorted(j.username for j in Job.select().where(Job.batch == b.id)) == ["alice", "bob", "carol"]
        app.refresh_now()
        assert app.main.query_one(BatchesPane).selected.id == b.id


@async_test
async def test_e_exports_the_selected_batch(sample, tmp_path):
    store, make = sample
    app = make()
    out = tmp_path / "vip.csv"
    async with app.run_test(size=SIZE) as pilot:
        await select_batch(app, pilot, "vip-accounts")
        await pilot.press("e")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ExportScreen)
        modal.query_one("#path").value = str(out)
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, ExportScreen)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 800
    assert {r["batch_id"] for r in rows} == {str(batch("vip-accounts").id)}


@async_test
async def test_export_asks_before_overwriting_and_says_what_it_exported(sample, tmp_path):
    """Issue 14.4: Export wrote over an existing file without asking, and said "exported
    N rows" for a running batch whose rows were mostly unchecked."""
    store, make = sample
    app = make()
    out = tmp_path / "vip.csv"
    out.write_text("keep me\n", encoding="utf-8")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await select_batch(app, pilot, "vip-accounts")
        await pilot.press("e")
        await pilot.pause()
        modal = app.screen
        modal.query_one("#path").value = str(out)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(app, pilot)
        assert app.screen is modal and out.read_text(encoding="utf-8") == "keep me\n"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        await pilot.press("ctrl+y")
        await settle(app, pilot)
        assert not isinstance(app.screen, (ConfirmScreen, ExportScreen))
        toasts = _toasts(app)
        assert any("800 rows" in t and "312 checked" in t and "failed 12" in t and "488 pending" in t
                   for t in toasts), toasts
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 800


@async_test
async def test_export_error_stays_in_the_modal(sample, tmp_path):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        modal = app.screen
        modal.query_one("#path").value = str(tmp_path / "no-such-dir" / "x.csv")
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is modal
        assert "does not exist" in str(modal.query_one("#errors").render())


# --- proxies -------------------------------------------------------------------------------------------


@async_test
async def test_d_disables_then_enables_the_selected_proxy(sample):
    store, make = sample
    app = make()
    label = "de-fra-02.proxy.example:8080"
    async with app.run_test(size=SIZE) as pilot:
        await select_proxy(app, pilot, label)
        await pilot.press("d")
        await settle(app, pilot)
        row = Proxy.get(Proxy.label == label)
        assert row.disabled and row.state == "disabled"
        assert "disabled" in screen_text(app)
        await pilot.press("d")
        await settle(app, pilot)
        row = Proxy.get(Proxy.label == label)
        assert not row.disabled and row.state == "unchecked"


@async_test
async def test_r_and_R_in_a_watch_only_console_ask_the_workers_through_the_database(sample):
    store, make = sample
    app = make()
    label = "us-nyc-01.proxy.example:1080"
    async with app.run_test(size=SIZE) as pilot:
        await select_proxy(app, pilot, label)
        await pilot.press("r")
        await settle(app, pilot)
        asked = {p.label: p.validate_requested_at for p in Proxy.select()}
        assert asked[label] is not None and sum(v is not None for v in asked.values()) == 1
        await pilot.press("R")
        await settle(app, pilot)
        asked_all = {p.label: p.validate_requested_at for p in Proxy.select() if not p.disabled}
        assert all(v is not None for v in asked_all.values()) and len(asked_all) > 1
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "the workers re-validate" in messages
        assert Proxy.get(Proxy.label == label).state == "dead"  # the console itself validates nothing


# --- results, detail, filters ------------------------------------------------------------------------------


@async_test
async def test_results_show_a_window_not_every_profile(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.query_one(ResultsPane)
        assert pane.window.total == 100_000
        assert pane.target().row_count == 100
        assert "rows 1–100 of 100,000" in screen_text(app)
        pane.focus_target()
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        assert pane.row_offset == 100 and not pane.follow
        assert pane.window.offset == 100
        assert "rows 101–200 of 100,000" in screen_text(app)
        await pilot.press("F")
        await settle(app, pilot)
        assert pane.follow and pane.window.offset == 0


def _finish_now(batch_id: int, n: int, at: float) -> list[int]:
    """``n`` pending jobs of the batch finish at ``at`` (as workers elsewhere would do it)."""
    ids = [j.id for j in Job.select(Job.id).where((Job.batch == batch_id) & (Job.state == "pending"))
           .order_by(Job.id).limit(n)]
    Job.update(state="succeeded", outcome="no_stories", story_count=0, started_at=at - 0.2, finished_at=at,
               attempts=1).where(Job.id.in_(ids)).execute()
    return ids


@async_test
async def test_a_paged_view_holds_still_and_following_keeps_the_selected_profile(sample):
    """Issue 14.3: on page 2 the rows changed on every refresh and running rows slid in; back
    on page 1 it still said "paged" but scrolled live; while following, the row under the
    cursor changed, so enter opened whatever slid under it."""
    store, make = sample
    app = make()
    big = batch("spring-campaign").id
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.query_one(ResultsPane)
        table = pane.target()
        pane.focus_target()
        page1 = [j.id for j in pane.window.rows]
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        page2 = [j.id for j in pane.window.rows]
        running = [j.id for j in pane.window.rows if j.state == "running"]
        _finish_now(big, 150, FIXED_NOW + 5)
        Job.update(state="succeeded", outcome="private", finished_at=FIXED_NOW + 6).where(
            Job.id.in_(running)).execute()
        app.refresh_now()
        await pilot.pause()
        assert [j.id for j in pane.window.rows] == page2, "page 2 holds the same profiles"
        assert all(j.state == "succeeded" for j in pane.window.rows if j.id in running), "shown as they are now"
        assert "rows 101–200 of 100,000" in screen_text(app) and "paged" in screen_text(app)
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert [j.id for j in pane.window.rows] == page1 and not pane.follow
        assert "paged" in screen_text(app)

        await pilot.press("F")  # following: page 1, live; the selected profile stays selected
        await settle(app, pilot)
        assert pane.follow
        table.move_cursor(row=0, animate=False)
        await pilot.pause()
        chosen = pane.selected_job().id
        _finish_now(big, 3, FIXED_NOW + 9)
        app.refresh_now()
        await pilot.pause()
        assert pane.window.rows[0].id != chosen, "newer results came in on top"
        assert pane.selected_job().id == chosen
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen)
        assert chosen in {j.id for j in pane.window.rows}


@async_test
async def test_focus_changes_and_zoom_do_not_draw_the_log_lines_again(sample, monkeypatch):
    """Issue 14.15: a focus change or a zoom restyles the log without changing its look; its
    lines on screen come from their cache instead of being drawn again (the old code
    dropped the cache at every restyle: each such key drew every visible log line again)."""
    from storycheck_tui.ui.panes import logview

    drawn: list[int] = []
    real = logview.render_entry

    def counting(entry, tz, **kw):
        drawn.append(entry.seq)
        return real(entry, tz, **kw)

    monkeypatch.setattr(logview, "render_entry", counting)
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert drawn  # the log shows lines
        before = len(drawn)
        await pilot.press("4", "1", "z", "z", "tab", "shift+tab")
        await settle(app, pilot)
        assert len(drawn) == before


@async_test
async def test_a_growing_log_scrolls_without_laying_out_the_screen(sample, monkeypatch):
    """Issue 14.15: each redraw that added log lines set the log's virtual size, a change that
    lays out the whole screen (a frame of ~12 ms instead of ~4 under load, 4 times a second
    while the log grows). The log's size is the stylesheet's: it scrolls on, its scrollbar
    follows, and nothing is laid out (the old code asked for a layout at every add)."""
    layouts: list[str] = []
    real = LogView.refresh

    def refresh(self, *regions, layout=False, **kw):
        if layout:
            layouts.append("layout")
        return real(self, *regions, layout=layout, **kw)

    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        pane = app.main.query_one(LogPane)
        view = pane.target()
        monkeypatch.setattr(LogView, "refresh", refresh)
        for n in range(3):
            pane.add([LogEntry(seq=1000 + 50 * n + i, created=FIXED_NOW + n, level="INFO", logger="storycheck",
                               event="CHECKED", message=f"line {n}-{i}") for i in range(50)])
            await pilot.pause()
        assert not layouts
        assert view.virtual_size.height == len(view.shown) > view.size.height
        assert view.scroll_y == view.max_scroll_y > 0  # following: at the end
        assert view.vertical_scrollbar.window_virtual_size == len(view.shown)
        assert "line 2-49" in screen_text(app)


@async_test
async def test_zoom_restyles_the_zoomed_pane_not_every_widget(sample, monkeypatch):
    """Issue 14.15: Textual marks a zoom with a class on the screen, and a class change on the
    screen restyled every widget on it (a third of a zoom's frame). Only the screen and the
    zoomed pane are restyled now (the old code restyled the log at each `z` of the batches
    pane); what the screen shows is the same (the snapshots, and the zoomed pane's size)."""
    restyled: list[str] = []
    real = LogView.notify_style_update

    def counting(self):
        restyled.append(self.id)
        return real(self)

    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await settle(app, pilot)
        monkeypatch.setattr(LogView, "notify_style_update", counting)
        await pilot.press("z")
        await pilot.pause()
        pane = app.main.query_one(BatchesPane)
        assert app.main.maximized is pane and pane.outer_size == app.main.size  # the whole screen
        await pilot.press("z")
        await pilot.pause()
        assert app.main.maximized is None and pane.outer_size.width < app.main.size.width
        assert restyled == []
        await pilot.press("4")  # a focus change still restyles the panes it concerns
        await pilot.pause()
        assert restyled


@async_test
async def test_slash_filters_the_focused_pane(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "slash")
        box = app.main.query_one("#results-filter")
        assert box.has_focus
        box.value = "is:failed keyerro"
        await pilot.press("r", "enter")
        await settle(app, pilot)
        pane = app.main.query_one(ResultsPane)
        assert pane.state_filter == "failed" and pane.text_filter == "keyerror"
        assert [j.username for j in pane.window.rows] == ["ines.bakes51227"]

        await pilot.press("4", "slash")
        box = app.main.query_one("#log-filter")
        assert box.has_focus
        box.value = "proxy_coolin"
        await pilot.press("g", "enter")
        await pilot.pause()
        view = app.main.query_one(LogView)
        assert [e.event for e in view.shown] == ["PROXY_COOLING"]


@async_test
async def test_keys_typed_after_slash_go_to_the_pane_filter_in_every_pane(sample):
    """Issue 14.1: batches, proxies and workers had no filter: `1 / c y` cancelled the selected
    batch, `3 / dead enter` disabled a proxy and opened Export."""
    store, make = sample
    app = make()
    before = {p.label: p.disabled for p in Proxy.select()}
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "slash", "c", "y")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.main.query_one("#batches-filter").value == "cy"
        assert batch("spring-campaign").state == "running"
        await pilot.press("escape")
        await pilot.press("3", "slash", "d", "e", "a", "d", "enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, ExportScreen)
        assert {p.label: p.disabled for p in Proxy.select()} == before
        assert [p.state for p in app.main.query_one(ProxiesPane).shown] == ["dead"]
        await pilot.press("5", "slash", "a", "p", "p", "-", "0", "2", "enter")
        await settle(app, pilot)
        assert app.main.query_one("#workers").target().row_count == 1


@async_test
async def test_keys_typed_while_the_filter_box_mounts_go_to_it(sample):
    """The filter box is mounted by `/`. The focus moves to it in the same handler, before it
    is mounted: the keys that arrive meanwhile (sent at once, no frame or idle moment between
    them) wait in its queue and reach it in order; none runs as a command (`c` cancel, `y`
    yes, `x` export) or is lost. A box focused only once mounted would leave them to the table."""
    from textual import events

    from storycheck_tui.ui.panes.base import FilterInput

    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        for pane in ("batches", "proxies", "results", "log", "workers"):
            assert not app.main.query(f"#{pane}-filter")  # not mounted until `/` opens it
        await pilot.press("1")
        app.main.action_filter()  # what `/` does (the key itself: the test above)
        assert isinstance(app.focused, FilterInput) and not app.focused.is_mounted
        for key, char in (("c", "c"), ("slash", "/"), ("y", "y"), ("x", "x")):
            app.post_message(events.Key(key, char))
        await settle(app, pilot)
        assert not isinstance(app.screen, (ConfirmScreen, ExportScreen))
        assert app.main.query_one("#batches-filter").value == "c/yx"  # a `/` in the box is text
        assert batch("spring-campaign").state == "running"
        await pilot.press("escape")
        await pilot.pause()
        assert not app.main.query("#batches-filter")  # closed empty: unmounted again


@async_test
async def test_a_letter_never_confirms_a_destructive_command(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await select_batch(app, pilot, "overnight-retry")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y", "Y", "enter")  # enter: the focused button is "Keep it"
        await settle(app, pilot)
        assert batch("overnight-retry").state == "queued"
        assert not isinstance(app.screen, ConfirmScreen)


@async_test
async def test_a_cancelled_batch_shows_what_was_checked_not_100_percent(sample):
    """Issue 14.5: a cancelled batch showed 100 % and "N/N done"."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await select_batch(app, pilot, "overnight-retry")
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("ctrl+y")
        await settle(app, pilot)
        assert any("5,000 pending profiles dropped" in t for t in _toasts(app)), _toasts(app)
        app.refresh_now()
        await pilot.pause()
        text = screen_text(app)
        row = next(line for line in text.splitlines() if "overnight-" in line)
        assert "cancelled" in row and "0%" in row and "100%" not in row, row
        assert "0/5,000 checked" in text and "5,000 cancelled" in text


@async_test
async def test_enter_on_a_result_opens_its_detail(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.query_one(ResultsPane)
        pane.focus_target()
        table = pane.target()
        row = next(i for i, j in enumerate(pane.window.rows) if j.username == "ines.bakes51227")
        table.move_cursor(row=row, animate=False)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen)
        text = screen_text(app)
        for expected in ("ines.bakes51227", "Attempt history", "PROXY_FAILOVER", "RATE_LIMITED",
                         "Traceback", "KeyError"):
            assert expected in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailScreen)


@async_test
async def test_log_level_filter_and_follow(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        view = app.main.query_one(LogView)
        assert all(e.level != "DEBUG" for e in view.shown)
        await pilot.press("4")
        for _ in range(3):
            await pilot.press("l")  # INFO -> WARNING -> ERROR -> DEBUG
        assert any(e.level == "DEBUG" for e in view.shown)
        await pilot.press("l", "l")  # INFO -> WARNING
        assert {e.level for e in view.shown} <= {"WARNING", "ERROR"}
        await pilot.press("F")
        assert not view.follow
        await pilot.press("F")
        assert view.follow


# --- focus, help, palette, keymap -------------------------------------------------------------------------


@async_test
async def test_the_log_pane_tails_what_other_processes_wrote_to_the_database(sample):
    """Issue 14.2: a watch-only console's log pane showed only its own process's records
    ("0 of 0 lines" while `storycheck worker`s logged hundreds)."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        view = app.main.query_one(LogView)
        before = len(view.entries)
        # another process's writer stores a record in batch_log (this console's ring never saw it)
        from storycheck_tui.store.logrows import store_logs

        store_logs(store, [LogEntry(seq=1, created=FIXED_NOW - 0.5, level="INFO", logger="storycheck.store",
                                    event="BATCH_PAUSED", message="batch 4 paused: paused from another terminal",
                                    batch_id=batch("overnight-retry").id)])
        app.refresh_now()
        await pilot.pause()
        mine = [e for e in view.entries if e.event == "BATCH_PAUSED"]
        assert len(mine) == 1 and "paused from another terminal" in mine[0].message
        assert len(view.entries) == before + 1
        app.refresh_now()  # a tail: what was shown is not read again
        await pilot.pause()
        assert len(view.entries) == before + 1
        assert "paused from another terminal" in screen_text(app)


def test_the_log_feed_shows_this_process_records_once(tmp_path):
    """A console that runs checks finds its own records in batch_log too: shown once (from the
    ring, at once), while another process's record is shown from the table."""
    from storycheck_tui.store.db import open_store
    from storycheck_tui.store.logrows import store_logs

    store = open_store(str(tmp_path / "feed.db"))
    try:
        b = ops.create_batch(store, "b", ["u1"])
        ring = LogRing()
        for i in range(3):
            ring.emit(logging.makeLogRecord({"name": "storycheck.engine", "levelno": logging.INFO, "levelname": "INFO",
                                             "msg": f"mine {i}", "args": None, "batch_id": b}))
        feed = LogFeed(ring)
        assert [e.message for e in feed.from_ring()] == ["mine 0", "mine 1", "mine 2"]
        mine = ring.since(0)
        other = LogEntry(seq=1, created=time.time(), level="WARNING", logger="storycheck", event="LEASE_EXPIRED",
                         message="theirs", batch_id=b)
        store_logs(store, mine + [other])
        lines, more = feed.from_db(reads.log_tail(store, feed.db_after))
        assert [e.message for e in lines] == ["theirs"] and not more
        assert feed.from_db(reads.log_tail(store, feed.db_after)) == ([], False)
    finally:
        store.close()


@async_test
async def test_tab_and_number_keys_move_between_panes(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        for key, pane in (("4", "log"), ("2", "results"), ("5", "workers"), ("3", "proxies")):
            await pilot.press(key)
            assert main.focused_pane().pane_name == pane
        # tab goes by pane number (issue 14.8: it went 1 3 2 4 5, the layout's order)
        order = []
        for _ in range(5):
            await pilot.press("tab")
            order.append(main.focused_pane().number)
        assert order == [4, 5, 1, 2, 3]
        await pilot.press("shift+tab", "shift+tab")
        assert main.focused_pane().pane_name == "batches"


@async_test
async def test_help_lists_every_key_and_binding_id(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=(130, 90)) as pilot:  # tall enough for the whole list
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for b in keymap.all_bindings():
            assert b.description in text and b.id in text, b.id
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


def test_every_key_is_in_the_palette_and_in_help():
    titles = {b.id for _, _, b in commands()}
    ids = {b.id for b in keymap.all_bindings()}
    assert ids - titles <= {keymap.NEXT_PANE.id, keymap.PREV_PANE.id}
    for b in keymap.all_bindings():
        assert b.id, f"binding {b.key} has no id"
    main_keys = {b.key for b in keymap.MAIN}
    for key in ("p", "c", "f", "n", "e", "d", "r", "R", "slash", "q", "1", "2", "3", "4", "tab"):
        assert key in main_keys or any(key in b.key.split(",") for b in keymap.MAIN), key


@async_test
async def test_palette_command_runs_the_action(sample):
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await app.run_binding(keymap.PAUSE)
        await settle(app, pilot)
        assert batch("spring-campaign").state == "paused"


@async_test
async def test_a_user_keymap_remaps_a_binding(sample, tmp_path):
    store, make = sample
    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\n"batch.pause" = "x"\n"nope.nothing" = "z"\n', encoding="utf-8")
    keys, problem = keymap.load_user_keymap(path)
    assert keys == {"batch.pause": "x"}
    assert f"{path}:3: unknown binding id 'nope.nothing'" in problem
    app = make(keymap_overrides=keys)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await settle(app, pilot)
        assert batch("spring-campaign").state == "running"
        await pilot.press("x")
        await settle(app, pilot)
        assert batch("spring-campaign").state == "paused"


@async_test
async def test_a_keymap_conflict_is_refused_with_its_line(sample, tmp_path):
    """Issue 14.8: "batch.pause" = "q" silently hid Quit."""
    store, make = sample
    path = tmp_path / "keymap.toml"
    path.write_text('# mine\n[keymap]\n"log.level" = "v"\n"batch.pause" = "q"\n', encoding="utf-8")
    keys, problem = keymap.load_user_keymap(path)
    assert keys == {"log.level": "v"}
    assert problem == f"{path}:4: 'batch.pause' = 'q' ignored: 'q' is already the key of 'app.quit'"
    app = make(keymap_overrides=keys)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await settle(app, pilot)
        assert batch("spring-campaign").state == "paused", "the default key stays"
        await pilot.press("q")
        await settle(app, pilot)
        assert app.stopping or not app.is_running


@async_test
async def test_z_gives_any_pane_the_whole_screen(sample):
    """Issue 14.8: z did not widen the batches and workers panes (their layout widths won)."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        for key, name in (("1", "batches"), ("5", "workers"), ("3", "proxies")):
            await pilot.press(key, "z")
            await pilot.pause()
            assert app.main.query_one(f"#{name}").region.width == SIZE[0], name
            await pilot.press("z")
            await pilot.pause()


@async_test
async def test_ctrl_c_quits_the_console(sample):
    """Issue 14.8: ctrl+c did nothing and said nothing (the screen's ctrl+c is 'copy')."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.stopping or not app.is_running


@async_test
async def test_an_unknown_results_filter_lists_every_valid_one(sample):
    """Issue 14.8: `is:bogus` listed the valid filters cut off at the end of the header."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("2", "slash")
        app.main.query_one("#results-filter").value = "is:bogus"
        await pilot.press("enter")
        await settle(app, pilot)
        assert any("unknown is:bogus" in t and "not_found" in t for t in _toasts(app)), _toasts(app)
        assert "unknown is:bogus" in screen_text(app)


@async_test
async def test_a_running_batch_with_no_worker_left_says_so(sample):
    """Issue 14.8: after the last worker stopped, a batch stayed 'running' with a decaying rate."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        Worker.update(state="stopped").execute()
        app.refresh_now()
        await pilot.pause()
        row = next(line for line in screen_text(app).splitlines() if "spring-cam" in line)
        assert "no worker " in row and "41.2" not in row, row


def test_in_flight_counts_checks_running_not_jobs_claimed():
    """Issue 14.8: '80 in flight' with 16 threads counted claimed, unstarted jobs as running."""
    from storycheck_tui.ui.status import StatusFacts, render

    text = render(StatusFacts(threads=16, in_flight=80)).plain
    assert "16 checking +64 claimed" in text and "80" not in text.replace("+64", "")
    assert "3 checking" in render(StatusFacts(threads=16, in_flight=3)).plain


@async_test
async def test_proxy_labels_keep_their_port_when_cut_at_80x24(sample):
    """Issue 14.8: at 80x24 the results' proxy column showed '127.0.0.1:…' (the port is what
    tells proxies on one host apart)."""
    from storycheck_tui.ui.panes.proxies import keep_port

    assert keep_port("de-fra-01.proxy.example:8080", 15) == "de-fra-01…:8080"
    assert keep_port("127.0.0.1:41319", 12) == "127.0…:41319"
    assert keep_port("short:1", 15) == "short:1" and keep_port("no-port-here-at-all", 8) == "no-port-here-at-all"
    store, make = sample
    app = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        text = screen_text(app)
        assert ":8080" in text and "proxy…" not in text


@async_test
async def test_a_read_only_console_changes_nothing_and_says_why(sample, tmp_path, monkeypatch):
    """Issue 14.9: no key, palette command or modal of a read-only console changes anything;
    its steering keys leave the footer, and pressing one says why."""
    from storycheck_tui.ui.launch import read_only_wanted

    store, make = sample
    app = make(read_only=True)
    before = {p.label: p.disabled for p in Proxy.select()}
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        footer = " ".join(item.description for item in app.main.query_one("KeysFooter").items)
        assert "Pause" not in footer and "Proxy on/off" not in footer and "Export" in footer
        await pilot.press("p", "c", "f", "n")
        await settle(app, pilot)
        assert not isinstance(app.screen, (ConfirmScreen, NewBatchScreen))
        await select_proxy(app, pilot, "de-fra-01.proxy.example:8080")
        await pilot.press("d", "r", "R")
        await settle(app, pilot)
        assert any("read-only console" in t for t in _toasts(app))
        for binding in keymap.STEERING:  # the palette runs the same action: refused the same way
            await app.run_binding(binding)
            await settle(app, pilot)
        assert not isinstance(app.screen, (ConfirmScreen, NewBatchScreen))
    assert batch("spring-campaign").state == "running" and batch("overnight-retry").state == "queued"
    assert {p.label: p.disabled for p in Proxy.select()} == before
    assert all(p.validate_requested_at is None for p in Proxy.select())
    assert {t for t, _, b in commands(read_only=True)} & {t for t, _, b in commands() if b in keymap.STEERING} == set()
    monkeypatch.setenv("STORYCHECK_READ_ONLY", "1")
    assert read_only_wanted(argparse.Namespace())
    monkeypatch.setenv("STORYCHECK_READ_ONLY", "0")
    assert not read_only_wanted(argparse.Namespace()) and read_only_wanted(argparse.Namespace(read_only=True))


@async_test
async def test_every_table_sorts_by_key_and_by_a_header_click_with_an_indicator(sample):
    """Issue 14.10: s sorts the focused table by its next column, S reverses, a click on a
    header sorts by it; the header shows the order."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.query_one(BatchesPane)
        table = pane.target()
        names = lambda: [{v.id: v for v in pane.batches}[int(k)].name for k in table.row_keys()]  # noqa: E731
        assert names() == ["march-leads", "vip-accounts", "spring-campaign", "overnight-retry"]
        await pilot.press("1", "s")
        await pilot.pause()
        assert names() == sorted(names()) and "Batch▲" in screen_text(app)
        await pilot.press("S")
        await pilot.pause()
        assert names() == sorted(names(), reverse=True) and "Batch▼" in screen_text(app)
        await pilot.click("#batches-table", offset=(38, 0))  # the OK column's header
        await pilot.pause()
        oks = [{v.id: v for v in pane.batches}[int(k)].succeeded for k in table.row_keys()]
        assert oks == sorted(oks) and table.sort_key == "ok" and "▲OK" in screen_text(app)
        assert pane.selected is not None and table.row_keys()[table.cursor_row] == str(pane.selected.id)

        proxies = app.main.query_one(ProxiesPane)
        await pilot.press("3", "s", "s", "S")  # by state, descending
        await pilot.pause()
        states = [{p.key: p for p in proxies.shown}[k].state for k in proxies.target().row_keys()]
        assert states == sorted(states, reverse=True)


@async_test
async def test_results_sort_in_the_database_query_and_combine_with_the_filter(sample):
    store, make = sample
    app = make()
    big = batch("spring-campaign").id
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.query_one(ResultsPane)
        await pilot.press("2", "s")  # username
        await settle(app, pilot)
        first = Job.select(Job.username).where(Job.batch == big).order_by(Job.username).limit(100)
        assert [j.username for j in pane.window.rows] == [j.username for j in first]
        assert pane.window.total == 100_000 and "by username ▲" in screen_text(app)
        await pilot.press("slash")
        app.main.query_one("#results-filter").value = "is:failed"
        await pilot.press("enter")
        await settle(app, pilot)
        failed = (Job.select(Job.username).where((Job.batch == big) & (Job.state == "failed"))
                  .order_by(Job.username).limit(100))
        assert [j.username for j in pane.window.rows] == [j.username for j in failed]
        await pilot.press("S")
        await settle(app, pilot)
        names = [j.username for j in pane.window.rows]
        assert names == sorted(names, reverse=True) and all(j.state == "failed" for j in pane.window.rows)


@async_test
async def test_mouse_a_click_focuses_a_pane_and_selects_a_row(sample):
    """Issue 14.14: click a pane to focus it, a row to select it (a header to sort: above)."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#log-view", offset=(5, 2))
        await pilot.pause()
        assert app.main.focused_pane().pane_name == "log"
        await pilot.click("#workers", offset=(3, 0))  # the border: still the pane
        await pilot.pause()
        assert app.main.focused_pane().pane_name == "workers"
        pane = app.main.query_one(BatchesPane)
        await pilot.click("#batches-table", offset=(3, 2))  # the second batch's row
        await pilot.pause()
        assert app.main.focused_pane().pane_name == "batches" and pane.selected.name == "vip-accounts"
        assert app.main.query_one(ResultsPane).current_batch.name == "vip-accounts"


@async_test
async def test_alerts_batch_finished_or_paused_by_the_engine_pool_degraded_new_stories(sample):
    """Issue 14.13: toasts (and the bell when asked) for what changed, never for what was so
    when the console opened."""
    from storycheck_tui.states import DeliveryState, EventType

    store, make = sample
    app = make(bell=True)
    bells = []
    app.bell = lambda: bells.append(1)  # the terminal bell, counted
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.refresh_now()
        await pilot.pause()
        assert _toasts(app) == [], "nothing changed yet: no alert"
        Batch.update(state="finished", finished_at=FIXED_NOW).where(Batch.name == "overnight-retry").execute()
        Batch.update(state="paused", state_reason="request budget of 50,000 spent").where(
            Batch.name == "spring-campaign").execute()
        Proxy.update(state="dead").where(Proxy.state == "healthy").execute()
        Event.insert_many([dict(type=EventType.STORY_NEW, watch_id=1, watch="vips", username=u, story_id=f"s{i}",
                                at=FIXED_NOW, delivery=DeliveryState.PENDING)
                           for i, u in enumerate(["[/b]eve", "bob", "bob"])]).execute()
        app.runner.refresh()
        app.refresh_now()
        app.refresh_now()
        await pilot.pause()
        toasts = _toasts(app)
        assert any("'overnight-retry' finished" in t for t in toasts), toasts
        assert any("'spring-campaign' paused: request budget of 50,000 spent" in t for t in toasts), toasts
        assert any("proxy pool degraded: 0 of 6 proxies usable" in t for t in toasts), toasts
        assert any("3 new stories in watch 'vips': [/b]eve, bob" in t for t in toasts), toasts  # one per round
        assert len(bells) == 4
        app.refresh_now()
        await pilot.pause()
        assert len(bells) == 4, "each alert once"


@async_test
async def test_g_shows_live_charts_of_the_selected_batch_and_the_workers(sample):
    """Issue 14.11: checks/s (in all, by outcome), failures, 429s, the pace and each worker
    over the last minutes, drawn with Sparkline; live while open."""
    from textual.widgets import Sparkline

    from storycheck_tui.ui.modals.charts import ChartsScreen

    store, make = sample
    now = [FIXED_NOW]
    app = make(clock=lambda: now[0])
    big = batch("spring-campaign")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await settle(app, pilot)
        charts = app.screen
        assert isinstance(charts, ChartsScreen) and charts.batch_id == big.id
        bars = charts.query_one("#chart-checks", Sparkline).data
        assert len(bars) == 60 and max(bars) > 0, "the seeded five minutes"
        assert len(charts.query_one("#chart-worker-0", Sparkline).data) == 60
        # 50 more checks of which 20 failed, five seconds later: the newest bar says 10/s, 4/s failed
        now[0] += 5
        Batch.update(completed_profiles=Batch.completed_profiles + 50, failed_checks=Batch.failed_checks + 20,
                     successful_checks=Batch.successful_checks + 30).where(Batch.id == big.id).execute()
        app.runner.refresh()
        app.refresh_now()
        await pilot.pause()
        assert charts.query_one("#chart-checks", Sparkline).data[-1] == 10.0
        assert charts.query_one("#chart-failed", Sparkline).data[-1] == 4.0
        assert "10.0" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ChartsScreen)


@async_test
async def test_P_pauses_every_open_batch_then_resumes_them(sample):
    """Issue 14.12 (the part that needs no engine change): pause / resume every batch at once,
    through the database as p does, so every worker sees it within a second or two."""
    store, make = sample
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("P")
        await settle(app, pilot)
        assert {b.name: b.state for b in Batch.select()} == {
            "march-leads": "finished", "vip-accounts": "paused", "spring-campaign": "paused",
            "overnight-retry": "paused"}
        app.refresh_now()
        await pilot.press("P")
        await settle(app, pilot)
        assert {b.name: b.state for b in Batch.select() if b.name != "march-leads"} == {
            "vip-accounts": "running", "spring-campaign": "running", "overnight-retry": "running"}


# --- rendering user text literally ------------------------------------------------------------------------


@async_test
async def test_markup_and_escapes_in_user_text_render_literally(sample):
    """Regression: a username `[/bold]` crashed a DataTable render when cells were markup."""
    store, make = sample
    evil = ["[/bold]", "[red]x", "\x1b[31mred", "[link=http://x]y[/link]", "a\nb"]
    b = ops.create_batch(store, "evil [/bold] batch", evil)
    Job.update(state="failed", error_kind="unexpected", error_message="[/red] boom \x1b[0m",
               proxy="[bold]proxy[/]", finished_at=FIXED_NOW).where(Job.batch == b).execute()
    ops.add_proxies(store, [ProxySpec(url="http://evil:1", label="[/i]evil-proxy")])
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await select_batch(app, pilot, "evil [/bold] batch")
        app.refresh_now()
        await pilot.pause()
        text = screen_text(app)
        assert "[/bold]" in text and "[red]x" in text and "^[[31mred" in text
        assert "[/red] boom" in text
        assert "evil [/bold] batch" in text
        ring = app.ring
        ring.emit(logging.makeLogRecord({"name": "storycheck", "levelno": logging.ERROR, "levelname": "ERROR",
                                         "msg": "[/bold] in a log line \x1b[2J", "args": None,
                                         "created": FIXED_NOW}))
        app.refresh_now()
        await pilot.pause()
        text = screen_text(app)
        assert "[/bold] in a log line" in text
        assert "\x1b" not in text  # the escape is shown (as ^[ or \x1b), never sent to the terminal
        # the detail of one of them, too
        pane = app.main.query_one(ResultsPane)
        pane.focus_target()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        screen_text(app)


def _toasts(app) -> list[str]:
    return [str(t.render()) for t in app.screen.query("Toast")]


def _click_actions(app) -> list[str]:
    """The ``@click`` actions anywhere on screen (a toast made of markup would carry one)."""
    found = []
    for strip in screen_strips(app):
        for seg in strip:
            meta = seg.style.meta if seg.style else None
            if meta and "@click" in meta:
                found.append(str(meta["@click"]))
    return found


@pytest.mark.parametrize("name", ["[/bold]", "[@click=app.quit]vip"])
@async_test
async def test_a_batch_name_with_markup_shows_as_typed_in_its_toast(sample, tmp_path, name):
    """Issue 15.5: with notifications on (run_test turns them off by default), a batch named
    ``[/bold]`` ended the console with a MarkupError, and ``[@click=app.quit]vip`` made the
    toast a clickable quit."""
    store, make = sample
    users = tmp_path / "users.txt"
    users.write_text("alice\nbob\n", encoding="utf-8")
    app = make()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("n")
        await pilot.pause()
        modal = app.screen
        modal.query_one("#path").value = str(users)
        modal.query_one("#name").value = name
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.is_running and not isinstance(app.screen, NewBatchScreen)
        toasts = _toasts(app)
        assert any(f"{name!r}: 2 profiles" in t for t in toasts), toasts
        assert _click_actions(app) == []
    assert app.return_code in (None, 0) and batch(name).total_profiles == 2


@async_test
async def test_a_proxy_label_with_markup_shows_as_typed_in_its_toast(sample):
    store, make = sample
    ops.add_proxies(store, [ProxySpec(url="http://evil:1", label="[/i][@click=app.quit]evil")])
    app = make()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await select_proxy(app, pilot, "[/i][@click=app.quit]evil")
        await pilot.press("d")
        await settle(app, pilot)
        assert app.is_running
        assert any("proxy [/i][@click=app.quit]evil disabled" in t for t in _toasts(app)), _toasts(app)
        assert _click_actions(app) == []


def test_plain_never_parses_markup():
    from storycheck_tui.ui.format import plain

    t = plain("[/bold][red]x\x1b[31m")
    assert isinstance(t, Text)
    assert t.plain == "[/bold][red]x^[[31m"
    assert not t.spans


# --- redraw batching and bounded memory ------------------------------------------------------------------


@async_test
async def test_a_burst_of_log_records_is_one_append_and_bounded(sample, monkeypatch):
    store, make = sample
    app = make(log_capacity=2_000)
    calls = []
    real_add = LogView.add

    def counting_add(self, entries):
        entries = list(entries)
        calls.append(len(entries))
        return real_add(self, entries)

    monkeypatch.setattr(LogView, "add", counting_add)
    async with app.run_test(size=SIZE):
        calls.clear()
        ring = LogRing(capacity=10_000)
        app.log_feed = LogFeed(ring)
        for i in range(9_000):
            ring.emit(logging.makeLogRecord({"name": "storycheck.engine", "levelno": logging.INFO,
                                             "levelname": "INFO", "msg": f"record {i}", "args": None}))
        app.tick()
        assert len(calls) == 1, "all new records are written in one call"
        view = app.main.query_one(LogView)
        assert len(view.entries) == 2_000
        assert view.entries[-1].message == "record 8999"
        assert any(e.event == "LOG_GAP" for e in view.entries) or calls[0] == 5_001
        # what bounds a tick's cost, whatever the burst: at most the cap and one gap line drawn
        assert calls[0] <= LOG_CAP_PER_TICK + 1, calls
        app.tick()
        assert len(calls) == 1, "no new records: no write"


@async_test
async def test_a_live_console_tunes_the_garbage_collector_and_restores_it(sample):
    import gc

    store, make = sample
    before = gc.get_threshold()
    app = make(refresh_every=0.1)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):  # the main screen's mount starts the redraw (and the tuning): wait for it
            if gc.get_freeze_count():
                break
            await pilot.pause(0.02)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= 3000
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


# --- quit, engine threads, other processes ---------------------------------------------------------------


class SlowSource:
    """A story source that takes ``delay`` seconds per check and always finds no stories."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.validations = 0

    def check(self, username, via):
        time.sleep(self.delay)
        return Outcome(kind="no_stories", http_status=200, latency_ms=self.delay * 1000)

    def health(self, via):
        self.validations += 1
        return 5.0

    def close(self):
        pass


def fast_settings(**engine) -> Settings:
    return Settings(proxies=ProxySettings(rate=100.0, burst=100.0, validate_every=0.5),
                    engine=EngineSettings(workers=4, lease_seconds=30.0, claim_size=8, commit_every=0.05,
                                          heartbeat_every=0.2, grace_seconds=1.0, **engine))


@pytest.fixture
def live(tmp_path):
    """A store with one batch and two proxies, and a ring on the storycheck logger."""
    from storycheck_tui.store.db import open_store

    store = open_store(str(tmp_path / "live.db"))
    ops.add_proxies(store, [ProxySpec(url="http://p1:1", label="p1:1"), ProxySpec(url="http://p2:1", label="p2:1")])
    batch_id = ops.create_batch(store, "live", [f"user{i}" for i in range(300)])
    ring = LogRing()
    logger = logging.getLogger("storycheck")
    logger.addHandler(ring)
    runners = []
    yield store, batch_id, ring, runners
    for r in runners:
        r.stop(0)
    logger.removeHandler(ring)
    store.close()


@async_test
async def test_q_while_checks_run_asks_then_stops_the_engine_and_hands_leases_back(live):
    store, batch_id, ring, runners = live
    runner = build_runner(store, fast_settings(), source=SlowSource(delay=0.8))
    runners.append(runner)
    runner.start()
    app = StorycheckApp(runner, store, ring, refresh_every=0.1, quit_grace=0.3)
    async with app.run_test(size=SIZE) as pilot:
        # the engine's own count (what q reads), not the database's: claimed rows reach the
        # writer's ledger a moment after the claim commits
        await asyncio.to_thread(wait_for, lambda: runner.snapshot().in_flight >= 4, 10.0, "checks in flight")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the quit confirmation")
        started = time.monotonic()
        await pilot.press("ctrl+y")
        await until(pilot, lambda: app.stopping, "the engine to start stopping")
        await asyncio.to_thread(app.stopped.wait, 10.0)
        stopped_in = time.monotonic() - started
    assert stopped_in < 5.0
    assert Job.select().where((Job.state == "running") | Job.lease_owner.is_null(False)).count() == 0
    assert Worker.get(Worker.id == runner.worker_id).state == "stopped"
    assert all(not t.is_alive() for t in runner._threads)


@async_test
async def test_r_and_R_revalidate_proxies_in_a_console_that_runs_checks(live):
    store, batch_id, ring, runners = live
    ops.pause(store, batch_id)
    source = SlowSource(delay=0.01)
    settings = fast_settings()
    settings = settings.replace(proxies=ProxySettings(rate=100.0, burst=100.0, validate_every=3600.0))
    runner = build_runner(store, settings, source=source)
    runners.append(runner)
    runner.start()
    k1, k2 = (str(Proxy.get(Proxy.label == label).id) for label in ("p1:1", "p2:1"))
    for key in (k1, k2):
        runner.pool.apply_shared(key, "dead", last_error="boom")
    app = StorycheckApp(runner, store, ring, refresh_every=0.1)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        assert runner.pool.state_of(k2) == "dead", "the validator waits validate_every for dead proxies"
        await select_proxy(app, pilot, "p2:1")
        await pilot.press("r")
        await settle(app, pilot)
        # issue 14.8: the result is said, not only "re-validating now"
        assert any("proxy p2:1 is healthy" in t for t in _toasts(app)), _toasts(app)
        await asyncio.to_thread(wait_for, lambda: runner.pool.state_of(k2) == "healthy", 5.0, "validated")
        await asyncio.to_thread(wait_for, lambda: Proxy.get(Proxy.id == int(k2)).state == "healthy", 5.0,
                                "healthy in the database")
        assert runner.pool.state_of(k1) == "dead"
        await pilot.press("R")
        await settle(app, pilot)
        await asyncio.to_thread(wait_for, lambda: Proxy.get(Proxy.id == int(k1)).state == "healthy", 5.0,
                                "R re-validated the other one")
        assert any("re-validated 2 proxies: 2 healthy" in t for t in _toasts(app)), _toasts(app)
        await pilot.press("q")
        await asyncio.to_thread(app.stopped.wait, 5.0)


@async_test
async def test_a_watch_only_console_steers_workers_in_other_processes_within_two_seconds(live):
    """The console (workers=0) and a worker runner share only the database."""
    store, batch_id, ring, runners = live
    worker = build_runner(store, fast_settings(), source=SlowSource(delay=0.02))
    watcher = build_runner(store, fast_settings(), workers=0)
    runners.extend([worker, watcher])
    worker.start()
    watcher.start()
    app = StorycheckApp(watcher, store, ring, refresh_every=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.to_thread(wait_for, lambda: batch("live").completed_profiles > 0, 10.0, "progress")
        await asyncio.to_thread(wait_for, lambda: app.main.query_one(BatchesPane).selected is not None
                                and app.main.query_one(BatchesPane).selected.completed > 0, 5.0, "progress shown")
        assert "1 worker" in screen_text(app)

        await pilot.press("p")
        await settle(app, pilot)
        paused_at = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: worker.board.states.get(batch_id) == "paused", 2.0,
                                "the worker sees the pause")
        assert time.monotonic() - paused_at <= 2.0
        await pilot.press("p")
        await settle(app, pilot)

        await select_proxy(app, pilot, "p1:1")
        key = str(Proxy.get(Proxy.label == "p1:1").id)
        await pilot.press("d")
        await settle(app, pilot)
        await asyncio.to_thread(wait_for, lambda: worker.pool.state_of(key) == "disabled", 2.0,
                                "the worker sees the disable")
        await pilot.press("d")
        await settle(app, pilot)
        await asyncio.to_thread(wait_for, lambda: worker.pool.state_of(key) != "disabled", 2.0,
                                "the worker sees the enable")
        await pilot.press("q")
        await asyncio.to_thread(app.stopped.wait, 5.0)


# --- reads ---------------------------------------------------------------------------------------------


def test_job_window_orders_newest_first_filters_and_pages(store):
    b = ops.create_batch(store, "w", [f"u{i}" for i in range(50)] + ["odd_name%", "x!y"])
    ids = [j.id for j in Job.select().where(Job.batch == b).order_by(Job.id)]
    for n, job_id in enumerate(ids[:30]):
        Job.update(state="succeeded" if n % 3 else "failed", finished_at=1000.0 + n,
                   error_kind=None if n % 3 else "proxy_failed",
                   error_message=None if n % 3 else f"boom {n}").where(Job.id == job_id).execute()
    Job.update(state="running", started_at=2000.0).where(Job.id == ids[40]).execute()
    w = reads.job_window(store, b, limit=10)
    assert w.total == 52
    assert w.rows[0].id == ids[40]  # the most recent activity: a check in flight
    assert [r.id for r in w.rows[1:4]] == [ids[29], ids[28], ids[27]]
    last = reads.job_window(store, b, offset=50, limit=10)
    assert [r.state for r in last.rows] == ["pending", "pending"]
    failed = reads.job_window(store, b, state="failed")
    assert failed.total == 10 and {r.state for r in failed.rows} == {"failed"}
    assert reads.job_window(store, b, text="BOOM 2").total == 3  # boom 21, 24, 27: case-insensitive
    assert [r.username for r in reads.job_window(store, b, text="%").rows] == ["odd_name%"]
    assert [r.username for r in reads.job_window(store, b, text="_name").rows] == ["odd_name%"]
    assert [r.username for r in reads.job_window(store, b, text="x!").rows] == ["x!y"]
    with pytest.raises(ValueError):
        reads.job_window(store, b, state="bogus")


def test_job_detail_has_its_log_lines(store):
    b = ops.create_batch(store, "d", ["solo"])
    job = Job.get(Job.batch == b)
    from storycheck_tui.store.models import BatchLog

    BatchLog.insert_many([
        {"created": 1.0, "level": "WARNING", "event": "RETRY_SCHEDULED", "batch": b, "job": job.id,
         "username": "solo", "proxy": "p", "message": "retry", "details": '{"attempt": 1}'},
        {"created": 2.0, "level": "ERROR", "event": "CHECK_FAILED", "batch": b, "job": job.id,
         "username": "solo", "proxy": "p", "message": "failed", "details": '{"attempt": 2, "traceback": "TB"}'},
    ]).execute()
    d = reads.job_detail(store, job.id)
    assert [ln.event for ln in d.log] == ["RETRY_SCHEDULED", "CHECK_FAILED"]
    assert d.log[0].attempt == 1 and d.traceback == "TB"
    assert reads.job_detail(store, 10**9) is None


def test_gap_entry_is_a_log_entry():
    from storycheck_tui.ui.panes.logview import gap_entry

    e = gap_entry(12, LogEntry(seq=1, created=5.0, level="INFO", logger="x", event=None, message="m"))
    assert e.event == "LOG_GAP" and "12" in e.message


_ = LogPane  # imported for type references in failures


def test_a_watch_only_console_never_blanks_what_workers_wrote_about_proxies(tmp_path):
    """Regression: the console's runner wrote its (empty) pool back, blanking latency and last error."""
    store = sample_copy(tmp_path)
    runner = build_runner(store, Settings(), workers=0)
    try:
        runner.start()
        key = str(Proxy.get(Proxy.label == "uk-lon-01.proxy.example:8080").id)
        runner.toggle_proxy(key)  # enable
        runner.toggle_proxy(key)  # disable again
        # Two keeper passes after the toggles, seen by their effect: a batch created now shows in
        # the runner's snapshot once a pass has read it; the second proves the first pass (and its
        # proxy sync, where the blanking happened) finished.
        for marker in ("keeper pass 1", "keeper pass 2"):
            bid = ops.create_batch(store, marker, ["x"])
            wait_for(lambda: any(b.id == bid for b in runner.snapshot().batches), 10, f"the runner to read {marker}")
    finally:
        runner.stop(0)
    disabled = Proxy.get(Proxy.label == "uk-lon-01.proxy.example:8080")
    cooling = Proxy.get(Proxy.label == "nl-ams-01.proxy.example:3128")
    assert disabled.disabled and disabled.last_latency_ms == 640.0
    assert cooling.last_error == "proxy_failed: 502 Bad Gateway from the proxy"
    assert cooling.last_latency_ms == 1_740.0
    store.close()
