"""One result in full: fields, error, the profile's story history (when a watch has seen its
stories), attempt history, traceback, and its log lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Callable

from rich.table import Table
from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from storycheck_tui.store import reads
from storycheck_tui.store.db import Store
from storycheck_tui.store.history import StoryRow
from storycheck_tui.store.reads import JobDetail
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui import keymap
from storycheck_tui.ui.panes.logview import LEVEL_SHORT
from storycheck_tui.ui.panes.results import result_label
from storycheck_tui.states import JobState

#: events that make up a check's attempt history
ATTEMPT_EVENTS = {"RETRY_SCHEDULED", "RATE_LIMITED", "PROXY_FAILOVER", "CHECK_FAILED", "STORY_CHECK_SUCCESS",
                  "LEASE_EXPIRED", "LEASE_LOST", "STORY_CHECK_STARTED"}
#: stories of the history shown (the newest; the title says how many in all)
HISTORY_SHOWN = 50


@dataclass(frozen=True)
class ResultDetail:
    """What the detail view shows: the job, and the stories watches have seen for its profile."""

    job: JobDetail
    stories: tuple[StoryRow, ...] = ()


def load_detail(store: Store, job_id: int) -> ResultDetail | None:
    """The job's detail and its profile's story history (two reads; from a thread worker)."""
    d = reads.job_detail(store, job_id)
    if d is None:
        return None
    return ResultDetail(d, tuple(reads.story_history(store, d.job.username)))


def render_history(stories: tuple[StoryRow, ...], tz: tzinfo | None) -> tuple[str, Table]:
    """(section title, table) of a profile's story history, newest first."""
    newest = sorted(stories, key=lambda s: (s.first_seen, s.taken_at or 0.0), reverse=True)[:HISTORY_SHOWN]
    watches = {s.watch for s in stories}
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    if len(watches) > 1:
        table.add_column("Watch", header_style="bold", no_wrap=True, max_width=20)
    # the story id stays whole (it is what an operator copies); on a narrow screen the times wrap
    table.add_column("Story id", header_style="bold", no_wrap=True,
                     min_width=min(32, max((len(fmt.literal(s.story_id)) for s in newest), default=8)))
    for name in ("Taken", "First seen", "Last seen"):
        table.add_column(name, header_style="bold")
    for st in newest:
        cells = [fmt.plain(st.story_id), Text(fmt.when(st.taken_at, tz)),
                 Text(fmt.when(st.first_seen, tz), style="bright_black"),
                 Text(fmt.when(st.last_seen, tz), style="bright_black")]
        table.add_row(*([fmt.plain(st.watch)] if len(watches) > 1 else []), *cells)
    title = f"Story history ({len(stories):,}"
    if len(watches) == 1:
        title += f", watch {fmt.literal(next(iter(watches)))}"
    if len(stories) > len(newest):
        title += f"; the newest {len(newest)}"
    return title + ")", table


