"""How a job's final result reads: the one line stored in ``batch_log`` with the fenced
finish and logged by the writer after the commit (the same words on the screen, in the log
file and in the database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storycheck_tui.logs import CHECK_FAILED, STORY_CHECK_SUCCESS
from storycheck_tui.states import OutcomeKind

if TYPE_CHECKING:
    from storycheck_tui.store.queue import JobResult

def result_message(r: JobResult) -> tuple[str, str, str]:
    """(level, event, message) of the record that states a job's final result."""
    if r.ok and r.outcome is not None:
        o = r.outcome
        if o.kind == OutcomeKind.HAS_STORIES:
            what = f"{o.story_count} active stor{'y' if o.story_count == 1 else 'ies'}"
        else:
            what = o.kind.replace("_", " ")
        return "INFO", STORY_CHECK_SUCCESS, (f"{r.job.username}: {what} (HTTP {r.http_status}, "
                                       f"{r.latency_ms or 0:.0f} ms via {r.proxy or 'direct'})")
    status = f"HTTP {r.http_status}" if r.http_status else "no HTTP status"
    return "ERROR", CHECK_FAILED, (
        f"{r.job.username}: check failed after {r.tries} tr{'y' if r.tries == 1 else 'ies'}: {r.error_kind}: "
        f"{r.error_message} ({status}, via {r.proxy or 'direct'})")


__all__ = ["result_message"]
