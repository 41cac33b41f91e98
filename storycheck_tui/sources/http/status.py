"""What an HTTP status says before the body is read: ``Retry-After``, and the status lists."""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any


from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import AuthFailed, CheckError, ProxyAuthRejected, RateLimited, SourceUnavailable
from storycheck_tui.masking import one_line
from storycheck_tui.sources.http.body import drain, excerpt
from storycheck_tui.sources.http.transport import Answer

__all__ = ["Failure", "parse_retry_after", "failure_for_status"]

#: characters of a 5xx body quoted in the error message
EXCERPT = 120


@dataclass(frozen=True)
class Failure:
    """A typed error, not yet raised: the class, its message and extra fields."""

    cls: type[CheckError]
    message: str
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP-date.

    Never negative; ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        seconds = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def failure_for_status(resp: Answer, s: SourceSettings, what: str = "",
                       body: bytes | None = None) -> Failure | None:
    """The error a status means by itself (407, rate limit, refused credentials, 5xx), or None.

    ``what`` prefixes the message (``"health check: "``). Reads (and drains) the body of a
    rate limit or a 5xx, so the connection is reused and a 5xx can be quoted, unless the
    ``body`` was read already.
    """
    status = resp.status_code
    if status == 407:
        return Failure(ProxyAuthRejected, f"{what}proxy authentication required (407)", status)
    if status in s.rate_limited:
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        msg = f"{what}rate limited (HTTP {status})"
        if retry_after is not None:
            msg += f", retry after {retry_after:.3g}s"
        if body is None:
            drain(resp)
        return Failure(RateLimited, msg, status, {"retry_after": retry_after})
    if status in s.auth_failed:
        said = "payment required" if status == 402 else "the source refused the credentials"
        return Failure(AuthFailed, f"{what}{said} (HTTP {status})", status)
    if status >= 500 and status not in s.not_found and status not in s.private:
        page = excerpt(resp, 4096) if body is None else body[:4096].decode("utf-8", errors="replace")
        quoted = one_line(page, EXCERPT, fold=True)
        msg = f"{what}source error HTTP {status}"
        if quoted:
            msg += f": {quoted}"
        return Failure(SourceUnavailable, msg, status)
    return None
