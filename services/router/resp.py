"""A lean pipelining Redis client (RESP2) for the prediction cache's hot path.

One connection per client, opened lazily: requests are written in order and replies are
matched first-in first-out to futures, so any number of concurrent commands share one
socket without a pool, a retry wrapper or stream readers. Commands are packed by hand into
RESP arrays of bulk strings; replies are parsed by ``hiredis.Reader``.

A FIFO cannot skip a reply: when one command passes its deadline, or the connection drops,
the connection is closed and every pending command fails. The next command reconnects.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections import deque
from collections.abc import Awaitable
from typing import Any

import hiredis

from services.router.redis_connection import connect_deadline

_CRLF = b"\r\n"
# Error replies to AUTH (or to a command before it) that mean the credentials are wrong or missing.
_AUTH_REFUSALS = ("WRONGPASS", "NOAUTH", "ERR invalid password", "ERR AUTH", "ERR invalid username")


class ResponseError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``, ``-NOSCRIPT ...``)."""


class AuthenticationError(ResponseError):
    """Redis refused AUTH (wrong password or user), or asked for a password (NOAUTH)."""


class RedisConnectionError(ConnectionError):
    """The connection to Redis could not be opened or was lost with commands pending."""


class RedisTimeoutError(TimeoutError):
    """A command passed its deadline; the connection was closed."""


