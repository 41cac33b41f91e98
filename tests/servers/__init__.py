"""Small loopback servers for the reliability suite: real sockets that misbehave on purpose.

* :class:`RawServer`: a threaded raw-socket HTTP/1.1 server on 127.0.0.1. For every request
  a script (``server.script(req, n)``, ``n`` = how many times this username/path was seen)
  returns a behaviour: a plain answer, a reset mid-body, a drip, a hang, a redirect, a huge
  body, a closed connection. It also serves as a broken *proxy* (a 407, a proxy that closes).
* :class:`Backlog`: a port whose accept queue is full, so a connect times out.
* :func:`start_pproxy`: a real SOCKS5/HTTP proxy (``python -m pproxy``) in a subprocess.
* :func:`wait_for`: poll a condition with a timeout (no sleep-and-hope).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from helpers import free_port, start_pproxy, wait_for, wait_port  # one copy of each
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "RawServer", "RawRequest", "Backlog", "start_pproxy", "wait_for", "free_port", "wait_port",
    "answer", "json_answer", "reset_mid_body", "drip", "hang", "close_now", "redirect", "huge",
]




# ------------------------------------------------------------------------------------------
# the raw server
# ------------------------------------------------------------------------------------------


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]
    received: float  # time.monotonic()

    @property
    def path(self) -> str:
        t = self.target
        if "://" in t:  # absolute form (we are being used as a proxy)
            t = "/" + t.split("://", 1)[1].partition("/")[2]
        return urlsplit(t).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def username(self) -> str | None:
        return (self.query.get("username") or [None])[0]


Behaviour = Callable[[socket.socket, RawRequest, "RawServer"], None]


def _head(status: int, headers: list[tuple[str, str]], *, length: int | None) -> bytes:
    reason = {200: "OK", 301: "Moved", 302: "Found", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              407: "Proxy Authentication Required", 429: "Too Many Requests", 500: "Internal Server Error",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}"]
    names = {k.lower() for k, _ in headers}
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if length is not None and "content-length" not in names:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(status: int, body: bytes | str = b"", headers: list[tuple[str, str]] | None = None) -> Behaviour:
    data = body.encode() if isinstance(body, str) else body

    def run(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
        sock.sendall(_head(status, headers or [("Content-Type", "application/json")], length=len(data)) + data)
    return run


def json_answer(obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Behaviour:
    return answer(status, json.dumps(obj), headers)


def reset_mid_body(declared: int = 5000, sent: int = 100) -> Behaviour:
    """Promise ``declared`` bytes, send ``sent``, then reset the connection (RST, not FIN)."""
    def run(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
        sock.sendall(_head(200, [("Content-Type", "application/json")], length=declared) + b'{"items": [' + b" " * sent)
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return run


def drip(every: float = 0.1, *, headers_too: bool = False, length: int = 5000) -> Behaviour:
    """Send the answer (``length`` bytes declared) one byte at a time, until the client gives up."""
    def run(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
        data = b"" if headers_too else _head(200, [("Content-Type", "application/json")], length=length)
        if data:
            sock.sendall(data + b'{"items": [')
        pending = _head(200, [], length=length) if headers_too else b""
        i = 0
        while not srv.stopping.is_set():
            byte = pending[i:i + 1] if i < len(pending) else b" "
            i += 1
            try:
                sock.sendall(byte)
            except OSError:
                return
            if srv.stopping.wait(every):
                return
    return run


def hang(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
    """Read the request, answer nothing, until the client hangs up or the server stops."""
    sock.settimeout(0.1)
    while not srv.stopping.is_set():
        try:
            if sock.recv(1024) == b"":
                return
        except socket.timeout:
            continue
        except OSError:
            return


def close_now(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
    """Close the connection without a byte of answer."""


def redirect(location: str, status: int = 302) -> Behaviour:
    return answer(status, b"", [("Location", location)])


def huge(size: int, *, chunked: bool = False) -> Behaviour:
    """A body of ``size`` bytes (declared in Content-Length, or chunked with no length)."""
    def run(sock: socket.socket, req: RawRequest, srv: "RawServer") -> None:
        block = b" " * 65536
        try:
            if chunked:
                sock.sendall(_head(200, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
                                   length=None) + b"1\r\n[\r\n")
                sent = 0
                while sent < size and not srv.stopping.is_set():
                    sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
                    sent += len(block)
                sock.sendall(b"1\r\n]\r\n0\r\n\r\n")
            else:
                sock.sendall(_head(200, [("Content-Type", "application/json")], length=size) + b"[")
                sent = 1
                while sent < size - 1 and not srv.stopping.is_set():
                    n = min(len(block), size - 1 - sent)
                    sock.sendall(block[:n])
                    sent += n
                sock.sendall(b"]")
        except OSError:
            return  # the client stopped reading: that is the point
        srv.note(f"huge body of {size} bytes sent whole")
    return run


@dataclass
class RawServer:
    """A threaded raw HTTP server on 127.0.0.1 driven by ``script(req, n) -> Behaviour``."""

    script: Callable[[RawRequest, int], Behaviour]
    requests: list[RawRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)  # so the accept loop sees `stopping` (close() does not wake accept)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="rawserver")
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stories_url(self, path: str = "/v1/stories") -> str:
        return f"{self.base}{path}?username={{username}}"

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def hits(self, username: str | None = None) -> list[RawRequest]:
        with self._lock:
            return [r for r in self.requests if username is None or r.username == username]

    def close(self) -> None:
        self.stopping.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > 65536:
                    return
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            first, *rest = head.split("\r\n")
            method, target, _ = (first.split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in rest:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            req = RawRequest(method, target, headers, time.monotonic())
            key = req.username or req.path
            with self._lock:
                self.requests.append(req)
                n = self._seen.get(key, 0) + 1
                self._seen[key] = n
            conn.settimeout(None)
            self.script(req, n)(conn, req, self)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


# ------------------------------------------------------------------------------------------
# a port that cannot be connected to in time, and a real SOCKS5 proxy
# ------------------------------------------------------------------------------------------


class Backlog:
    """A listening port whose accept queue is full: a new connect hangs (a connect timeout)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(8):  # fill the queue until a connect no longer completes
            c = socket.socket()
            c.settimeout(0.2)
            try:
                c.connect(("127.0.0.1", self.port))
            except (socket.timeout, OSError):
                c.close()
                break
            self._fillers.append(c)

    def close(self) -> None:
        for c in self._fillers:
            c.close()
        self._sock.close()
