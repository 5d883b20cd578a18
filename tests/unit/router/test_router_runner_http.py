"""The runner client's own keep-alive HTTP/1.1 client against a real loopback HTTP server.

The server stands for a runner and writes its answers byte by byte, so each test chooses the
framing (Content-Length, chunked, ``Connection: close``), the status, a slow answer, or a
connection closed without an answer; it counts the TCP connections it accepted, which is how
keep-alive reuse, the single retry of a stale connection and the closing of a timed-out one
are seen. Every scenario runs on asyncio's loop and on uvloop (the router's).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import uvicorn
import uvloop

from services.router.runner_http import RunnerConnections, RunnerTransport
from services.router.runner_session import RecyclingSession
from services.router.runners import (
    RUNNER_TOKEN_HEADER,
    RunnerClient,
    RunnerRefused,
    RunnerUnreachable,
)
from winemeup.schema import SCHEMA

TOKEN = "s3cret-token-for-tests-0123456789"
ROWS = np.array([SCHEMA.encode(SCHEMA.example())] * 3)
TIMEOUT = 0.3


class Runner:
    """A loopback HTTP/1.1 server answering ``/binary/predict`` the way ``behaviour`` says."""

    def __init__(self) -> None:
        self.behaviour = "ok"
        self.accepted = 0
        self.ended = 0  # connections the client side closed or this server dropped
        self.requests: list[dict[str, str]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Runner:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        nth = 0
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {
                    k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
                }
                body = await reader.readexactly(int(headers["content-length"]))
                headers["request-line"] = head[0]
                self.requests.append(headers)
                nth += 1
                answer = await self._answer(nth, len(body) // (8 * len(SCHEMA)))
                if answer is None:
                    return  # closed without an answer
                writer.write(answer)
                await writer.drain()
                if self.behaviour in ("close", "partial", "close-idle"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.ended += 1
            writer.close()

    async def _answer(self, nth: int, rows: int) -> bytes | None:
        scores = np.full(rows, 6.0, dtype="<f8").tobytes()
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Model-Version: v1\r\n"
        b = self.behaviour
        if b == "drop" or (b == "drop-second" and nth >= 2):
            return None
        if b == "slow":
            await asyncio.sleep(TIMEOUT * 3)
        if b == "chunked":
            half = len(scores) // 2
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (scores[:half], scores[half:]))
            return ok + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        if b == "close":
            return ok + b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(scores), scores)
        if b == "partial":
            return ok + b"Content-Length: %d\r\n\r\n%s" % (len(scores), scores[:5])
        if b.isdigit():
            text = b"Traceback (most recent call last): /srv/model.py"
            return b"HTTP/1.1 %s Nope\r\nContent-Length: %d\r\n\r\n%s" % (b.encode(), len(text), text)
        return ok + b"Content-Length: %d\r\n\r\n%s" % (len(scores), scores)


def _asyncio_run(main: Awaitable[None]) -> None:
    asyncio.run(main)  # type: ignore[arg-type]


def _uvloop_run(main: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)  # type: ignore[arg-type]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[None]], None]:
    return _asyncio_run if request.param == "asyncio" else _uvloop_run


def _client(url: str, max_age: float = 0.0) -> tuple[RunnerClient, RunnerTransport]:
    # predict never opens the aiohttp session
    transport = RunnerTransport(RecyclingSession(lambda: None, max_age, 1.0), RunnerConnections(max_age))
    return RunnerClient(transport, url, TIMEOUT, TOKEN), transport


async def _predict_ok(client: RunnerClient) -> None:
    scores, version = await client.predict(ROWS)
    assert version == "v1" and scores.tolist() == [6.0] * len(ROWS)


def test_sequential_calls_share_one_kept_alive_connection(run: Callable[[Awaitable[None]], None]) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            for _ in range(20):
                await _predict_ok(client)
            assert runner.accepted == 1
            assert len(runner.requests) == 20
            first = runner.requests[0]
            assert first["request-line"] == "POST /binary/predict HTTP/1.1"
            assert first[RUNNER_TOKEN_HEADER.lower()] == TOKEN
            assert first["content-type"] == "application/octet-stream"
            assert first["content-length"] == str(ROWS.size * 8)
            await transport.connections.close()
            await asyncio.sleep(0.05)
            assert runner.ended == 1  # close() closed the pooled connection

    run(scenario())


def test_a_connection_closed_while_idle_is_retried_once_on_a_new_one(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            runner.behaviour = "drop-second"  # closes a kept-alive connection as its next request arrives
            for _ in range(3):
                await _predict_ok(client)
            assert runner.accepted == 3  # each reused connection failed once, each retry a new one
            runner.behaviour = "drop"  # a new connection that fails is not retried
            await transport.connections.close()
            with pytest.raises(RunnerUnreachable) as failed:
                await client.predict(ROWS)
            assert str(failed.value) == "runner unreachable (ConnectionLost)" and not failed.value.timeout
            assert runner.accepted == 4

    run(scenario())


def test_a_runner_that_closes_idle_connections_costs_no_failed_call(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            runner.behaviour = "close-idle"  # closes each connection once it answered, as if timed out
            for _ in range(5):
                await _predict_ok(client)  # the closed connection is seen, or its request retried
            await asyncio.sleep(0.05)
            await _predict_ok(client)
            assert runner.accepted == 6
            await transport.connections.close()

    run(scenario())


def test_a_missed_deadline_raises_a_timeout_and_the_connection_is_not_reused(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            runner.behaviour = "slow"
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RunnerUnreachable) as late:
                await client.predict(ROWS)
            assert late.value.timeout and str(late.value) == f"no answer within {TIMEOUT:g}s"
            assert loop.time() - started < TIMEOUT * 2
            pool = client._predict.pool
            assert pool.open_connections == 0 and pool.idle_connections == 0
            runner.behaviour = "ok"
            await _predict_ok(client)
            assert runner.accepted == 2
            await transport.connections.close()

    run(scenario())


def test_answers_other_than_200_map_to_refused_or_unreachable(run: Callable[[Awaitable[None]], None]) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            for status in ("400", "413", "422"):
                runner.behaviour = status
                with pytest.raises(RunnerRefused) as refused:
                    await client.predict(ROWS)
                assert refused.value.status == int(status) and "Traceback" in refused.value.detail
            for status in ("401", "403", "408", "429", "500", "503"):
                runner.behaviour = status
                with pytest.raises(RunnerUnreachable) as failed:
                    await client.predict(ROWS)
                assert str(failed.value) == f"runner answered HTTP {status}" and not failed.value.timeout
                assert "Traceback" in failed.value.detail and "Traceback" not in str(failed.value)
            assert runner.accepted == 1  # every answer was complete and kept alive
            await transport.connections.close()

    run(scenario())


def test_chunked_answers_and_connection_close(run: Callable[[Awaitable[None]], None]) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url)
            runner.behaviour = "chunked"
            await _predict_ok(client)
            await _predict_ok(client)
            assert runner.accepted == 1
            runner.behaviour = "close"
            await _predict_ok(client)  # on the chunked answers' connection, then closed
            await _predict_ok(client)
            assert runner.accepted == 2 and client._predict.pool.open_connections == 0
            runner.behaviour = "ok"
            await _predict_ok(client)
            assert runner.accepted == 3
            await transport.connections.close()

    run(scenario())


def test_no_runner_and_a_cut_answer_are_unreachable_not_timeouts(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            url = runner.url
            client, transport = _client(url)
            runner.behaviour = "partial"
            with pytest.raises(RunnerUnreachable) as cut:
                await client.predict(ROWS)
            assert str(cut.value) == "runner unreachable (ConnectionLost)" and not cut.value.timeout
            assert runner.accepted == 1  # bytes of the answer came: never retried
        with pytest.raises(RunnerUnreachable) as refused:
            await client.predict(ROWS)
        assert str(refused.value) == "runner unreachable (ConnectionRefusedError)"
        assert not refused.value.timeout and "127.0.0.1" not in str(refused.value)
        await transport.connections.close()

    run(scenario())


def test_connections_older_than_the_maximum_age_are_replaced(run: Callable[[Awaitable[None]], None]) -> None:
    async def scenario() -> None:
        async with Runner() as runner:
            client, transport = _client(runner.url, max_age=0.2)
            await _predict_ok(client)
            await _predict_ok(client)
            assert runner.accepted == 1
            await asyncio.sleep(0.25)
            await _predict_ok(client)
            assert runner.accepted == 2  # a new connection, which a Service may send to a new pod
            await transport.connections.close()

    run(scenario())


def test_a_uvicorn_runner_closing_idle_connections_fails_no_call() -> None:
    """uvicorn (the runners' server) closes a connection idle past its keep-alive timeout."""
    peers: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        peers.append(scope["client"][1])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        scores = np.full(len(body) // (8 * len(SCHEMA)), 6.0, dtype="<f8").tobytes()
        headers = [(b"content-type", b"application/octet-stream"), (b"x-model-version", b"v1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": scores})

    async def scenario() -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="none",
            http="httptools",
            timeout_keep_alive=1,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        listening = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog
        port = listening.getsockname()[1]
        serving = asyncio.ensure_future(server.serve(sockets=[listening]))
        client, transport = _client(f"http://127.0.0.1:{port}")
        try:
            for _ in range(3):
                await _predict_ok(client)
            await asyncio.sleep(1.3)  # past uvicorn's keep-alive timeout: it closed the connection
            for _ in range(3):
                await _predict_ok(client)
            assert len(set(peers[:3])) == 1 and len(set(peers[3:])) == 1 and peers[0] != peers[3]
        finally:
            await transport.connections.close()
            server.should_exit = True
            await serving

    _uvloop_run(scenario())
