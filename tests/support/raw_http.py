"""HTTP/1.1 over plain sockets: requests prepared in advance and written back to back.

A Python HTTP client spends hundreds of microseconds building each request, so "concurrent"
requests from it reach the server spread out over milliseconds. A burst written from bytes
prepared in advance reaches the server within a fraction of a millisecond, however busy the
test process is: what a test of server-side batching needs.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlsplit


def request_bytes(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One keep-alive request as bytes."""
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one answer with a Content-Length (the router always sends one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} bytes of an answer")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (line.partition(b":") for line in lines[1:]) if k.lower() == b"content-length"
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside an answer's body")
        rest += chunk
    return status, rest[:length]


class Connections:
    """``count`` keep-alive connections to ``url``, each checked with one request first."""

    def __init__(self, url: str, count: int, warm: bytes, timeout: float = 10.0):
        parts = urlsplit(url)
        self.socks = [
            socket.create_connection((parts.hostname, parts.port), timeout=timeout) for _ in range(count)
        ]
        for sock in self.socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        statuses = self.burst([warm] * count)
        if set(statuses) != {200}:
            raise AssertionError(f"warm-up requests answered {statuses}")

    def burst(self, requests: Sequence[bytes]) -> list[int]:
        """Write one request on each connection back to back, then read every answer's status."""
        for sock, data in zip(self.socks, requests, strict=True):
            sock.sendall(data)
        return [read_response(sock)[0] for sock in self.socks]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
