"""The operator console: a Textual app over a running :class:`~storycheck_tui.engine.runner.Runner`.

Data flow (nothing here blocks the event loop on the database or the network):

* a timer (``refresh_every``, 4 per second by default) reads ``runner.snapshot()`` (cheap, in
  memory) and drains the log ring since the last sequence number, then updates the status
  bar, the batch table (cells in place) and the log (one append of all new entries);
* about once a second, or at once when a pane asks (or the selected batch changes state),
  a thread worker reads the proxy and worker tables and the results window of the selected
  batch from the database, and posts the answer back as one message;
* operator commands (pause, cancel, proxy on/off, …) run in thread workers too (see
  :mod:`storycheck_tui.ui.screen`): a write that waits for SQLite's lock never freezes the screen.

Threads: every attribute of the app and its widgets belongs to the UI thread. Worker threads
(``@work(thread=True)``) read only what they were given and hand their answer back as a
message or a worker result; the engine's threads are the runner's (its ``snapshot()`` is the
UI thread's one way in), the log ring is filled by any thread and drained here.

For deterministic snapshots, ``refresh_every=None`` turns the timer off and every read
happens inline, once, on mount; ``clock`` and ``tz`` pin the time used for ages and ETAs.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from contextlib import contextmanager
from datetime import tzinfo
from typing import Callable, Iterator

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widget import Widget
from textual.worker import WorkerState as TaskState, get_current_worker

from storycheck_tui import logs
from storycheck_tui.engine.runner import EngineSnapshot, Runner
from storycheck_tui.store import knobs as knob_store
from storycheck_tui.store import reads
from storycheck_tui.store.batches import summary
from storycheck_tui.store.db import Store
from storycheck_tui.ui import keymap
from storycheck_tui.ui.commands import StorycheckCommands
from storycheck_tui.ui.messages import DbRead, DbState, EngineStopped
from storycheck_tui.ui.modals.confirm import ConfirmScreen
from storycheck_tui.ui.modals.detail import DetailScreen, load_detail
from storycheck_tui.ui.modals.help import HelpScreen
from storycheck_tui.ui.table import Table
from storycheck_tui.ui.panes.batches import BatchesPane, BatchLine
from storycheck_tui.ui.alerts import BELL_ENV, Alert, Alerts
from storycheck_tui.ui.logfeed import DB_TAIL_LIMIT, DB_TAIL_START, LogFeed
from storycheck_tui.ui.modals.charts import ChartsScreen
from storycheck_tui.ui.series import ChartData
from storycheck_tui.ui.panes.logview import LogPane
from storycheck_tui.ui.panes.proxies import LatencyHistory, ProxiesPane, merge
from storycheck_tui.ui.panes.results import ResultsPane, ResultsTable, WindowQuery
from storycheck_tui.ui.panes.workers import LATE_AFTER, WorkersPane
from storycheck_tui.ui.rates import RateTracker
from storycheck_tui.ui.screen import NARROW, MainScreen
from storycheck_tui.ui.status import StatusBar, StatusFacts, engine_status
from storycheck_tui.states import BatchState, WorkerState

#: seconds between database reads of the proxy/worker tables and the results window
DB_READ_EVERY = 1.0
#: seconds in-flight checks may finish when the console quits; the rest go back to the queue
QUIT_GRACE = 3.0
#: seconds after start-up that its objects are frozen out of the collector's reach
FREEZE_AFTER = 1.0
#: allocations between young-generation collections while the console runs (Python's default: 700)
YOUNG_GC_THRESHOLD = 3000


class StorycheckApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "storycheck"
    COMMANDS = App.COMMANDS | {StorycheckCommands}
    # ctrl+c and ctrl+q quit from anywhere (a screen's ctrl+c is "copy", which left ctrl+c doing
    # nothing); q asks first while checks run, as they do
    BINDINGS = [keymap.HELP, Binding("ctrl+q,ctrl+c", "quit_app", "Quit", show=False, priority=True)]
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, runner: Runner, store: Store, ring, *, clock: Callable[[], float] = time.time,
                 tz: tzinfo | None = None, refresh_every: float | None = 0.25, note: str | None = None,
                 quit_grace: float = QUIT_GRACE, keymap_overrides: dict[str, str] | None = None,
                 startup_messages: list[str] | None = None, log_capacity: int = 10_000,
                 rates: RateTracker | None = None, hello: str | None = None, read_only: bool = False,
                 bell: bool | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.store = store
        self.ring = ring
        self.clock = clock
        self.tz = tz
        self.refresh_every = refresh_every
        self.note = note
        self.quit_grace = quit_grace
        self.log_capacity = log_capacity
        self.rates = rates or RateTracker()
        self.watch_only = runner.threads == 0
        # read-only: nothing here changes anything (no steering key, palette command or modal)
        self.read_only = read_only
        self.hidden_actions = frozenset(keymap.STEERING_ACTIONS) if read_only else frozenset()
        self.startup_messages = startup_messages or []
        self.hello = hello
        self.select_batch_when_seen: int | None = None
        self.stopping: str | None = None
        self.stopped = threading.Event()
        self.log_feed = LogFeed(ring)
        self.alerts = Alerts()
        self.charts = ChartData()
        self.bell_on = bell if bell is not None else os.environ.get(BELL_ENV, "").strip().lower() in ("1", "true", "yes")
        self._db = DbState()
        self._latency = LatencyHistory()
        self._read_again = False
        self._last_read = 0.0
        self._results_sig: tuple | None = None
        self._snap: EngineSnapshot | None = None
        self._gc_saved: tuple[int, ...] | None = None  # the collector's thresholds before the console ran
        self.tick_seconds: list[float] = []  # redraw cost of recent ticks (read by benchmarks/)
        self.keymap_overrides = dict(keymap_overrides or {})
        if keymap_overrides:
            self.set_keymap(keymap_overrides)

    def seed_latency(self, proxy_id: int, values: list[float], count: int) -> None:
        self._latency.seed(proxy_id, values, count)

    # -- lifecycle -------------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return MainScreen(id="main")

    @property
    def main(self) -> MainScreen:
        for s in self.screen_stack:
            if isinstance(s, MainScreen):
                return s
        raise LookupError("no main screen")

    def start_refresh(self) -> None:
        """The main screen is composed: first redraw now, then on the timer."""
        if self.hello:
            self.notify(self.hello, timeout=12)
        for m in self.startup_messages:
            self.notify(m, severity="warning", timeout=10)
        if self.refresh_every:
            self.tick()
            self.set_interval(self.refresh_every, self.tick)
            self.request_read()
            # after the first full frame, not before it (a full collection takes ~25 ms on a big start)
            self.set_timer(FREEZE_AFTER, self._freeze_startup_objects)
        else:
            self.refresh_now()

    def _freeze_startup_objects(self) -> None:
        """Garbage collection for a long-running screen: fewer, shorter full collections.

        What start-up built (modules, classes, the screen and its widgets) lives as long as
        the console: frozen out of the collector's reach, a full collection scans only what
        came after. And a young generation of 3,000 allocations instead of 700: what a frame
        allocates mostly dies before it is collected instead of being promoted to the old
        generation (Textual's rendered strips often refer to themselves, so only a collection
        frees them). Under load, full collections stopped the screen for 60-140 ms about
        every second and a half before; now about every 3.5 s, and the collector's time in
        all fell by a third. Both undone when the app unmounts.
        """
        if self._gc_saved is None:
            gc.collect()  # start-up's garbage is freed, not frozen
            gc.freeze()
            self._gc_saved = gc.get_threshold()
            gc.set_threshold(max(YOUNG_GC_THRESHOLD, self._gc_saved[0]), *self._gc_saved[1:])

    def on_unmount(self) -> None:
        if self._gc_saved is not None:
            gc.set_threshold(*self._gc_saved)
            gc.unfreeze()
            self._gc_saved = None

    def refresh_now(self) -> None:
        """One full redraw with inline database reads (tests and snapshots)."""
        self.tick()
        self._apply_db(self._read_db(self._results_query(), self.log_feed.db_after, self.alerts.story_after,
                                        self._charted_batch()))
        self.tick()

    # -- the redraw ----------------------------------------------------------------------------------

    def tick(self) -> None:
        if not self.is_running:  # shutting down: the timer may fire while the panes are being removed
            return
        started = time.perf_counter()
        try:
            main = self.main
        except LookupError:
            return
        snap = self.runner.snapshot()
        self._snap = snap
        now = self.clock()
        batches = main.query_one(BatchesPane)
        for v in snap.batches:
            self.rates.observe(v.id, now, v.completed)
            self.charts.counters(now, v.id, v.completed, v.failed)
        lines = self._batch_lines(snap, now)
        self._alert(self.alerts.batches(snap.batches))
        self.rates.forget({v.id for v in snap.batches})
        batches.update_batches(lines, now)
        if self.select_batch_when_seen is not None and any(v.id == self.select_batch_when_seen for v in snap.batches):
            batches.select(self.select_batch_when_seen)
            self.select_batch_when_seen = None
        results = main.query_one(ResultsPane)
        selected = batches.selected
        results.set_batch(selected)
        if selected is not None and results.follow:
            sig = (selected.id, selected.completed, selected.state, selected.cancelled)
            old = self._results_sig
            # more checks done is shown about once a second (each read rewrites the window);
            # another batch, a new state or cancelled profiles at once
            progress_only = old is not None and sig[0] == old[0] and sig[2:] == old[2:]
            if sig != old and (not progress_only or time.monotonic() - self._last_read >= DB_READ_EVERY):
                self._results_sig = sig
                self._read_again = True
        self._drain_log(main)
        self._status(main, snap, lines, now)
        if self.refresh_every and (self._read_again or time.monotonic() - self._last_read >= DB_READ_EVERY):
            self.request_read()
        self.tick_seconds.append(time.perf_counter() - started)
        del self.tick_seconds[:-200]

    def _drain_log(self, main: MainScreen) -> None:
        new = self.log_feed.from_ring()
        if new:
            self._count_429s(new)
            main.query_one(LogPane).add(new)

    def _count_429s(self, entries: list) -> None:
        limited = self.charts.rate_limited
        for e in entries:
            if e.event == "RATE_LIMITED":
                limited.add(e.created, 1)

    def _status(self, main: MainScreen, snap: EngineSnapshot, lines: list[BatchLine], now: float) -> None:
        views = [ln.view for ln in lines]
        running = [ln for ln in lines if ln.view.state == BatchState.RUNNING]
        proxies = main.query_one(ProxiesPane)
        merged = merge(snap.proxies, self._db.proxies, watch_only=self.watch_only, history=self._latency)
        proxies.update_proxies(merged, now)
        direct = not merged or (len(merged) == 1 and merged[0].key == "direct")
        others = [w for w in (self._db.workers or []) if w.id != snap.worker_id and w.state == WorkerState.RUNNING]
        usable = sum(1 for p in merged if p.usable(now))
        if not direct and self._db.proxies is not None:  # the pool as the database has it (not the first guess)
            self._alert(self.alerts.proxies(usable, len(merged)))
        facts = StatusFacts(
            running=len(running), paused=sum(1 for v in views if v.state == BatchState.PAUSED),
            queued=sum(1 for v in views if v.state == BatchState.QUEUED),
            rate=sum(ln.rate for ln in running), remaining=sum(ln.view.remaining for ln in running),
            succeeded=sum(v.succeeded for v in views), failed=sum(v.failed for v in views),
            usable=usable, proxies=len(merged), direct=direct,
            threads=snap.threads, in_flight=snap.in_flight, workers=len(others),
            waiting_for_proxy=snap.waiting_for_proxy, note=self.note, stopping=self.stopping,
            compact=main.size.width < NARROW, engine=engine_status(snap, self._db.workers, self._db.knobs, now))
        self._alert(self.alerts.circuit(facts.engine.circuit, facts.engine.circuit_reason))
        if facts.engine.pace is not None:
            self.charts.source_pace.add(now, facts.engine.pace)
        main.query_one(StatusBar).show(facts)

    # -- database reads off the UI thread ---------------------------------------------------------------

    def _results_query(self) -> WindowQuery | None:
        try:
            return self.main.query_one(ResultsPane).window_query()
        except LookupError:
            return None

    def request_read(self) -> None:
        """Read the proxy and worker tables and the results window again: now, or as soon as
        the read in flight has answered (reads never pile up behind a slow database)."""
        if not self.refresh_every:
            self._apply_db(self._read_db(self._results_query(), self.log_feed.db_after, self.alerts.story_after,
                                        self._charted_batch()))
            return
        if any(w.group == "db-read" and w.state in (TaskState.PENDING, TaskState.RUNNING) for w in self.workers):
            self._read_again = True
            return
        self._read_again = False
        self._last_read = time.monotonic()
        self._read_in_thread(self._results_query(), self.log_feed.db_after, self.alerts.story_after,
                             self._charted_batch())

    @work(thread=True, exclusive=True, group="db-read", exit_on_error=False)
    def _read_in_thread(self, query: WindowQuery | None, log_after: int | None, story_after: int | None,
                        charted: int | None) -> None:
        with self.connection():
            state = self._read_db(query, log_after, story_after, charted)
        if not get_current_worker().is_cancelled:
            self.post_message(DbRead(state))

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Around database work in a worker thread: the thread gives its connection back after
        (to the pool, on PostgreSQL), whatever happened."""
        try:
            yield
        finally:
            try:
                self.store.db.close()
            except Exception:
                pass

    def _charted_batch(self) -> int | None:
        """The batch whose outcomes the charts show (None: the charts are closed)."""
        return self.screen.batch_id if isinstance(self.screen, ChartsScreen) else None

    def _read_db(self, query: WindowQuery | None, log_after: int | None, story_after: int | None,
                 charted: int | None = None) -> DbState:
        try:
            outcomes = (charted, summary(self.store, charted)["outcome"]) if charted is not None else None
            stories = reads.new_stories_after(self.store, story_after) if story_after is not None else None
            start = reads.last_event_id(self.store) if story_after is None else None
            return DbState(reads.proxies(self.store), reads.workers(self.store, now=self.clock()),
                           self._read_window(query),
                           reads.log_tail(self.store, log_after, DB_TAIL_LIMIT if log_after is not None else DB_TAIL_START),
                           query,
                           stories, start, outcomes, knob_store.read(self.store))
        except Exception as exc:  # the database is busy or gone: say so, try again next time
            return DbState(error=f"{type(exc).__name__}: {exc}")

    def _read_window(self, query: WindowQuery | None) -> reads.JobWindow | None:
        if query is None:
            return None
        if query.ids is not None:  # a held page: the same jobs, as they are now
            return reads.JobWindow(query.batch_id, reads.jobs_by_id(self.store, list(query.ids)), len(query.ids),
                                   query.offset, query.limit, query.state, query.text)
        return reads.job_window(self.store, query.batch_id, state=query.state, text=query.text, offset=query.offset,
                                limit=query.limit, sort=query.sort, descending=query.descending, until=query.until)

    def on_db_read(self, message: DbRead) -> None:
        self._apply_db(message.state)
        if self._read_again and not self.stopping:
            self.request_read()

    def _apply_db(self, state: DbState) -> None:
        if state.error:
            if state.error != self._db.error:
                self.notify(f"database read failed: {state.error}", severity="error", timeout=6)
        if state.error:  # keep showing what the last good read found
            state = DbState(self._db.proxies, self._db.workers, knobs=self._db.knobs, error=state.error)
        self._db = state
        if state.proxies is not None:
            self._latency.observe(state.proxies)
        try:
            main = self.main
        except LookupError:
            return
        now = self.clock()
        if state.workers is not None:
            main.query_one(WorkersPane).update_workers(state.workers, now)
        if state.window is not None and state.window_query is not None:
            main.query_one(ResultsPane).apply_window(state.window, state.window_query, now)
        if state.outcomes is not None:
            self.charts.outcomes(now, *state.outcomes)
        if state.workers is not None:
            self.charts.workers_seen(now, {f"{w.host}:{w.pid}": w.rate for w in state.workers
                                           if w.state == WorkerState.RUNNING})
        if isinstance(self.screen, ChartsScreen):
            self.screen.show(self.charts, now)
        if state.story_start is not None and self.alerts.story_after is None:
            self.alerts.story_after = state.story_start
        if state.stories is not None:
            self._alert(self.alerts.stories(state.stories, self._snap.batches if self._snap else (), now))
        if state.log is not None:
            self._drain_log(main)  # first: a record of this process is known before it comes back from the table
            lines, more = self.log_feed.from_db(state.log)
            self._count_429s(lines)
            if lines:
                main.query_one(LogPane).add(lines)
            if more:
                self._read_again = True
        if self._snap is not None:
            self._status(main, self._snap, self._batch_lines(self._snap, now), now)

    def _batch_lines(self, snap: EngineSnapshot, now: float) -> list[BatchLine]:
        """The batches with their recent rates; a running batch says so when no worker is left
        to check it (instead of a rate that decays)."""
        workers = self._db.workers
        alive = bool(snap.threads) or workers is None or any(
            w.state == WorkerState.RUNNING and now - w.heartbeat_at <= LATE_AFTER for w in workers)
        return [BatchLine(v, self.rates.rate(v.id, now) if v.state == BatchState.RUNNING else 0.0, not alive)
                for v in snap.batches]

    def _alert(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.notify(a.message, severity="error" if a.severity == "error" else
                        "warning" if a.severity == "warning" else "information", timeout=10)
            if self.bell_on:
                self.bell()

    # -- commands ------------------------------------------------------------------------------------

    def command_done(self) -> None:
        """A command changed something: redraw, and read the database again, now."""
        self._results_sig = None
        self.tick()
        self.request_read()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast. Plain text unless asked otherwise: toasts carry batch names, proxy labels and
        errors, and a ``[`` in one of them must show as typed, never act as markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def open_detail(self, job_id: int) -> None:
        if self.refresh_every:
            self.push_screen(DetailScreen(loader=lambda: load_detail(self.store, job_id), now=self.clock,
                                          tz=self.tz))
        else:
            self.push_screen(DetailScreen(detail=load_detail(self.store, job_id), now=self.clock, tz=self.tz))

    async def run_binding(self, binding: Binding) -> None:
        """Run a key's action from the command palette, on the node that owns it."""
        main = self.main
        owners: dict[str, Callable[[], DOMNode]] = {
            keymap.SCOPE_RESULTS: lambda: main.query_one(ResultsTable),
            keymap.SCOPE_LOG: lambda: main.query_one(LogPane).target(),
            keymap.SCOPE_APP: lambda: self,
            keymap.SCOPE_MAIN: lambda: main,
            # the focused pane's table (the results table when the focus is elsewhere)
            keymap.SCOPE_TABLE: lambda: next((p.target() for p in [main.focused_pane()] if p is not None
                                              and isinstance(p.target(), Table)), main.query_one(ResultsTable)),
        }
        node = owners[keymap.scope(binding)]()
        if isinstance(node, Widget):
            node.focus()
        await node.run_action(binding.action)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- quitting ------------------------------------------------------------------------------------

    def action_quit_app(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        if self.stopping:
            self.exit(0)  # a second quit while stopping: don't wait
            return
        if isinstance(self.screen, ConfirmScreen) and self.screen.id == "quit-confirm":
            self.screen.dismiss(True)  # asked twice: yes
            return
        snap = self.runner.snapshot()
        busy = snap.threads and (snap.in_flight or any(b.state == BatchState.RUNNING and b.remaining for b in snap.batches))
        if not busy:
            self.shutdown()
            return
        msg = Text(f"{snap.in_flight} checks are in flight. They get {self.quit_grace:.0f} s to finish; the rest go "
                   "back to the queue for the next worker. Batches stay as they are.")

        def done(yes: bool | None) -> None:
            if yes:
                self.shutdown()

        self.push_screen(ConfirmScreen("Quit while checks run?", msg, yes="Quit", no="Stay", id="quit-confirm"), done)

    def shutdown(self) -> None:
        """Stop the engine in a thread (the screen keeps drawing "stopping…"), then exit."""
        if self.stopping:
            return
        self.stopping = "stopping… handing unfinished checks back"
        self.tick()

        def stop() -> None:
            try:
                self.runner.stop(self.quit_grace)
            except Exception:
                logs.log.error("engine stop failed", exc_info=True)
            finally:
                self.stopped.set()
                self.post_message(EngineStopped())

        threading.Thread(target=stop, name="storycheck-console-stop", daemon=True).start()
        self.set_timer(self.quit_grace + 8.0, lambda: self.exit(0))  # never hang on exit

    def on_engine_stopped(self, message: EngineStopped) -> None:
        self.exit(0)
