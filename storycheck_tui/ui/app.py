"""The operator console: a Textual app over a running :class:`~storycheck_tui.engine.runner.Runner`.

Data flow (nothing here blocks the event loop on the database or the network):

* a timer (``refresh_every``, 4 per second by default) reads ``runner.snapshot()`` (cheap, in
  memory) and drains the log ring since the last sequence number, then updates the status
  bar, the batch table (cells in place) and the log (one append of all new entries);
* about once a second, or at once when a pane asks (or the selected batch changes state),
  a thread worker reads the proxy and worker tables and the results window of the selected
  batch from the database, and posts the answer back as one message;
* operator commands (pause, cancel, proxy on/off, …) run in thread workers too: a write
  that waits for SQLite's lock never freezes the screen.

For deterministic snapshots, ``refresh_every=None`` turns the timer off and every read
happens inline, once, on mount; ``clock`` and ``tz`` pin the time used for ages and ETAs.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey
from textual.worker import Worker, WorkerState

from storycheck_tui import logs
from storycheck_tui.engine.runner import EngineSnapshot, Runner
from storycheck_tui.logs import LogEntry
from storycheck_tui.store import batches as ops
from storycheck_tui.store import reads
from storycheck_tui.store.db import Store
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.commands import StorycheckCommands
from storycheck_tui.ui.modals.confirm import ConfirmScreen
from storycheck_tui.ui.modals.detail import DetailScreen
from storycheck_tui.ui.modals.export import Exported, ExportScreen
from storycheck_tui.ui.modals.help import HelpScreen
from storycheck_tui.ui.modals.new_batch import Created, NewBatchScreen
from storycheck_tui.ui.panes.base import Pane
from storycheck_tui.ui.panes.batches import BatchesPane, BatchesTable, BatchLine
from storycheck_tui.ui.panes.logview import LogPane, gap_entry
from storycheck_tui.ui.panes.proxies import LatencyHistory, ProxiesPane, merge
from storycheck_tui.ui.panes.results import ResultsPane, ResultsTable, WindowQuery
from storycheck_tui.ui.panes.workers import WorkersPane
from storycheck_tui.ui.rates import RateTracker
from storycheck_tui.ui.status import StatusBar, StatusFacts

#: at most this many log records are taken from the ring per redraw
LOG_CAP_PER_TICK = 5000
#: seconds between database reads of the proxy/worker tables and the results window
DB_READ_EVERY = 1.0
#: seconds in-flight checks may finish when the console quits; the rest go back to the queue
QUIT_GRACE = 3.0
#: allocations between young-generation collections while the console runs (Python's default: 700)
YOUNG_GC_THRESHOLD = 3000


class LogSource:
    """What the console reads log records from: ``since(seq) -> list[LogEntry]``."""

    def since(self, seq: int) -> list[LogEntry]:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass(frozen=True)
class DbState:
    proxies: list[reads.ProxyRow] | None = None
    workers: list[reads.WorkerRow] | None = None
    window: reads.JobWindow | None = None
    error: str | None = None


class DbRead(Message):
    """The answer of one background database read."""

    def __init__(self, state: DbState) -> None:
        super().__init__()
        self.state = state


class EngineStopped(Message):
    pass


@dataclass(frozen=True)
class CommandDone:
    message: str
    severity: str = "information"


class KeysFooter(Footer):
    """Textual's footer, rebuilt only when the keys it shows change.

    ``Footer`` mounts a new widget per key whenever the screen's bindings are updated, which
    happens after most actions even when the focused widget, and so the keys, stay the same.
    """

    _shown_keys: tuple | None = None

    def _keys_now(self, screen: Screen) -> tuple:
        return tuple((binding.key, binding.key_display, binding.action, binding.description, binding.group, enabled,
                      tooltip)
                     for _node, binding, enabled, tooltip in screen.active_bindings.values() if binding.show)

    def bindings_changed(self, screen: Screen) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            keys = self._keys_now(screen)
            if keys == self._shown_keys and self._bindings_ready:
                return
            self._shown_keys = keys
        super().bindings_changed(screen)

    def compose(self):
        """``Footer.compose`` for ungrouped keys, each key made with its ``-compact`` class
        already set (``FooterKey`` otherwise restyles itself once more when it is mounted) and
        not data-bound to the footer (a rebuild happens whenever the keys change)."""
        if not self._bindings_ready:
            return
        shown = [(binding, enabled, tooltip) for _node, binding, enabled, tooltip
                 in self.screen.active_bindings.values() if binding.show]
        if (self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE) or any(b.group for b, _, _ in shown):
            yield from super().compose()
            return
        by_action: dict[str, tuple] = {}
        for item in shown:
            by_action.setdefault(item[0].action, item)  # the first binding of each action
        self.styles.grid_size_columns = len(by_action)
        for binding, enabled, tooltip in by_action.values():
            key = FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            disabled=not enabled, tooltip=tooltip, classes="-compact" if self.compact else "")
            # not data_bind(compact=...): that leaves a watcher on the footer that holds every key
            # ever made, so each rebuild leaked a dozen widgets
            key.set_reactive(FooterKey.compact, self.compact)
            yield key


class MainScreen(Screen):
    BINDINGS = keymap.MAIN

    def compose(self):
        app: StorycheckApp = self.app  # type: ignore[assignment]
        yield StatusBar(id="status")
        with Horizontal(id="top"):
            yield BatchesPane(id="batches")
            yield ProxiesPane(id="proxies")
        yield ResultsPane(id="results")
        with Horizontal(id="bottom"):
            yield LogPane(id="log", tz=app.tz, capacity=app.log_capacity)
            yield WorkersPane(id="workers")
        yield KeysFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(WorkersPane).me = self.app.runner.worker_id  # type: ignore[attr-defined]
        self.query_one(BatchesPane).focus_target()
        self.app.start_refresh()  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        narrow = self.size.width < 100
        self.set_class(self.size.height < 32, "-short")
        self.set_class(narrow, "-narrow")
        pane = self.focused_pane()
        self._show(pane.pane_name if pane is not None else None)
        self.query_one(ResultsPane).set_compact(narrow)
        self.app.tick()  # type: ignore[attr-defined]

    # -- panes --------------------------------------------------------------------------------------

    def pane(self, name: str) -> Pane:
        return self.query_one(f"#{name}", Pane)

    def focused_pane(self) -> Pane | None:
        node: Widget | None = self.focused
        while node is not None and not isinstance(node, Pane):
            node = node.parent if isinstance(node.parent, Widget) else None
        return node

    def action_focus_pane(self, name: str) -> None:
        if self.maximized is not None:
            self.minimize()
        self._show(name)
        self.pane(name).focus_target()

    def _show(self, name: str | None) -> None:
        """On a narrow terminal proxies and workers share a row with batches and log:
        the one that has the focus is the one shown. (A class on the screen restyles every
        widget, so on a wide terminal, where they change nothing, they stay off.)"""
        narrow = self.has_class("-narrow")
        self.set_class(narrow and name == "workers", "-show-workers")
        self.set_class(narrow and name == "proxies", "-show-proxies")

    def on_descendant_focus(self, event) -> None:
        pane = self.focused_pane()
        if pane is not None:
            self._show(pane.pane_name)

    def action_focus_next(self) -> None:
        self.focus_next()

    def action_focus_previous(self) -> None:
        self.focus_previous()

    def action_filter(self) -> None:
        pane = self.focused_pane() or self.pane("results")
        if not pane.open_filter():
            self.app.notify(f"the {pane.pane_title.lower()} pane has no filter", severity="warning")

    def action_toggle_maximize(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    # -- actions on the selected batch / proxy --------------------------------------------------------

    def _batch(self):
        b = self.query_one(BatchesPane).selected
        if b is None:
            self.app.notify("no batch selected: press n to create one", severity="warning")
        return b

    def action_pause_batch(self) -> None:
        b = self._batch()
        if b is None:
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        if b.state == "paused":
            app.command(lambda: CommandDone(f"batch {b.id} resumed") if app.runner.resume(b.id)
                        else CommandDone(f"batch {b.id} is not paused any more", "warning"))
        elif b.state in ("running", "queued"):
            app.command(lambda: CommandDone(f"batch {b.id} paused: workers take no more of its profiles")
                        if app.runner.pause(b.id) else CommandDone(f"batch {b.id} cannot be paused now", "warning"))
        else:
            app.notify(f"batch {b.id} is {b.state}: nothing to pause or resume", severity="warning")

    def action_cancel_batch(self) -> None:
        b = self._batch()
        if b is None:
            return
        if b.state not in ("running", "queued", "paused"):
            self.app.notify(f"batch {b.id} is {b.state}: nothing to cancel", severity="warning")
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        msg = Text("Cancel batch ")
        msg.append_text(fmt.plain(b.name, "bold"))
        msg.append(f" (#{b.id})? Its {b.remaining:,} unchecked profiles will not be checked; "
                   "checks in flight finish. This cannot be undone.")

        def done(yes: bool | None) -> None:
            if yes:
                app.command(lambda: CommandDone(f"batch {b.id} cancelled: {app.runner.cancel(b.id):,} profiles dropped"))

        self.app.push_screen(ConfirmScreen("Cancel batch", msg, yes="Cancel batch", no="Keep it"), done)

    def action_retry_failed(self) -> None:
        b = self._batch()
        if b is None:
            return
        if not b.failed:
            self.app.notify(f"batch {b.id} has no failed checks", severity="warning")
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        app.command(lambda: CommandDone(f"batch {b.id}: {app.runner.retry_failed(b.id):,} failed checks queued again"))

    def action_new_batch(self) -> None:
        app: StorycheckApp = self.app  # type: ignore[assignment]

        def done(result: Created | None) -> None:
            if result is not None:
                app.select_batch_when_seen = result.batch_id
                app.notify(result.message)
                app.request_read()

        self.app.push_screen(NewBatchScreen(app.create_batch_from_file), done)

    def action_export_batch(self) -> None:
        b = self._batch()
        if b is None:
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", b.name).strip("-.") or "batch"
        default = str(Path.cwd() / f"{slug}-{b.id}.csv")

        def done(result: Exported | None) -> None:
            if result is not None:
                app.notify(f"exported {result.rows:,} rows of batch {b.id} to {result.path} ({result.fmt})")

        self.app.push_screen(ExportScreen(f"{b.name} (#{b.id})", default,
                                          lambda path, kind: app.export_batch(b.id, path, kind)), done)

    def _proxy(self):
        p = self.query_one(ProxiesPane).selected
        if p is None:
            self.app.notify("no proxy selected", severity="warning")
        elif p.key == "direct":
            self.app.notify("no proxies are configured: checks go direct (add some with --proxies FILE)",
                            severity="warning")
            return None
        return p

    def action_toggle_proxy(self) -> None:
        p = self._proxy()
        if p is None:
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        label = fmt.literal(p.label)
        app.command(lambda: CommandDone(f"proxy {label} disabled" if app.runner.toggle_proxy(p.key)
                                        else f"proxy {label} enabled"))

    def action_retry_proxy(self) -> None:
        p = self._proxy()
        if p is None:
            return
        app: StorycheckApp = self.app  # type: ignore[assignment]
        label = fmt.literal(p.label)
        done = (f"proxy {label}: the workers re-validate it within a second or two" if app.watch_only
                else f"proxy {label}: re-validating now")
        app.command(lambda: (app.runner.retry_proxy(p.key), CommandDone(done))[1])

    def action_revalidate_all(self) -> None:
        app: StorycheckApp = self.app  # type: ignore[assignment]
        done = ("every enabled proxy: the workers re-validate them within a second or two" if app.watch_only
                else "re-validating every enabled proxy now")
        app.command(lambda: (app.runner.revalidate_all(), CommandDone(done))[1])

    def action_quit_app(self) -> None:
        self.app.request_quit()  # type: ignore[attr-defined]

    def action_help(self) -> None:
        self.app.action_help()  # type: ignore[attr-defined]

    # -- messages from panes --------------------------------------------------------------------------

    def on_batches_table_selected(self, event: BatchesTable.Selected) -> None:
        self.query_one(ResultsPane).set_batch(self.query_one(BatchesPane).selected)

    def on_results_pane_reload(self, event: ResultsPane.Reload) -> None:
        self.app.request_read()  # type: ignore[attr-defined]

    def on_results_table_open_detail(self, event: ResultsTable.OpenDetail) -> None:
        self.app.open_detail(event.job_id)  # type: ignore[attr-defined]


class StorycheckApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "storycheck"
    COMMANDS = App.COMMANDS | {StorycheckCommands}
    BINDINGS = [keymap.HELP, Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True)]
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, runner: Runner, store: Store, ring, *, clock: Callable[[], float] = time.time,
                 tz: tzinfo | None = None, refresh_every: float | None = 0.25, note: str | None = None,
                 quit_grace: float = QUIT_GRACE, keymap_overrides: dict[str, str] | None = None,
                 startup_messages: list[str] | None = None, log_capacity: int = 10_000,
                 rates: RateTracker | None = None, hello: str | None = None) -> None:
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
        self.startup_messages = startup_messages or []
        self.hello = hello
        self.select_batch_when_seen: int | None = None
        self.stopping: str | None = None
        self.stopped = threading.Event()
        self._log_seq = 0
        self._db = DbState()
        self._latency = LatencyHistory()
        self._reading = False
        self._read_again = False
        self._last_read = 0.0
        self._results_sig: tuple | None = None
        self._snap: EngineSnapshot | None = None
        self._gc_saved: tuple[int, ...] | None = None  # the collector's thresholds before the console ran
        self.tick_seconds: list[float] = []  # redraw cost of recent ticks (for measurements)
        self.read_seconds: list[float] = []  # background database reads (off the UI thread)
        self.apply_seconds: list[float] = []  # showing one read's answer (on the UI thread)
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
            self._freeze_startup_objects()
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
        self._apply_db(self._read_db(self._results_query()))
        self.tick()

    # -- the redraw ----------------------------------------------------------------------------------

    def tick(self) -> None:
        started = time.perf_counter()
        try:
            main = self.main
        except LookupError:
            return
        snap = self.runner.snapshot()
        self._snap = snap
        now = self.clock()
        batches = main.query_one(BatchesPane)
        lines = []
        for v in snap.batches:
            self.rates.observe(v.id, now, v.completed)
            lines.append(BatchLine(v, self.rates.rate(v.id, now) if v.state == "running" else 0.0))
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
        new = self.ring.since(self._log_seq)
        if not new:
            return
        out: list[LogEntry] = []
        if len(new) > LOG_CAP_PER_TICK:
            skipped = len(new) - LOG_CAP_PER_TICK
            new = new[-LOG_CAP_PER_TICK:]
            out.append(gap_entry(skipped, new[0]))
        if self._log_seq and new[0].seq > self._log_seq + 1 and not out:
            out.append(gap_entry(new[0].seq - self._log_seq - 1, new[0]))
        out.extend(new)
        self._log_seq = new[-1].seq
        main.query_one(LogPane).add(out)

    def _status(self, main: MainScreen, snap: EngineSnapshot, lines: list[BatchLine], now: float) -> None:
        views = [ln.view for ln in lines]
        running = [ln for ln in lines if ln.view.state == "running"]
        proxies = main.query_one(ProxiesPane)
        merged = merge(snap.proxies, self._db.proxies, watch_only=self.watch_only, history=self._latency)
        proxies.update_proxies(merged, now)
        direct = not merged or (len(merged) == 1 and merged[0].key == "direct")
        others = [w for w in (self._db.workers or []) if w.id != snap.worker_id and w.state == "running"]
        facts = StatusFacts(
            running=len(running), paused=sum(1 for v in views if v.state == "paused"),
            queued=sum(1 for v in views if v.state == "queued"),
            rate=sum(ln.rate for ln in running), remaining=sum(ln.view.remaining for ln in running),
            succeeded=sum(v.succeeded for v in views), failed=sum(v.failed for v in views),
            usable=sum(1 for p in merged if p.usable(now)), proxies=len(merged), direct=direct,
            threads=snap.threads, in_flight=snap.in_flight, workers=len(others),
            waiting_for_proxy=snap.waiting_for_proxy, note=self.note, stopping=self.stopping,
            compact=main.size.width < 100)
        main.query_one(StatusBar).show(facts)

    # -- database reads off the UI thread ---------------------------------------------------------------

    def _results_query(self) -> WindowQuery | None:
        try:
            return self.main.query_one(ResultsPane).window_query()
        except LookupError:
            return None

    def request_read(self) -> None:
        if not self.refresh_every:
            self._apply_db(self._read_db(self._results_query()))
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self._read_again = False
        self._last_read = time.monotonic()
        query = self._results_query()
        self.run_worker(lambda: self._read_in_thread(query), thread=True, group="db-read", exit_on_error=False)

    def _read_in_thread(self, query: WindowQuery | None) -> None:
        started = time.perf_counter()
        try:
            state = self._read_db(query)
        finally:
            self._release_connection()
        self.read_seconds.append(time.perf_counter() - started)
        del self.read_seconds[:-200]
        self.post_message(DbRead(state))

    def _release_connection(self) -> None:
        """Worker threads give their database connection back (a pool on PostgreSQL)."""
        try:
            self.store.db.close()
        except Exception:
            pass

    def _read_db(self, query: WindowQuery | None) -> DbState:
        try:
            window = reads.job_window(self.store, query.batch_id, state=query.state, text=query.text,
                                      offset=query.offset, limit=query.limit) if query else None
            return DbState(reads.proxies(self.store), reads.workers(self.store, now=self.clock()), window)
        except Exception as exc:  # the database is busy or gone: say so, try again next time
            return DbState(self._db.proxies, self._db.workers, None, f"{type(exc).__name__}: {exc}")

    def on_db_read(self, message: DbRead) -> None:
        self._reading = False
        started = time.perf_counter()
        self._apply_db(message.state)
        self.apply_seconds.append(time.perf_counter() - started)
        del self.apply_seconds[:-200]
        if self._read_again and not self.stopping:
            self.request_read()

    def _apply_db(self, state: DbState) -> None:
        if state.error:
            if state.error != self._db.error:
                self.notify(f"database read failed: {state.error}", severity="error", timeout=6)
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
        if state.window is not None:
            main.query_one(ResultsPane).apply_window(state.window, now)
        if self._snap is not None:
            self._status(main, self._snap, [BatchLine(v, self.rates.rate(v.id, now) if v.state == "running" else 0.0)
                                            for v in self._snap.batches], now)

    # -- commands ------------------------------------------------------------------------------------

    def command(self, fn: Callable[[], CommandDone]) -> None:
        """Run an engine/database command in a thread; say what it did; redraw."""
        if self.stopping:
            self.notify("stopping: no more commands", severity="warning")
            return
        def run() -> CommandDone:
            try:
                return fn()
            finally:
                self._release_connection()

        self.run_worker(run, thread=True, group="command", exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "command":
            return
        if event.state == WorkerState.SUCCESS:
            done: CommandDone = event.worker.result
            self.notify(done.message, severity=done.severity)  # type: ignore[arg-type]
        elif event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"command failed: {fmt.literal(err)}", severity="error", timeout=8)
        else:
            return
        self._results_sig = None
        self.tick()
        self.request_read()

    def create_batch_from_file(self, path: str, name: str, skip_invalid: bool) -> Created:
        from storycheck_tui.inputs.profiles import load_profiles

        path = str(Path(path).expanduser())
        plist = load_profiles(path, skip_invalid=skip_invalid)
        name = name or Path(path).stem
        batch_id = ops.create_batch(self.store, name, plist.usernames, source_file=path)
        self.runner.refresh()  # the new batch shows (and is claimed) now, not at the next keeper pass
        extra = []
        if plist.duplicates:
            extra.append(f"{plist.duplicates} duplicates dropped")
        if plist.invalid:
            extra.append(f"{len(plist.invalid)} invalid lines skipped")
        return Created(batch_id, f"batch {batch_id} {fmt.literal(name)!r}: {len(plist.usernames):,} profiles"
                       + (f" ({', '.join(extra)})" if extra else ""))

    def export_batch(self, batch_id: int, path: str, kind: str) -> int:
        from storycheck_tui.exports import export_to_file

        return export_to_file(self.store, batch_id, kind, str(Path(path).expanduser()))

    def open_detail(self, job_id: int) -> None:
        if self.refresh_every:
            self.push_screen(DetailScreen(loader=lambda: reads.job_detail(self.store, job_id), now=self.clock,
                                          tz=self.tz))
        else:
            self.push_screen(DetailScreen(detail=reads.job_detail(self.store, job_id), now=self.clock, tz=self.tz))

    async def run_binding(self, binding: Binding) -> None:
        """Run a key's action from the command palette, on the node that owns it."""
        main = self.main
        if binding in keymap.RESULTS:
            node = main.query_one(ResultsTable)
            node.focus()
        elif binding in keymap.LOG:
            node = main.query_one(LogPane).target()
            node.focus()
        elif binding in keymap.APP:
            node = self
        else:
            node = main
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
        snap = self.runner.snapshot()
        busy = snap.threads and (snap.in_flight or any(b.state == "running" and b.remaining for b in snap.batches))
        if not busy:
            self.shutdown()
            return
        msg = Text(f"{snap.in_flight} checks are in flight. They get {self.quit_grace:.0f} s to finish; the rest go "
                   "back to the queue for the next worker. Batches stay as they are.")

        def done(yes: bool | None) -> None:
            if yes:
                self.shutdown()

        self.push_screen(ConfirmScreen("Quit while checks run?", msg, yes="Quit", no="Stay"), done)

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
