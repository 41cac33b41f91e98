"""Reading a response body: bounded in size and time, or drained so the connection is reused."""

from __future__ import annotations

import httpx

from storycheck_tui.sources.http.deadline import Deadline

__all__ = ["BodyTooLarge", "DeadlineExceeded", "read_body", "drain"]


class BodyTooLarge(Exception):
    """The body is over ``max_body_bytes``; ``declared`` is the Content-Length that said so, if any."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit = limit
        self.declared = declared
        detail = f" (Content-Length {declared})" if declared is not None else ""
        super().__init__(f"response body over {limit} bytes{detail}")


class DeadlineExceeded(Exception):
    """The request's wall deadline passed while the body was still coming."""


def read_body(resp: httpx.Response, limit: int, deadline: Deadline) -> bytes:
    """The whole body, at most ``limit`` bytes; raises BodyTooLarge, DeadlineExceeded or httpx's errors."""
    declared = resp.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_bytes():
        total += len(chunk)
        if total > limit or resp.num_bytes_downloaded > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if deadline.expired():
            deadline.hit = True
            raise DeadlineExceeded()
    return b"".join(chunks)


def drain(resp: httpx.Response, keep: int = 0, limit: int = 65536) -> bytes:
    """Read (and mostly discard) a small body so the connection can be reused; never raises.

    Returns the first ``keep`` bytes (for an error message's excerpt).
    """
    kept = bytearray()
    try:
        for chunk in resp.iter_bytes():
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
            if resp.num_bytes_downloaded > limit:
                break
    except Exception:  # the status already decided the answer
        pass
    return bytes(kept)
