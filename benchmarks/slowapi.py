"""A slow story API: the standard library's ``ThreadingHTTPServer`` answering as the simulator.

``python -m benchmarks.slowapi [LATENCY]`` prints ``{"api_url": ...}`` as one JSON line and
serves until its stdin closes. ``/v1/stories?username=NAME`` answers what the simulator's world
answers for NAME (same statuses, same JSON) after ``LATENCY`` seconds (default 0.02: the time a
real API takes to look a profile up; the handler's thread sleeps, so answers overlap);
``/health`` answers at once. The server as its documentation shows it: HTTP/1.0, a connection
and a thread per request, pure Python.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def serve(latency: float = 0.02, seed: int = 1) -> None:
    from storycheck_tui.sim.world import World

    world = World(seed)

    class Handler(BaseHTTPRequestHandler):

        def do_GET(self) -> None:  # noqa: N802 - the library's name
            parts = urlsplit(self.path)
            if parts.path == "/v1/stories":
                name = (parse_qs(parts.query).get("username") or [""])[0]
                time.sleep(latency)
                status, body = world.answer(name) if name else (400, b'{"error": "missing username"}')
            elif parts.path == "/health":
                status, body = 200, b'{"ok": true}'
            else:
                status, body = 404, b'{"error": "not found"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the library's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"api_url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    sys.stdin.read()  # until the parent closes it (or dies)
    server.shutdown()


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 0.02)
