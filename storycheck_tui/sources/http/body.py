"""Reading a response body: bounded in size (decoded, not only on the wire) and in time.

httpx decodes each received chunk in full before a caller can count it: 1,827 bytes sent with
``Content-Encoding: gzip, gzip`` decode to gigabytes. So the body is read raw
(``iter_raw``) and decoded here, each layer with zlib's ``max_length``, so no step ever holds
more than the limit; an encoding that cannot be bounded this way (br, zstd, compress) is
refused, and the client only offers ``gzip, deflate``.
"""

from __future__ import annotations

import zlib


from storycheck_tui.sources.http.deadline import Deadline
from storycheck_tui.sources.http.transport import Answer

__all__ = ["BodyTooLarge", "BodyUndecodable", "DeadlineExceeded", "BoundedDecoder", "read_body", "drain",
           "excerpt"]


class BodyTooLarge(Exception):
    """The body is over ``max_body_bytes``; ``declared`` is the Content-Length that said so, if any."""

    def __init__(self, limit: int, declared: int | None = None, *, decoded: bool = False) -> None:
        self.limit = limit
        self.declared = declared
        detail = f" (Content-Length {declared})" if declared is not None else " once decoded" if decoded else ""
        super().__init__(f"response body over {limit} bytes{detail}")


class BodyUndecodable(Exception):
    """The Content-Encoding is unknown, or the bytes do not decode by it."""


class DeadlineExceeded(Exception):
    """The request's wall deadline passed while the body was still coming."""


class _Layer:
    """One zlib decoding step (gzip, or deflate with or without its zlib header)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._raw_deflate_tried = encoding != "deflate"
        wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS
        self._obj = zlib.decompressobj(wbits)

    def decode(self, data: bytes, room: int) -> bytes:
        """At most ``room + 1`` bytes of output (one more than allowed says "too large")."""
        try:
            out = self._obj.decompress(data, room + 1)
        except zlib.error as exc:
            if self._raw_deflate_tried:
                raise BodyUndecodable(f"{self.encoding}: {exc}") from None
            # "deflate" is often sent raw, without the zlib header (httpx tries both, so do we)
            self._raw_deflate_tried = True
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data, room)
        self._raw_deflate_tried = True
        return out

    def flush(self) -> bytes:
        try:
            return self._obj.flush()
        except zlib.error as exc:  # pragma: no cover - flush reports errors decompress already saw
            raise BodyUndecodable(f"{self.encoding}: {exc}") from None


class BoundedDecoder:
    """Decodes a body by its ``Content-Encoding`` (``gzip``, ``deflate``, ``identity``, in layers),
    raising :class:`BodyTooLarge` as soon as the decoded body (or any layer) passes ``limit``;
    with ``cut``, the output stops at ``limit`` instead (an excerpt)."""

    def __init__(self, content_encoding: str | None, limit: int, *, cut: bool = False) -> None:
        names = [e.strip().lower() for e in (content_encoding or "").split(",")]
        names = [n for n in names if n and n != "identity"]
        for name in names:
            if name not in ("gzip", "x-gzip", "deflate"):
                raise BodyUndecodable(f"unsupported Content-Encoding {name!r}")
        # applied in the order listed, so undone in reverse
        self._layers = [_Layer("gzip" if n == "x-gzip" else n) for n in reversed(names)]
        self._limit = limit
        # an inner layer is compressed data: it may be a little larger than what it decodes to
        self._inner_limit = limit + limit // 64 + 1024
        self._produced = [0] * len(self._layers)
        self._cut = cut
        self.full = False  # with cut: the limit is reached, the rest is ignored

    @property
    def identity(self) -> bool:
        return not self._layers

    def feed(self, data: bytes) -> bytes:
        if self.full:
            return b""
        for i, layer in enumerate(self._layers):
            if not data:
                return b""
            data = self._count(i, layer.decode(data, self._room(i)))
        return data

    def flush(self) -> bytes:
        data = b""
        for i, layer in enumerate(self._layers):
            if data:
                data = self._count(i, layer.decode(data, self._room(i)))
            data += self._count(i, layer.flush())
        return data

    def _room(self, i: int) -> int:
        cap = self._limit if i == len(self._layers) - 1 else self._inner_limit
        return max(0, cap - self._produced[i])

    def _count(self, i: int, out: bytes) -> bytes:
        self._produced[i] += len(out)
        cap = self._limit if i == len(self._layers) - 1 else self._inner_limit
        if self._produced[i] > cap:
            if not self._cut:
                raise BodyTooLarge(self._limit, decoded=True)
            out = out[: len(out) - (self._produced[i] - cap)]
            self._produced[i] = cap
            self.full = True
        return out


def read_body(resp: Answer, limit: int, deadline: Deadline) -> bytes:
    """The whole decoded body, at most ``limit`` bytes (on the wire and decoded).

    Raises BodyTooLarge, BodyUndecodable, DeadlineExceeded or httpx's errors.
    """
    declared = resp.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    decoder = BoundedDecoder(resp.headers.get("content-encoding"), limit)
    chunks: list[bytes] = []
    for raw in resp.iter_raw():
        if resp.num_bytes_downloaded > limit:
            raise BodyTooLarge(limit)
        chunks.append(raw if decoder.identity else decoder.feed(raw))
        if deadline.expired():
            deadline.hit = True
            raise DeadlineExceeded()
    if not decoder.identity:
        chunks.append(decoder.flush())
    return b"".join(chunks)


def drain(resp: Answer, keep: int = 0, limit: int = 65536) -> bytes:
    """Read (and mostly discard) a small body so the connection can be reused; never raises.

    Returns the first ``keep`` bytes as sent (still encoded: see :func:`excerpt`).
    """
    kept = bytearray()
    try:
        for chunk in resp.iter_raw():
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
            if resp.num_bytes_downloaded > limit:
                break
    except Exception:  # the status already decided the answer
        pass
    return bytes(kept)


def excerpt(resp: Answer, size: int) -> str:
    """The start of a body (an error page) as text, decoded within ``size`` bytes; drains the rest."""
    raw = drain(resp, keep=size)
    try:
        decoder = BoundedDecoder(resp.headers.get("content-encoding"), size, cut=True)
        if not decoder.identity:
            raw = decoder.feed(raw)
    except BodyUndecodable:
        return ""
    return raw[:size].decode("utf-8", errors="replace")
