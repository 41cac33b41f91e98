"""Alerts: what an operator should hear about without watching every pane, as toasts (and a
terminal bell with ``STORYCHECK_BELL=1``).

* a batch finished;
* a batch was paused by something other than an operator (an auth failure, a request budget);
* the proxy pool is degraded: under half of it usable (and when it recovers);
* the source's circuit breaker opened (an outage: nothing is sent) and closed again;
* new stories in a watch (from the monitoring events): one toast per round of a watch, when
  the round ends (its first round makes every story it sees new: one toast, not hundreds),
  or once a minute while a long round runs.

Each alert fires on a change seen between two redraws, never for what was already so when
the console opened.

Owned by the UI thread (the app feeds it from its redraw and from database reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from storycheck_tui.states import OPEN, BatchState
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.reads import NewStory
from storycheck_tui.ui import format as fmt

#: environment variable that turns the terminal bell on for alerts
BELL_ENV = "STORYCHECK_BELL"
#: new stories named in one toast (the rest are counted)
NAMED_STORIES = 3
#: while a round runs, its new stories are said at most this often (seconds)
STORIES_EVERY = 60.0


@dataclass(frozen=True)
class Alert:
    message: str
    severity: str = "information"  # or "warning", "error"


class Alerts:
    def __init__(self) -> None:
        self._batches: dict[int, str] | None = None  # batch id -> state at the last redraw
        self._degraded: bool | None = None
        self._circuit: bool | None = None  # open at the last redraw (None: not seen yet)
        self.story_after: int | None = None  # the last story event shown (None: not started)
        self._stories: dict[str, list[NewStory]] = {}  # watch -> new stories not said yet
        self._stories_since: dict[str, float] = {}  # watch -> when the first of them came
        self._round_over: dict[str, int] = {}  # watch -> reads since its round was seen over

    def batches(self, views: tuple[BatchView, ...] | list[BatchView]) -> list[Alert]:
        before, self._batches = self._batches, {v.id: v.state for v in views}
        if before is None:
            return []
        out = []
        for v in views:
            was = before.get(v.id)
            if was is None or was == v.state:
                continue
            name = f"batch {v.id} {fmt.literal(v.name)!r}"
            if v.state == BatchState.FINISHED:
                out.append(Alert(f"{name} finished: {v.completed:,} checked, {v.succeeded:,} ok, {v.failed:,} failed",
                                 "warning" if v.failed else "information"))
            elif v.state == BatchState.PAUSED and v.reason and "operator" not in v.reason.lower():
                out.append(Alert(f"{name} paused: {fmt.literal(v.reason)}", "warning"))
        return out

    def proxies(self, usable: int, total: int) -> list[Alert]:
        """Under half of the pool usable (a pool of one proxy, or none, is never 'degraded')."""
        degraded = total > 1 and usable * 2 < total
        before, self._degraded = self._degraded, degraded
        if before is None or before == degraded:
            return []
        if degraded:
            return [Alert(f"proxy pool degraded: {usable} of {total} proxies usable", "error")]
        return [Alert(f"proxy pool recovered: {usable} of {total} proxies usable")]

    def circuit(self, state: str | None, reason: str | None) -> list[Alert]:
        """The source's circuit opened (nothing is sent until a probe answers), or closed."""
        if state is None:  # nothing paces a source (yet): no change to say
            return []
        is_open = state in ("open", "probing")  # a probe that fails opens it again: one alert
        before, self._circuit = self._circuit, is_open
        if before is None or before == is_open:
            return []
        if is_open:
            why = f": {fmt.literal(reason)}" if reason else ""
            return [Alert(f"source circuit open{why}; no checks are sent until a probe answers", "error")]
        return [Alert("source circuit closed: the source answers again, checks resume")]

    def stories(self, new: list[NewStory], views: tuple[BatchView, ...] | list[BatchView], now: float) -> list[Alert]:
        """Take the ``new`` story events of one database read; say a watch's when its round is
        over (no queued, running or paused round of it in ``views``) for a whole read (so the
        read that saw its last stories came after its end), or every STORIES_EVERY s while it runs."""
        if new:
            self.story_after = new[-1].event_id
        for s in new:
            self._stories.setdefault(s.watch, []).append(s)
            self._stories_since.setdefault(s.watch, now)
        running = {v.watch for v in views if v.watch is not None and v.state in OPEN}
        out = []
        for watch in list(self._stories):
            over = 0 if watch in running else self._round_over.get(watch, 0) + 1
            self._round_over[watch] = over
            if over < 2 and now - self._stories_since[watch] < STORIES_EVERY:
                continue
            out.append(self._story_alert(watch, self._stories.pop(watch), watch in running))
            del self._stories_since[watch], self._round_over[watch]
        return out

    @staticmethod
    def _story_alert(watch: str, new: list[NewStory], running: bool) -> Alert:
        users: list[str] = []
        for s in new:
            if s.username not in users:
                users.append(s.username)
        named = ", ".join(fmt.literal(u) for u in users[:NAMED_STORIES])
        more = f" and {len(users) - NAMED_STORIES} more" if len(users) > NAMED_STORIES else ""
        count = f"{len(new):,} new stor{'y' if len(new) == 1 else 'ies'}"
        so_far = " so far (its round runs on)" if running else ""
        return Alert(f"{count} in watch {fmt.literal(watch)!r}{so_far}: {named}{more}")
