"""``storycheck source test USERNAME [--config F] [--proxy P]``: one request, explained.

The first thing to run after writing a ``[source]`` table: it sends one request (no database,
no batch) and prints what an operator needs to fix a wrong config: the request (secrets
masked), the HTTP status, what decided the answer (a rule, a status list or the items path),
the outcome, the stories parsed and the time taken. Exit 0 for an outcome, 1 for a failed
check, 2 for a bad config or proxy.
"""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from datetime import datetime, timezone

from storycheck_tui.config import load_settings
from storycheck_tui.errors import CheckError, InputError
from storycheck_tui.masking import add_url_credentials, one_line
from storycheck_tui.sources.base import DIRECT, Outcome, Route

__all__ = ["source_test_command", "source_usage_command", "format_outcome"]

#: stories listed before "and N more"
SHOWN = 20


def _line(label: str, text: str) -> str:
    return f"{label:<9} {one_line(text)}"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_outcome(outcome: Outcome) -> list[str]:
    """The answer's lines: status, what decided it, the outcome and its stories."""
    lines = [_line("status", str(outcome.http_status)), _line("decided", outcome.decided_by or "-")]
    count = f" ({outcome.story_count} stories)" if outcome.story_count else ""
    lines.append(_line("outcome", f"{outcome.kind}{count}"))
    for story in outcome.stories[:SHOWN]:
        lines.append(_line("story", f"{story.story_id}  taken_at {_when(story.taken_at)}"))
    if outcome.story_count > SHOWN:
        lines.append(_line("", f"and {outcome.story_count - SHOWN} more"))
    return lines


def _route(proxy: str | None) -> Route:
    if not proxy:
        return DIRECT
    from storycheck_tui.inputs.proxies import parse_proxy_line

    try:
        spec = parse_proxy_line(proxy)
    except ValueError as exc:
        raise InputError(f"--proxy: {exc}") from None
    add_url_credentials(spec.url)
    return Route(key="source-test", url=spec.url, label=spec.label)


def source_test_command(args: Namespace) -> int:
    from storycheck_tui.engine.wiring import build_source

    settings = load_settings(getattr(args, "config", None))
    via = _route(args.proxy)
    source = build_source(settings)  # a missing or bad [source] is an InputError: exit 2
    out = sys.stdout
    try:
        describe = getattr(source, "describe_request", None)
        request = describe(args.username) if describe else [args.username]
        print(_line("request", request[0]), file=out)
        for extra in request[1:]:
            print(_line("", extra), file=out)
        print(_line("via", via.label), file=out)
        started = time.monotonic()
        try:
            outcome = source.check(args.username, via)
        except CheckError as err:
            elapsed = (time.monotonic() - started) * 1000
            print(_line("status", str(err.status) if err.status is not None else "- (no answer)"), file=out)
            print(_line("failed", f"{err.kind}: {err.message}"), file=out)
            print(_line("time", f"{elapsed:.0f} ms"), file=out)
            return 1
        elapsed = (time.monotonic() - started) * 1000
        for line in format_outcome(outcome):
            print(line, file=out)
        print(_line("time", f"{elapsed:.0f} ms"), file=out)
        return 0
    finally:
        source.close()


def source_usage_command(args: Namespace) -> int:
    raise InputError("source: which action? storycheck source test USERNAME [--config F] [--proxy P]")
