"""A stub model runner on loopback: every predict takes ``delay`` seconds, or waits at a gate.

Run as ``python -m tests.support.slow_runner PORT`` (tests use :class:`SlowRunner`). It speaks
the part of the runner contract the router uses (``GET /readyz``, ``POST /metadata``,
``POST /binary/predict`` answering 5.5 per row with ``X-Model-Version``), plus, for the test
driving it: ``POST /_delay`` (body: seconds), ``POST /_gate`` (body ``close`` or ``open``),
``GET /_calls`` (predict calls received) and ``GET /_blocked`` (calls waiting at the closed
gate now). A closed gate holds every predict until it opens, or :data:`GATE_MAX_SECONDS`
pass, so a test can make a shadow model that never answers while it looks. Its own
process, so its threads never compete with the client measuring.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

WIDTH = 12
GATE_MAX_SECONDS = 60.0
"""A closed gate lets a call through after this long anyway: the stub stops by itself."""

state = {"delay": 0.02, "calls": 0, "blocked": 0}
lock = threading.Lock()
gate = threading.Event()
gate.set()


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
        if self.path in ("/_calls", "/_blocked"):
            self._answer(str(state[self.path[2:]]).encode())
        else:
            self._answer(b'{"status":"ready"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/_delay":
            state["delay"] = float(body)
            self._answer(b"{}")
        elif self.path == "/_gate":
            (gate.set if body == b"open" else gate.clear)()
            self._answer(b"{}")
        elif self.path == "/binary/predict":
            with lock:
                state["calls"] += 1
            if not gate.is_set():
                with lock:
                    state["blocked"] += 1
                gate.wait(GATE_MAX_SECONDS)
                with lock:
                    state["blocked"] -= 1
            time.sleep(float(state["delay"]))
            self._answer(np.full(len(body) // (8 * WIDTH), 5.5).tobytes(), "application/octet-stream")
        else:
            self._answer(json.dumps({"name": "svr", "version": "stub-1", "framework": "stub"}).encode())


class SlowRunner:
    """This stub in its own process on a free port: ``delay`` settable, gate, ``calls`` counted."""

    def __init__(self) -> None:
        import httpx

        from services.stack.processes import free_port, http_status
        from tests.support.waiting import wait_until

        self._http = httpx
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.slow_runner", str(port)])
        self._delay = 0.02
        wait_until(lambda: http_status(self.url + "/readyz") == 200, 20, interval=0.05)

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._delay = seconds
        self._http.post(self.url + "/_delay", content=str(seconds).encode()).raise_for_status()

    def close_gate(self) -> None:
        """From now on every predict waits until :meth:`open_gate`."""
        self._http.post(self.url + "/_gate", content=b"close").raise_for_status()

    def open_gate(self) -> None:
        self._http.post(self.url + "/_gate", content=b"open").raise_for_status()

    @property
    def calls(self) -> int:
        return int(self._http.get(self.url + "/_calls").text)

    @property
    def blocked(self) -> int:
        """Predict calls waiting at the closed gate now."""
        return int(self._http.get(self.url + "/_blocked").text)

    def stop(self) -> None:
        with contextlib.suppress(self._http.HTTPError):
            self.open_gate()  # let held calls go: the router stopping after this waits for none
        self.process.terminate()
        self.process.wait(10)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
