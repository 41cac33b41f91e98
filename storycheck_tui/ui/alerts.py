"""Alerts: what an operator should hear about without watching every pane, as toasts (and a
terminal bell with ``STORYCHECK_BELL=1``).

* a batch finished;
* a batch was paused by something other than an operator (an auth failure, a request budget);
* the proxy pool is degraded: under half of it usable (and when it recovers);
* new stories in a watch (from the monitoring events).

Each alert fires on a change seen between two redraws, never for what was already so when
the console opened. (A source circuit breaker has no state the console can read yet.)

Owned by the UI thread (the app feeds it from its redraw and from database reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from storycheck_tui.states import BatchState
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.reads import NewStory
from storycheck_tui.ui import format as fmt

#: environment variable that turns the terminal bell on for alerts
BELL_ENV = "STORYCHECK_BELL"
#: new stories named in one toast (the rest are counted)
NAMED_STORIES = 3


@dataclass(frozen=True)
class Alert:
    message: str
    severity: str = "information"  # or "warning", "error"


class Alerts:
    def __init__(self) -> None:
        self._batches: dict[int, str] | None = None  # batch id -> state at the last redraw
        self._degraded: bool | None = None
        self.story_after: int | None = None  # the last story event shown (None: not started)

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

    def stories(self, new: list[NewStory]) -> list[Alert]:
        if not new:
            return []
        self.story_after = new[-1].event_id
        users = []
        for s in new:
            if s.username not in users:
                users.append(s.username)
        named = ", ".join(fmt.literal(u) for u in users[:NAMED_STORIES])
        more = f" and {len(users) - NAMED_STORIES} more" if len(users) > NAMED_STORIES else ""
        count = f"{len(new)} new stor{'y' if len(new) == 1 else 'ies'}"
        return [Alert(f"{count} in watches: {named}{more}")]
