"""A stub model runner on loopback whose every predict takes ``delay`` seconds (a slow shadow).

Run as ``python -m tests.support.slow_runner PORT``. It speaks the part of the runner contract
the router uses (``GET /readyz``, ``POST /metadata``, ``POST /binary/predict`` answering 5.5 per
row with ``X-Model-Version``), plus ``POST /_delay`` (body: seconds) and ``GET /_calls`` for the
test driving it. Its own process, so its threads never compete with the client measuring.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

WIDTH = 12
state = {"delay": 0.02, "calls": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real runners

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Model-Version", "stub-1")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/_calls":
            self._answer(str(state["calls"]).encode())
        else:
            self._answer(b'{"status":"ready"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/_delay":
            state["delay"] = float(body)
            self._answer(b"{}")
        elif self.path == "/binary/predict":
            with lock:
                state["calls"] += 1
            time.sleep(float(state["delay"]))
            self._answer(np.full(len(body) // (8 * WIDTH), 5.5).tobytes(), "application/octet-stream")
        else:
            self._answer(json.dumps({"name": "svr", "version": "stub-1", "framework": "stub"}).encode())


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