def pack_command(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(_CRLF)
    return b"".join(parts)


def _typed(error: ResponseError) -> ResponseError:
    """An AuthenticationError for replies that mean wrong or missing credentials."""
    return AuthenticationError(*error.args) if str(error).startswith(_AUTH_REFUSALS) else error


def _bytes(value: str | bytes | int | float) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


class _RespProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError, notEnoughData=Ellipsis)
        self.futures: deque[asyncio.Future[Any]] = deque()
        # (deadline on the loop's clock, timeout) of each pending command, in the same order.
        self.deadlines: deque[tuple[float, float]] = deque()
        # One timer for all pending commands (a timer per command costs about 3 µs): armed for
        # the soonest deadline known when it was set, it re-arms itself while commands remain.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        # Commands issued in one event-loop turn leave in one write: on loopback a send costs
        # the sender tens of µs (the kernel delivers to Redis in its context).
        self.outgoing: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, payload: bytes, timeout: float) -> asyncio.Future[Any]:
        """Write one packed command; its future gets the reply (or fails by ``timeout``)."""
        future = self.loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("Redis connection is closed"))
            return future
        deadline = self.loop.time() + timeout
        self.futures.append(future)
        self.deadlines.append((deadline, timeout))
        if deadline < self.timer_at:
            self._arm(deadline)
        if not self.outgoing:
            self.loop.call_soon(self._send)
        self.outgoing.append(payload)
        return future

    def _send(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and not self.closed and self.transport is not None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self.timer, self.timer_at = None, math.inf
        if not self.deadlines:
            return
        deadline, timeout = min(self.deadlines)
        if deadline <= self.loop.time():
            self.abort(RedisTimeoutError(f"no Redis reply within {timeout:g}s"))
        else:
            self._arm(deadline)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        futures, deadlines = self.futures, self.deadlines
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self.abort(RedisConnectionError(f"Redis protocol error: {e}"))
                return
            if reply is Ellipsis:
                return
            if not futures:
                self.abort(RedisConnectionError("Redis sent a reply to no command"))
                return
            future = futures.popleft()
            deadlines.popleft()
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_typed(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(
            RedisConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection")
        )

    def abort(self, error: Exception) -> None:
        """Close the connection and fail every pending command with ``error``."""
        self.closed = True
        self.outgoing = []
        if self.transport is not None:
            self.transport.abort()
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, math.inf
        futures, self.futures = self.futures, deque()
        self.deadlines.clear()
        for future in futures:
            if not future.done():
                # One instance each: a shared one would pile up every awaiter's traceback.
                future.set_exception(type(error)(*error.args))


class RespClient:
    """A pipelining Redis client on one lazily opened connection.

    ``url`` takes the forms ``redis.from_url`` does (``redis://``, ``rediss://``, ``unix://``,
    user and password, db in the path or ``?db=``). A password in the URL wins over
    ``password``. TLS (``rediss://``) verifies the server against ``tls_ca_file``, or the system
    CAs, as the redis-py connections do. Every command has a deadline (``timeout_seconds``
    unless given); the connect has its own, with a floor of 0.5 s for TLS handshakes.
    """

    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        *,
        password: str | None = None,
        tls_ca_file: str | None = None,
        connect_timeout_seconds: float | None = None,
    ) -> None:
        from redis.connection import SSLConnection, parse_url

        options: dict[str, Any] = parse_url(url)
        self.timeout = timeout_seconds
        self._host: str = options.get("host") or "localhost"
        self._port = int(options.get("port") or 6379)
        self._path: str | None = options.get("path")
        self._ssl: ssl.SSLContext | None = None
        if options.get("connection_class") is SSLConnection:
            self._ssl = _ssl_context(options, tls_ca_file)
        tls = self._ssl is not None
        self.connect_timeout = connect_deadline(timeout_seconds, connect_timeout_seconds, tls)
        self._handshake: list[bytes] = []
        secret = options.get("password") or password
        username = options.get("username")
        if secret is not None:
            credentials = (_bytes(username), _bytes(secret)) if username else (_bytes(secret),)
            self._handshake.append(pack_command(b"AUTH", *credentials))
        db = int(options.get("db") or 0)
        if db:
            self._handshake.append(pack_command(b"SELECT", b"%d" % db))
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future[_RespProtocol] | None = None

    def execute(self, payload: bytes, timeout: float | None = None) -> Awaitable[Any]:
        """Send one packed command (``pack_command``); await the reply.

        On an open connection this returns the reply's future itself: no coroutine per command.
        """
        protocol = self._protocol
        deadline = self.timeout if timeout is None else timeout
        if protocol is not None and not protocol.closed:
            return protocol.request(payload, deadline)
        return self._connect_then(payload, deadline)

    async def _connect_then(self, payload: bytes, deadline: float) -> Any:
        protocol = await self._connected()
        return await protocol.request(payload, deadline)

    async def _connected(self) -> _RespProtocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        # Concurrent callers share one connect; shielded so one cancelled caller cannot abort it.
        return await asyncio.shield(self._connecting)

    def _connect_done(self, connecting: asyncio.Future[_RespProtocol]) -> None:
        self._connecting = None
        if not connecting.cancelled() and connecting.exception() is None:
            self._protocol = connecting.result()

    async def _connect(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        protocol: _RespProtocol | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._path is not None:
                    _, protocol = await loop.create_unix_connection(lambda: _RespProtocol(loop), self._path)
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _RespProtocol(loop),
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None,
                    )
                replies = [protocol.request(command, self.connect_timeout) for command in self._handshake]
                answers = await asyncio.gather(*replies, return_exceptions=True)
            refused = next((a for a in answers if isinstance(a, BaseException)), None)
            if refused is not None:
                raise refused
        except BaseException as e:
            if protocol is not None:
                protocol.abort(RedisConnectionError("Redis connection handshake failed"))
            if isinstance(e, TimeoutError) and not isinstance(e, RedisTimeoutError):
                raise RedisTimeoutError(f"no Redis connection within {self.connect_timeout:g}s") from e
            if isinstance(e, OSError) and not isinstance(e, RedisConnectionError | RedisTimeoutError):
                raise RedisConnectionError(f"cannot connect to Redis: {e}") from e
            raise
        return protocol

    def get(self, key: bytes) -> Awaitable[bytes | None]:
        return self.execute(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))

    def mget(self, keys: list[bytes]) -> Awaitable[list[bytes | None]]:
        return self.execute(pack_command(b"MGET", *keys))

    def set(self, key: bytes, value: bytes, ex: int) -> Awaitable[bytes]:
        ttl = b"%d" % ex
        return self.execute(
            b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n"
            % (len(key), key, len(value), value, len(ttl), ttl)
        )

    def command(self, *args: str | bytes | int | float, timeout: float | None = None) -> Awaitable[Any]:
        """Any command; arguments are sent as bulk strings (numbers in decimal)."""
        return self.execute(pack_command(*[_bytes(a) for a in args]), timeout)

    async def close(self) -> None:
        """Close the connection; pending commands fail. The next command would reconnect."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and not protocol.closed:
            protocol.abort(RedisConnectionError("Redis client closed"))


def _ssl_context(options: dict[str, Any], tls_ca_file: str | None) -> ssl.SSLContext:
    """Verify the server as redis-py's SSL connections do (``ssl_cert_reqs``, ``ssl_check_hostname``)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs") or tls_ca_file)
    reqs = options.get("ssl_cert_reqs") or "required"
    modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    mode: ssl.VerifyMode = modes[reqs] if isinstance(reqs, str) else reqs
    check = options.get("ssl_check_hostname", True)
    context.check_hostname = bool(check) and mode != ssl.CERT_NONE
    context.verify_mode = mode
    return context