def render_detail(shown: ResultDetail, now: float, tz: tzinfo | None) -> list[tuple[str, object]]:
    """(section title, renderable) pairs; every user string goes in as plain text."""
    d = shown.job
    j = d.job
    label, style_key = result_label(j)
    head = Text()
    head.append_text(fmt.plain(j.username, "bold"))
    head.append("  ")
    head.append_text(fmt.state(style_key, label))
    head.append(f"   batch #{j.batch_id}, job #{j.id}", style="bright_black")

    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bright_black", no_wrap=True)
    fields.add_column(no_wrap=False)
    fields.add_column(style="bright_black", no_wrap=True)
    fields.add_column(no_wrap=False)
    latest = "—" if j.latest_story_at is None else f"{fmt.when(j.latest_story_at, tz)} ({fmt.age(j.latest_story_at, now)} ago)"
    pairs = [
        ("State", Text(j.state)), ("Outcome", Text(j.outcome or "—")),
        ("Stories", Text("—" if j.story_count is None else str(j.story_count))), ("Latest story", Text(latest)),
        ("Proxy", fmt.plain(j.proxy or "—")), ("HTTP status", Text("—" if j.http_status is None else str(j.http_status))),
        ("Attempts", Text(f"{j.attempts} (last: {d.tries} HTTP request{'s' if d.tries != 1 else ''})")),
        ("Latency", Text(fmt.latency(j.latency_ms))),
        ("Started", Text(fmt.when(j.started_at, tz))), ("Finished", Text(fmt.when(j.finished_at, tz))),
    ]
    if d.lease_owner:
        pairs.append(("Held by", fmt.plain(d.lease_owner)))
        pairs.append(("Lease until", Text(fmt.when(d.lease_until, tz))))
    for i in range(0, len(pairs), 2):
        (a, av), (b, bv) = pairs[i], pairs[i + 1] if i + 1 < len(pairs) else ("", Text(""))
        fields.add_row(a, av, b, bv)
    out: list[tuple[str, object]] = [("", head), ("", fields)]

    if j.error_kind or j.error_message:
        err = Text()
        err.append(fmt.literal(j.error_kind or "error"), style="bold red")
        err.append(": ")
        err.append(fmt.literal(j.error_message or ""), style="red")
        out.append(("Error", err))

    if shown.stories:
        out.append(render_history(shown.stories, tz))

    history = [ln for ln in d.log if ln.event in ATTEMPT_EVENTS]
    if history:
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
        for name, kw in (("Time", {"no_wrap": True}), ("Try", {"justify": "right"}), ("Event", {"no_wrap": True}),
                         ("Proxy", {"no_wrap": True, "max_width": 18}), ("Status", {"justify": "right"}),
                         ("What happened", {"ratio": 1})):
            table.add_column(name, header_style="bold", **kw)
        for ln in history:
            status = ln.details.get("status")
            table.add_row(Text(fmt.clock(ln.created, tz), style="bright_black"),
                          Text("" if ln.attempt is None else str(ln.attempt)),
                          Text(ln.event or "", style="cyan" if ln.level in ("INFO", "DEBUG") else "yellow"),
                          fmt.plain(ln.proxy or ""), Text("" if status is None else str(status)),
                          Text(fmt.literal(ln.message), style="red" if ln.level in ("ERROR", "CRITICAL") else ""))
        out.append(("Attempt history", table))
    else:
        out.append(("Attempt history", Text("no attempts recorded yet" if j.state == JobState.PENDING
                                             else "no attempt records stored for this job", style="bright_black")))

    if d.traceback:
        # keep the indentation (a wrapped Text drops leading spaces): non-breaking spaces
        lines = [ln[: len(ln) - len(ln.lstrip(" "))].replace(" ", "\u00a0") + ln.lstrip(" ")
                 for ln in fmt.literal_lines(d.traceback.rstrip())]
        out.append(("Traceback", Text("\n".join(lines), style="bright_black")))

    if d.log:
        lines = Text()
        for i, ln in enumerate(d.log):
            if i:
                lines.append("\n")
            lines.append(fmt.when(ln.created, tz), style="bright_black")
            lines.append(" ")
            lines.append(LEVEL_SHORT.get(ln.level, ln.level), style=fmt.LEVEL_STYLE.get(ln.level, ""))
            lines.append(" ")
            lines.append(f"{ln.event or '-':<19} ", style="cyan")
            lines.append(fmt.literal(ln.message))
        out.append((f"Log lines ({len(d.log)})", lines))
    return out


class DetailScreen(ModalScreen[None]):
    BINDINGS = [keymap.CLOSE, ("q", "close", "Close")]

    def __init__(self, *, detail: ResultDetail | None = None, loader: Callable[[], ResultDetail | None] | None = None,
                 now: Callable[[], float], tz: tzinfo | None = None) -> None:
        super().__init__()
        self._detail = detail
        self._loader = loader
        self._now = now
        self._tz = tz

    def compose(self):
        with Vertical(id="detail-box", classes="modal-box"):
            yield VerticalScroll(id="detail-body")
            yield Static(Text("esc close · ↑↓ PgUp PgDn scroll", style="bright_black"), id="detail-help", markup=False)

    def on_mount(self) -> None:
        if self._detail is not None:
            self._show(self._detail)
        elif self._loader is not None:
            self.query_one("#detail-body").mount(Static(Text("loading…", style="bright_black"), markup=False))
            self.run_worker(self._loader, thread=True, exit_on_error=False, group="detail")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "detail":
            return
        if event.state == WorkerState.SUCCESS:
            self._show(event.worker.result)
        elif event.state == WorkerState.ERROR:
            self._message(Text(f"cannot read this result: {fmt.literal(event.worker.error)}", style="red"))

    def _message(self, text: Text) -> None:
        body = self.query_one("#detail-body", VerticalScroll)
        body.remove_children()
        body.mount(Static(text, markup=False))

    def _show(self, detail: ResultDetail | None) -> None:
        body = self.query_one("#detail-body", VerticalScroll)
        body.remove_children()
        if detail is None:
            body.mount(Static(Text("this job no longer exists", style="yellow"), markup=False))
            return
        widgets = []
        for title, renderable in render_detail(detail, self._now(), self._tz):
            if title:
                widgets.append(Static(Text(title, style="bold underline"), classes="detail-section", markup=False))
            widgets.append(Static(renderable, classes="detail-body", markup=False))
        body.mount_all(widgets)
        body.focus()

    def action_close(self) -> None:
        self.dismiss(None)
