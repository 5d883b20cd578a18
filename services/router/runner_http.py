"""A lean HTTP/1.1 keep-alive client for the router's hottest runner call, ``/binary/predict``.

Every cache miss becomes one runner call, so its cost is paid per miss: here a call is one
``transport.write`` of a request head built once per client (only ``Content-Length`` changes)
and the answer is parsed by ``httptools`` straight from the event loop's ``data_received``.

Connections to one runner (scheme, host, port) are kept in a :class:`ConnectionPool`: a call
takes an idle connection or opens one, and a connection goes back only after a complete answer
that allows keep-alive. A connection older than the maximum age is closed instead of kept, so
a Kubernetes Service balances new connections to runner pods added by a scale-out. A connection
the runner closed while it sat idle (its keep-alive timeout) costs one retry on a new connection
(predict is idempotent), never a failed call.

Failures are plain exceptions the caller maps: ``TimeoutError`` when the deadline passes (the
connection is closed, never reused), ``OSError`` (connection refused, :class:`ConnectionLost`,
:class:`MalformedAnswer`) when no full answer came.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from services.router import metrics


class ConnectionLost(ConnectionError):
    """The connection closed before a full answer; ``before_answer`` when no byte of it came."""

    def __init__(self, message: str, before_answer: bool):
        super().__init__(message)
        self.before_answer = before_answer


class MalformedAnswer(ConnectionError):
    """The bytes the runner sent are not an HTTP/1.1 answer."""


class InvalidRunnerURL(OSError):
    """The runner's base URL names no HTTP origin."""


class Answer:
    """Status, body and model version of one complete answer."""

    __slots__ = ("body", "status", "version")

    def __init__(self, status: int, body: bytes, version: str | None):
        self.status = status
        self.body = body
        self.version = version


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.born = 0.0
        self.closed = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body: list[bytes] = []
        self._version: str | None = None
        self._status = 0
        self._keep_alive = False
        self._answering = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.born = self.pool.loop.time()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pool.opened(self)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.close()
            return
        self._answering = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(MalformedAnswer(f"malformed answer: {e}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        if self._waiter is not None:
            reason = f"{type(exc).__name__}: {exc}" if exc else "the runner closed the connection"
            before = not self._answering
            self._fail(ConnectionLost(f"{reason} before a full answer", before_answer=before))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 15 and name.lower() == b"x-model-version":
            self._version = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        answer = Answer(self._status, body, self._version)
        self._reset()
        if self._keep_alive:
            self.pool.release(self)
        else:
            self.close()
        if not waiter.done():
            waiter.set_result(answer)

    # the client's side

    def request(self, payload: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Send one request; the future gets its answer, or fails by ``deadline``."""
        assert self.transport is not None
        loop = self.pool.loop
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._timer = loop.call_at(deadline, self._expire)
        self.transport.write(payload)
        return waiter

    def _expire(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no answer before the deadline"))
        self.close()  # the answer may still come: this connection's framing is lost

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _reset(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiter = None
        self._body = []
        self._version = None
        self._answering = False

    def close(self) -> None:
        """Close the connection for good (it never goes back to the pool)."""
        self.closed = True
        self.pool.lost(self)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is unsent (a call given up half-way)."""
        self._reset()
        self.close()
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Idle keep-alive connections to one runner origin; every connection it opened, to close them."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, max_age_seconds: float):
        self.host = host
        self.port = port
        self.tls = tls
        self.max_age = max_age_seconds
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def open_connections(self) -> int:
        return len(self._all)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def take(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        """The most recently used idle connection young enough to use, or None."""
        if loop is not self._loop:
            # Connections belong to the loop that opened them (a test's second asyncio.run);
            # that loop has closed them or will, with itself.
            self._idle.clear()
            self._all.clear()
            self._loop = loop
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if self.max_age > 0 and loop.time() - conn.born >= self.max_age:
                metrics.RUNNER_CONNECTIONS_RECYCLED.inc()
                conn.close()
                continue
            return conn
        return None

    async def open(self, deadline: float) -> _Connection:
        """A new connection, connected by ``deadline`` (TimeoutError otherwise)."""
        loop = self.loop
        async with asyncio.timeout_at(deadline):
            _, protocol = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port, ssl=self.tls
            )
        return cast(_Connection, protocol)

    def opened(self, conn: _Connection) -> None:
        self._all.add(conn)

    def release(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next call, unless it is closed or too old."""
        if conn.closed:
            return
        if self.max_age > 0 and self.loop.time() - conn.born >= self.max_age:
            metrics.RUNNER_CONNECTIONS_RECYCLED.inc()
            conn.close()
            return
        self._idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        """Close every connection, idle or busy (a call still waiting fails with ConnectionLost)."""
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()


class RunnerConnections:
    """The connection pools of one router (one per runner origin), closed together at shutdown."""

    def __init__(self, max_age_seconds: float = 0.0):
        self.max_age = max_age_seconds
        self._pools: dict[tuple[str, str, int], ConnectionPool] = {}

    def pool(self, scheme: str, host: str, port: int) -> ConnectionPool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            tls = ssl.create_default_context() if scheme == "https" else None
            pool = self._pools[key] = ConnectionPool(host, port, tls, self.max_age)
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


@dataclass(frozen=True)
class RunnerTransport:
    """What the runner clients of one router share, closed together at shutdown: aiohttp's
    ``session`` for metadata and readiness calls, and the keep-alive ``connections`` (one pool
    per runner origin) for predictions."""

    session: Any
    connections: RunnerConnections

    async def close(self) -> None:
        await self.session.close()
        await self.connections.close()


class BinaryPost:
    """``POST <base_url><route>`` of a binary body over a pool: the head is built once."""

    def __init__(
        self,
        connections: RunnerConnections,
        base_url: str,
        route: str,
        headers: dict[str, str],
        timeout_seconds: float,
    ):
        url = urlsplit(base_url.rstrip("/") + route)
        self.timeout = timeout_seconds
        self._invalid: InvalidRunnerURL | None = None
        if url.scheme not in ("http", "https") or not url.hostname:
            # Like any other unreachable runner: each call fails, the router still starts.
            self._invalid = InvalidRunnerURL(f"{base_url!r} is not http(s)://host[:port][/path]")
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError as e:
            self._invalid, port = InvalidRunnerURL(f"{base_url!r}: {e}"), 0
        self.pool = connections.pool(url.scheme, url.hostname or "", port)
        host = url.netloc.rpartition("@")[2]
        lines = [f"POST {url.path or '/'} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    async def __call__(self, body: bytes) -> Answer:
        """The runner's complete answer to ``body``; TimeoutError or OSError when none came."""
        if self._invalid is not None:
            raise self._invalid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        payload = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        pool = self.pool
        conn = pool.take(loop)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await pool.open(deadline)
            try:
                return await conn.request(payload, deadline)
            except ConnectionLost as e:
                if not (reused and e.before_answer):
                    raise
                # Closed by the runner while idle, before our request reached it: once more, anew.
                conn, reused = None, False
            except BaseException:
                conn.abort()
                raise
