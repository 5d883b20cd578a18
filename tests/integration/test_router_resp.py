"""The router's pipelined Redis client (``services.router.resp``) against a real ``redis-server``.

Round trips of binary keys and values, nil and error replies, AUTH (password, user and
password), SELECT, hundreds of concurrent commands on one connection answered in order, a
Redis killed under pending commands and restarted, a paused Redis hitting the deadline, and
the prediction cache's batch script surviving a SCRIPT FLUSH.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop

from services.router.cache_keys import KEY_BYTES, unpack_score
from services.router.redis_cache import RedisCache
from services.router.resp import (
    AuthenticationError,
    RedisConnectionError,
    RedisTimeoutError,
    RespClient,
    ResponseError,
)
from services.stack.processes import ManagedProcess, free_port, redis_server_argv
from tests.support.binaries import require_binary
from tests.support.redis import RedisServer

pytestmark = pytest.mark.integration

BINARY_KEY = b"wmu:test:\x00\r\n\xff$*-"
BINARY_VALUE = b"\r\n$-1\r\n\x00\xfe*2\r\n"


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop, as the router does."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def test_get_mget_set_round_trip_binary_keys_values_and_nil(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def scenario() -> None:
        client = RespClient(server.url, 2.0)
        try:
            assert await client.get(BINARY_KEY) is None
            assert await client.set(BINARY_KEY, BINARY_VALUE, ex=60) == b"OK"
            assert await client.get(BINARY_KEY) == BINARY_VALUE
            assert await client.mget([b"wmu:test:absent", BINARY_KEY, b"wmu:test:absent2"]) == [
                None,
                BINARY_VALUE,
                None,
            ]
            assert 0 < await client.command("TTL", BINARY_KEY) <= 60
        finally:
            await client.close()

    run(scenario())
    with server.client() as check:
        assert check.get(BINARY_KEY) == BINARY_VALUE


def test_evalsha_and_noscript(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    script = "return {ARGV[1], #ARGV[2]}"

    async def scenario() -> None:
        client = RespClient(server.url, 2.0)
        try:
            sha = (await client.command("SCRIPT", "LOAD", script)).decode()
            assert await client.command("EVALSHA", sha, 0, b"a\r\nb", BINARY_VALUE) == [
                b"a\r\nb",
                len(BINARY_VALUE),
            ]
            await client.command("SCRIPT", "FLUSH")
            with pytest.raises(ResponseError, match=r"^NOSCRIPT"):
                await client.command("EVALSHA", sha, 0, b"x", b"y")
        finally:
            await client.close()

    run(scenario())


def test_an_error_reply_fails_its_command_only(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def scenario() -> None:
        client = RespClient(server.url, 2.0)
        try:
            await client.command("RPUSH", "wmu:test:list", "x")
            before = client.set(b"wmu:test:k", b"v", ex=60)
            wrong = client.get(b"wmu:test:list")
            after = client.get(b"wmu:test:k")
            results = await asyncio.gather(before, wrong, after, return_exceptions=True)
            assert results[0] == b"OK"
            assert isinstance(results[1], ResponseError) and str(results[1]).startswith("WRONGTYPE")
            assert results[2] == b"v"
            with pytest.raises(ResponseError, match=r"^WRONGTYPE"):
                await client.get(b"wmu:test:list")
            assert await client.get(b"wmu:test:k") == b"v"
            # Same connection still in use: the error did not reconnect.
            assert (await client.command("CLIENT", "LIST")).count(b"\n") == 1
        finally:
            await client.close()

    run(scenario())


def test_hundreds_of_concurrent_commands_are_answered_in_order_on_one_connection(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()

    async def scenario() -> None:
        client = RespClient(server.url, 2.0)
        try:
            counts = await asyncio.gather(*[client.command("INCR", "wmu:test:n") for _ in range(500)])
            assert counts == list(range(1, 501))
            keys = [b"wmu:test:%d" % i for i in range(300)]
            sets = [client.set(key, key[::-1], ex=60) for key in keys]
            gets = [client.get(key) for key in keys]
            assert await asyncio.gather(*sets) == [b"OK"] * 300
            assert await asyncio.gather(*gets) == [key[::-1] for key in keys]
            connections = await client.command("INFO", "clients")
            assert b"connected_clients:1\r\n" in connections
        finally:
            await client.close()

    run(scenario())


def test_select_db_from_the_url(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def scenario() -> None:
        client = RespClient(server.url.rsplit("/", 1)[0] + "/3", 2.0)
        try:
            await client.set(b"wmu:test:db", b"three", ex=60)
        finally:
            await client.close()

    run(scenario())
    with server.client() as check:
        assert check.get(b"wmu:test:db") is None
    with redis.Redis(host="127.0.0.1", port=server.port, db=3) as check:
        assert check.get(b"wmu:test:db") == b"three"


@pytest.fixture
def password_redis(tmp_path: Path) -> Any:
    """redis-server with requirepass and an ACL user ``cache`` (both with their own password)."""
    binary = require_binary("redis-server", "apt-get install redis-server")
    password, user_password = "pw-" + secrets.token_urlsafe(12), "up-" + secrets.token_urlsafe(12)
    port = free_port()

    def answers() -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=0.5) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    argv = [
        *redis_server_argv(port, binary=binary),
        "--requirepass", password,
        "--user", "cache", "on", f">{user_password}", "~*", "+@all",
    ]  # fmt: skip
    proc = ManagedProcess(argv=argv, log_path=tmp_path / "redis.log", ready_check=answers, ready_timeout=10)
    proc.start()
    try:
        yield {"port": port, "password": password, "user_password": user_password}
    finally:
        proc.stop()


def test_auth_with_password_and_with_user(password_redis: dict[str, Any]) -> None:
    port, password = password_redis["port"], password_redis["password"]
    base = f"redis://127.0.0.1:{port}"

    async def scenario() -> None:
        clients = [
            RespClient(f"{base}/0", 2.0, password=password),
            RespClient(f"redis://:{password}@127.0.0.1:{port}/0", 2.0, password="ignored-url-wins"),
            RespClient(f"redis://cache:{password_redis['user_password']}@127.0.0.1:{port}/1", 2.0),
        ]
        try:
            for i, client in enumerate(clients):
                assert await client.set(b"wmu:test:auth", b"%d" % i, ex=60) == b"OK"
                assert await client.get(b"wmu:test:auth") == b"%d" % i
            assert await clients[2].command("ACL", "WHOAMI") == b"cache"
        finally:
            for client in clients:
                await client.close()
        for wrong in (RespClient(f"{base}/0", 2.0, password="wrong"), RespClient(f"{base}/0", 2.0)):
            with pytest.raises(AuthenticationError):
                await wrong.get(b"wmu:test:auth")
            await wrong.close()

    run(scenario())


def test_redis_killed_fails_pending_commands_and_the_next_reconnects(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()

    async def scenario() -> None:
        client = RespClient(server.url, 10.0)
        try:
            await client.set(b"wmu:test:k", b"v", ex=60)
            # BLPOP holds the connection's FIFO; the GETs queue behind it.
            pending = [client.command("BLPOP", "wmu:test:never", 8), client.get(b"wmu:test:k")]
            pending.append(client.get(b"wmu:test:k"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await asyncio.to_thread(server.kill)
            results = await asyncio.gather(*pending, return_exceptions=True)
            assert all(isinstance(r, RedisConnectionError) for r in results), results
            assert time.monotonic() - started < 5
            with pytest.raises(RedisConnectionError):
                await client.get(b"wmu:test:k")  # nothing listens while Redis is down
            await asyncio.to_thread(server.start)
            assert await client.set(b"wmu:test:k", b"again", ex=60) == b"OK"
            assert await client.get(b"wmu:test:k") == b"again"
        finally:
            await client.close()

    run(scenario())


def test_a_paused_redis_fails_every_pending_command_by_the_deadline(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    assert server.proc is not None and server.proc.pid is not None
    pid = server.proc.pid

    async def scenario() -> None:
        deadline = 0.2
        client = RespClient(server.url, deadline)
        try:
            await client.set(b"wmu:test:k", b"v", ex=60)
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                results = await asyncio.gather(
                    client.get(b"wmu:test:k"), client.mget([b"wmu:test:k"]), return_exceptions=True
                )
                elapsed = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert deadline * 0.9 <= elapsed < deadline + 0.3, elapsed
            # The stale replies went with the closed connection: the next answers are right.
            assert await client.get(b"wmu:test:k") == b"v"
            assert await client.mget([b"wmu:test:absent", b"wmu:test:k"]) == [None, b"v"]
        finally:
            await client.close()

    run(scenario())


def test_cache_batch_write_survives_script_flush_and_errors_reach_the_back_off(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    keys = [bytes([i]) * KEY_BYTES for i in range(1, 6)]

    async def scenario() -> None:
        cache = RedisCache(server.url, ttl_seconds=60, timeout_seconds=0.5, backoff_seconds=0.3)
        try:
            server.command("SCRIPT", "FLUSH")
            await cache.set_many([(key, float(i)) for i, key in enumerate(keys)])
            assert not cache.bypassed
            assert await asyncio.gather(*[cache.get(key) for key in keys]) == [float(i) for i in range(5)]
            await cache.set_many([(keys[0], 9.5), (keys[1], 8.5)])  # the script is cached now
            assert await cache.get_many(keys[:2]) == [9.5, 8.5]
            await asyncio.to_thread(server.kill)
            assert await cache.get(keys[0]) is None
            assert cache.bypassed
            await asyncio.to_thread(server.start)
            await asyncio.sleep(0.35)
            await cache.set_many([(keys[2], 1.25)])
            assert await cache.get(keys[2]) == 1.25
        finally:
            await cache.close()

    run(scenario())
    with server.client() as check:
        assert unpack_score(check.get(keys[2])) == 1.25
