"""Messages between the console's parts (posted on, or to, the UI thread).

* panes tell the main screen what the operator did: :class:`BatchSelected`,
  :class:`ResultsWanted`, :class:`DetailWanted`;
* background threads hand their answers to the app: :class:`DbRead`, :class:`EngineStopped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from storycheck_tui.store import reads


class BatchSelected(Message):
    """The cursor of the batches table moved to another batch (``None``: no batch)."""

    def __init__(self, batch_id: int | None) -> None:
        super().__init__()
        self.batch_id = batch_id


class ResultsWanted(Message):
    """The results window's parameters (batch, filter, page) changed: read it again now."""


class DetailWanted(Message):
    """Open the detail view of one result."""

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id


@dataclass(frozen=True)
class DbState:
    """What one background read found; ``None`` for a part it did not read."""

    proxies: list[reads.ProxyRow] | None = None
    workers: list[reads.WorkerRow] | None = None
    window: reads.JobWindow | None = None
    log: list[reads.LogLine] | None = None  # batch_log rows after the last one shown
    window_query: Any = None  # the results pane's WindowQuery that ``window`` answers
    stories: list[reads.NewStory] | None = None  # new-story events after the last one alerted
    story_start: int | None = None  # the newest event id when alerts start (nothing older is news)
    outcomes: tuple[int, dict[str, int]] | None = None  # (batch, counts by outcome) while the charts are open
    knobs: Any = None  # the runtime knobs in force (store.knobs.Knobs)
    error: str | None = None


class DbRead(Message):
    """The answer of one background database read."""

    def __init__(self, state: DbState) -> None:
        super().__init__()
        self.state = state


class EngineStopped(Message):
    """The engine has stopped (the console may exit)."""
