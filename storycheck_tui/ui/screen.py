"""The main screen: the five panes, moving between them, and the operator's commands.

Each command is two methods: ``action_*`` (on the UI thread) checks what is selected and
asks for a confirmation where one is due; a ``@work`` thread method then makes the change
through the engine or the database, so a write that waits for a lock never freezes the
screen, and returns a :class:`CommandDone` that is shown as a toast.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import work
from textual.containers import Horizontal
from textual.events import DescendantFocus, Resize
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.worker import Worker, WorkerState as TaskState

from storycheck_tui.intake import import_batch, plural
from storycheck_tui.store import knobs as knob_store
from storycheck_tui.store import reads
from storycheck_tui.store.batches import BatchView, summary
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.footer import KeysFooter
from storycheck_tui.ui.messages import BatchSelected, DetailWanted, ResultsWanted
from storycheck_tui.ui.modals.charts import ChartsScreen
from storycheck_tui.ui.modals.confirm import ConfirmScreen
from storycheck_tui.ui.modals.export import Exported, ExportScreen
from storycheck_tui.ui.modals.knobs import KnobsScreen
from storycheck_tui.ui.modals.new_batch import Created, NewBatchScreen
from storycheck_tui.ui.modals.watches import WatchesScreen
from storycheck_tui.ui.panes.base import Pane
from storycheck_tui.ui.panes.batches import BatchesPane
from storycheck_tui.ui.panes.logview import LogPane
from storycheck_tui.ui.panes.proxies import ProxiesPane, ProxyLine
from storycheck_tui.ui.panes.results import ResultsPane
from storycheck_tui.ui.panes.workers import WorkersPane
from storycheck_tui.ui.status import StatusBar
from storycheck_tui.ui.typed import ConsoleNode
from storycheck_tui.states import CLAIMABLE, OPEN, BatchState, JobState, ProxyState, WorkerState

#: a terminal narrower than this shows one of batches/proxies and one of log/workers
NARROW = 100
#: a terminal shorter than this gives the panes fewer lines
SHORT = 32
#: seconds r / R wait for a validation's result before saying there is none yet
VALIDATION_WAIT = 20.0


READ_ONLY_REFUSAL = ("read-only console: it changes nothing (started with --read-only or STORYCHECK_READ_ONLY=1); "
                     "use a console without it, or the storycheck command")


def steering(action: Callable[..., None]) -> Callable[..., None]:
    """An action that changes something: a read-only console says so instead."""

    @functools.wraps(action)
    def run(self: "MainScreen", *args) -> None:
        if self.app.read_only:
            self.app.notify(READ_ONLY_REFUSAL, severity="warning", timeout=6)
            return
        action(self, *args)

    return run


@dataclass(frozen=True)
class CommandDone:
    """What a command did, as its toast says it."""

    message: str
    severity: str = "information"


class MainScreen(ConsoleNode, Screen[None]):
    BINDINGS = keymap.MAIN

    #: Screen's own ``focused`` repaints the whole screen on every focus change (~9.5 ms a frame
    #: under load); here only what a focus change restyles is repainted: the panes that gain
    #: and lose it (their border), their tables (cursor colour) and the footer's keys
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    #: the screen's classes when its styles (and its widgets') were last brought up to date
    _styled_classes: frozenset[str] | None = None

    def update_node_styles(self, animate: bool = True) -> None:
        """A class change on the screen restyles every widget on it (~24 widgets and
        scrollbars, about a third of a zoom's frame), except Textual's ``-maximized-view``,
        set and cleared by each zoom: no rule of a widget on this screen depends on it (its
        one rule below the screen, ``.-maximized``, takes the zoomed pane, which its own
        class change restyles), so only the screen itself is restyled for it."""
        classes = frozenset(self.classes)
        before, self._styled_classes = self._styled_classes, classes
        if before is not None and classes ^ before == {"-maximized-view"}:
            self.app.stylesheet.update_nodes([self], animate=animate)
        else:
            super().update_node_styles(animate=animate)

    def compose(self):
        yield StatusBar(id="status")
        with Horizontal(id="top"):
            yield BatchesPane(id="batches")
            yield ProxiesPane(id="proxies")
        yield ResultsPane(id="results")
        with Horizontal(id="bottom"):
            yield LogPane(id="log", tz=self.app.tz, capacity=self.app.log_capacity)
            yield WorkersPane(id="workers")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(WorkersPane).me = self.app.runner.worker_id
        self.query_one(BatchesPane).focus_target()
        self.app.start_refresh()

    def on_resize(self, event: Resize) -> None:
        narrow = self.size.width < NARROW
        self.set_class(self.size.height < SHORT, "-short")
        self.set_class(narrow, "-narrow")
        pane = self.focused_pane()
        self._show(pane.pane_name if pane is not None else None)
        self.query_one(ResultsPane).set_compact(narrow)
        self.app.tick()

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

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        pane = self.focused_pane()
        if pane is not None:
            self._show(pane.pane_name)

    def action_focus_next(self) -> None:
        self._cycle(+1)

    def action_focus_previous(self) -> None:
        self._cycle(-1)

    def _cycle(self, step: int) -> None:
        """tab / shift+tab go through the panes in the order of their numbers (1 2 3 4 5), not
        in the order of the layout (1 3 2 4 5)."""
        panes = sorted(self.query(Pane), key=lambda p: p.number)
        current = self.focused_pane()
        if current is None or current not in panes:
            self.focus_next() if step > 0 else self.focus_previous()
            return
        self.action_focus_pane(panes[(panes.index(current) + step) % len(panes)].pane_name)

    def action_filter(self) -> None:
        pane = self.focused_pane() or self.pane("results")
        if not pane.open_filter():
            self.app.notify(f"the {pane.pane_title.lower()} pane has no filter", severity="warning")

    def action_toggle_maximize(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    def action_quit_app(self) -> None:
        self.app.request_quit()

    def action_charts(self) -> None:
        b = self.query_one(BatchesPane).selected
        self.app.push_screen(ChartsScreen(b.id if b else None, b.name if b else None))

    def action_watches(self) -> None:
        self.app.push_screen(WatchesScreen())

    @steering
    def action_knobs(self) -> None:
        def done(said: str | None) -> None:
            if said:
                self.app.notify(said)
                self.app.request_read()

        self.app.push_screen(KnobsScreen(self.set_knobs), done)

    def set_knobs(self, cap: float | None, threads: float | None) -> str:
        """Write both knobs (runs in the form's worker thread); what to say."""
        with self.app.connection():
            knob_store.set_knob(self.app.store, knob_store.PACE_CAP, cap)
            knob_store.set_knob(self.app.store, knob_store.THREADS, threads)
        set_ = knob_store.describe(knob_store.Knobs(cap, None if threads is None else int(threads)))
        return (", ".join(set_) if set_ else "knobs cleared: each worker's own settings") + \
            ": every running worker takes them within a second"

    def action_help(self) -> None:
        self.app.action_help()

    # -- messages from panes --------------------------------------------------------------------------

    def on_batch_selected(self, event: BatchSelected) -> None:
        self.query_one(ResultsPane).set_batch(self.query_one(BatchesPane).selected)

    def on_results_wanted(self, event: ResultsWanted) -> None:
        self.app.request_read()

    def on_detail_wanted(self, event: DetailWanted) -> None:
        self.app.open_detail(event.job_id)

    # -- the selected batch and proxy -------------------------------------------------------------------

    def _batch(self) -> BatchView | None:
        b = self.query_one(BatchesPane).selected
        if b is None:
            self.app.notify("no batch selected: press n to create one", severity="warning")
        return b

    def _proxy(self) -> ProxyLine | None:
        p = self.query_one(ProxiesPane).selected
        if p is None:
            self.app.notify("no proxy selected", severity="warning")
        elif p.key == "direct":
            self.app.notify("no proxies are configured: checks go direct (add some with --proxies FILE)",
                            severity="warning")
            return None
        return p

    def _can_command(self) -> bool:
        if self.app.stopping:
            self.app.notify("stopping: no more commands", severity="warning")
            return False
        return True

    # -- batch commands ---------------------------------------------------------------------------------

    @steering
    def action_pause_batch(self) -> None:
        b = self._batch()
        if b is None or not self._can_command():
            return
        if b.state == BatchState.PAUSED:
            self.resume_batch(b.id)
        elif b.state in CLAIMABLE:
            self.pause_batch(b.id)
        else:
            self.app.notify(f"batch {b.id} is {b.state}: nothing to pause or resume", severity="warning")

    @steering
    def action_pause_all(self) -> None:
        if not self._can_command():
            return
        views = self.app.runner.snapshot().batches
        active = [v.id for v in views if v.state in CLAIMABLE]
        paused = [v.id for v in views if v.state == BatchState.PAUSED]
        if active:
            self.pause_all(active)
        elif paused:
            self.resume_all(paused)
        else:
            self.app.notify("no batch is running, queued or paused", severity="warning")

    @work(thread=True, group="command", exit_on_error=False)
    def pause_all(self, batch_ids: list[int]) -> CommandDone:
        with self.app.connection():
            done = sum(1 for b in batch_ids if self.app.runner.pause(b))
        return CommandDone(f"paused {plural(done, 'batch', 'batches')}: every worker stops taking their profiles "
                           "within a second or two (P again resumes them)")

    @work(thread=True, group="command", exit_on_error=False)
    def resume_all(self, batch_ids: list[int]) -> CommandDone:
        with self.app.connection():
            done = sum(1 for b in batch_ids if self.app.runner.resume(b))
        return CommandDone(f"resumed {plural(done, 'batch', 'batches')}")

    @work(thread=True, group="command", exit_on_error=False)
    def pause_batch(self, batch_id: int) -> CommandDone:
        with self.app.connection():
            if self.app.runner.pause(batch_id):
                return CommandDone(f"batch {batch_id} paused: workers take no more of its profiles")
            return CommandDone(f"batch {batch_id} cannot be paused now", "warning")

    @work(thread=True, group="command", exit_on_error=False)
    def resume_batch(self, batch_id: int) -> CommandDone:
        with self.app.connection():
            if self.app.runner.resume(batch_id):
                return CommandDone(f"batch {batch_id} resumed")
            return CommandDone(f"batch {batch_id} is not paused any more", "warning")

    @steering
    def action_cancel_batch(self) -> None:
        b = self._batch()
        if b is None:
            return
        if b.state not in OPEN:
            self.app.notify(f"batch {b.id} is {b.state}: nothing to cancel", severity="warning")
            return
        msg = Text("Cancel batch ")
        msg.append_text(fmt.plain(b.name, "bold"))
        msg.append(f" (#{b.id})? Its {b.remaining:,} unchecked profiles will not be checked; "
                   "checks in flight finish. This cannot be undone.")

        def done(yes: bool | None) -> None:
            if yes and self._can_command():
                self.cancel_batch(b.id)

        self.app.push_screen(ConfirmScreen("Cancel batch", msg, yes="Cancel batch", no="Keep it"), done)

    @work(thread=True, group="command", exit_on_error=False)
    def cancel_batch(self, batch_id: int) -> CommandDone:
        with self.app.connection():
            dropped = self.app.runner.cancel(batch_id)
            in_flight = summary(self.app.store, batch_id)["state"].get(JobState.RUNNING, 0)
        # the pane counts every profile that will not be checked: these, and those of the checks
        # in flight that end without a result (handed back, then cancelled)
        return CommandDone(f"batch {batch_id} cancelled: {plural(dropped, 'pending profile')} dropped"
                           + (f"; {plural(in_flight, 'check')} in flight finish first" if in_flight else ""))

    @steering
    def action_retry_failed(self) -> None:
        b = self._batch()
        if b is None:
            return
        if not b.failed:
            self.app.notify(f"batch {b.id} has no failed checks", severity="warning")
            return
        if self._can_command():
            self.retry_failed(b.id)

    @work(thread=True, group="command", exit_on_error=False)
    def retry_failed(self, batch_id: int) -> CommandDone:
        with self.app.connection():
            queued = self.app.runner.retry_failed(batch_id)
        return CommandDone(f"batch {batch_id}: {queued:,} failed checks queued again")

    @steering
    def action_new_batch(self) -> None:
        def done(result: Created | None) -> None:
            if result is not None:
                self.app.select_batch_when_seen = result.batch_id
                self.app.notify(result.message)
                self.app.request_read()

        self.app.push_screen(NewBatchScreen(self.create_batch), done)

    def create_batch(self, path: str, name: str, skip_invalid: bool) -> Created:
        """Import a file as a new batch (runs in the form's worker thread)."""
        with self.app.connection():
            made = import_batch(self.app.store, path, name=name, skip_invalid=skip_invalid)
            self.app.runner.refresh()  # the new batch shows (and is claimed) now, not at the next keeper pass
        return Created(made.batch_id, made.describe())

    def action_export_batch(self) -> None:
        b = self._batch()
        if b is None:
            return
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", b.name).strip("-.") or "batch"
        default = str(Path.cwd() / f"{slug}-{b.id}.csv")

        def done(result: Exported | None) -> None:
            if result is not None:
                self.app.notify(f"exported batch {b.id} to {result.path} ({result.fmt}, {plural(result.rows, 'row')}): "
                                f"{result.describe()}", timeout=10)

        self.app.push_screen(ExportScreen(f"{b.name} (#{b.id})", default,
                                          lambda path, kind: self.export_batch(b.id, path, kind)), done)

    def export_batch(self, batch_id: int, path: str, kind: str) -> int:
        """Write one batch to a file (runs in the form's worker thread); rows written."""
        from storycheck_tui.exports import export_to_file

        with self.app.connection():
            return export_to_file(self.app.store, batch_id, kind, str(Path(path).expanduser()))

    # -- proxy commands ---------------------------------------------------------------------------------

    @steering
    def action_toggle_proxy(self) -> None:
        p = self._proxy()
        if p is not None and self._can_command():
            self.toggle_proxy(p.key, p.label)

    @work(thread=True, group="command", exit_on_error=False)
    def toggle_proxy(self, key: str, label: str) -> CommandDone:
        with self.app.connection():
            disabled = self.app.runner.toggle_proxy(key)
        return CommandDone(f"proxy {fmt.literal(label)} {'disabled' if disabled else 'enabled'}")

    @steering
    def action_retry_proxy(self) -> None:
        p = self._proxy()
        if p is not None and self._can_command():
            self.retry_proxy(p.key, p.label)

    @work(thread=True, group="command", exit_on_error=False)
    def retry_proxy(self, key: str, label: str) -> CommandDone:
        with self.app.connection():
            before = self._proxy_facts([key])
            self.app.runner.retry_proxy(key)
            self._say("proxy " + fmt.literal(label) + (": the workers re-validate it within a second or two"
                                                        if self.app.watch_only else ": re-validating now"))
            after = self._await_validation(before)
        return self._validation_done(after, before)

    def _say(self, message: str) -> None:
        """A toast from a command's thread, before its result."""
        self.app.call_from_thread(self.app.notify, message)

    def _proxy_facts(self, keys: list[str] | None) -> dict[str, tuple]:
        """key -> (label, state, validating, latency, error, successes, failures, updated) of the
        proxies (all enabled ones for ``None``): from this console's pool when it runs checks,
        from the database (where the workers write) when it only watches."""
        if not self.app.watch_only:
            views = {v.key: v for v in self.app.runner.snapshot().proxies}
            return {k: (v.label, v.state, v.validating, v.last_latency_ms, v.last_error, v.successes, v.failures, 0.0)
                    for k, v in views.items() if (keys is None and v.state != ProxyState.DISABLED) or
                    (keys is not None and k in keys)}
        rows = {str(r.id): r for r in reads.proxies(self.app.store)}
        return {k: (r.label, ProxyState.DISABLED if r.disabled else r.state, False, r.last_latency_ms, r.last_error,
                    r.successes, r.failures, r.updated_at)
                for k, r in rows.items() if (keys is None and not r.disabled) or (keys is not None and k in keys)}

    def _await_validation(self, before: dict[str, tuple]) -> dict[str, tuple]:
        """Wait (up to VALIDATION_WAIT) until every proxy in ``before`` that a retry validates (not
        a healthy or unchecked one) was validated: its validation started and ended here, or its
        row changed in the database."""
        if self.app.watch_only and not any(w.state == WorkerState.RUNNING for w in reads.workers(self.app.store)):
            return before  # nobody to validate: said as "no result"
        # a retry leaves a healthy (or not yet checked) proxy as it is: nothing to wait for
        waiting = [k for k, facts in before.items() if facts[1] not in (ProxyState.HEALTHY, ProxyState.UNCHECKED)]
        deadline = time.monotonic() + VALIDATION_WAIT
        started: set[str] = set()
        while True:
            now = self._proxy_facts(list(before))
            for k, facts in now.items():
                if facts[2]:
                    started.add(k)
            pending = [k for k in waiting if k in now and not self._validated(k, before[k], now[k], k in started)]
            if not pending or time.monotonic() >= deadline or self.app.stopping:
                return now
            time.sleep(0.2)

    def _validated(self, key: str, old: tuple, new: tuple, started: bool) -> bool:
        if new[2]:  # validating now
            return False
        if started:
            return True
        return new[1:] != old[1:]  # (watch-only) the row changed: a worker validated it

    def _validation_done(self, after: dict[str, tuple], before: dict[str, tuple]) -> CommandDone:
        if len(before) == 1:
            key = next(iter(before))
            label, state, validating, latency, error = after.get(key, before[key])[:5]
            if validating or (after.get(key) == before[key] and self.app.watch_only):
                return CommandDone(f"proxy {fmt.literal(label)}: no result yet (no worker answered within "
                                   f"{VALIDATION_WAIT:.0f} s; the pane shows it when one does)", "warning")
            if state == ProxyState.HEALTHY:
                return CommandDone(f"proxy {fmt.literal(label)} is healthy"
                                   + (f" ({latency:.0f} ms)" if latency is not None else ""))
            return CommandDone(f"proxy {fmt.literal(label)} is {state}" + (f": {fmt.literal(error)}" if error else ""),
                               "warning")
        states: dict[str, int] = {}
        for facts in after.values():
            states[facts[1]] = states.get(facts[1], 0) + 1
        summary_text = ", ".join(f"{n} {state}" for state, n in sorted(states.items(), key=lambda x: -x[1]))
        bad = any(s in (ProxyState.DEAD, ProxyState.COOLING, ProxyState.AUTH_REJECTED) for s in states)
        return CommandDone(f"re-validated {plural(len(after), 'proxy', 'proxies')}: {summary_text}",
                           "warning" if bad else "information")

    @steering
    def action_revalidate_all(self) -> None:
        if self._can_command():
            self.revalidate_all()

    @work(thread=True, group="command", exit_on_error=False)
    def revalidate_all(self) -> CommandDone:
        with self.app.connection():
            before = self._proxy_facts(None)
            self.app.runner.revalidate_all()
            self._say("every enabled proxy: the workers re-validate them within a second or two" if self.app.watch_only
                      else "re-validating every enabled proxy now")
            after = self._await_validation(before)
        return self._validation_done(after, before)

    # -- what a command did -----------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "command":
            return
        if event.state == TaskState.SUCCESS:
            done: CommandDone = event.worker.result
            self.app.notify(done.message, severity="warning" if done.severity == "warning" else "information")
        elif event.state == TaskState.ERROR:
            self.app.notify(f"command failed: {fmt.literal(event.worker.error)}", severity="error", timeout=8)
        else:
            return
        self.app.command_done()
