"""Runner connections have a maximum age, so a scaled-out runner pod gets traffic.

A loopback aiohttp server stands for the runner Service and records the client port of every
request: while the session is younger than its maximum age every request reuses one kept-alive
connection; once older, the next request opens a new connection (which a Kubernetes Service
would balance to any pod, the new ones included), and requests in flight on the old one finish.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from services.router.runner_session import RecyclingSession


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _scenario() -> tuple[list[int], int, list[int]]:
    ports: list[int] = []
    held, release = asyncio.Event(), asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else -1)
        if "hold" in request.query:  # answered only once the test releases it
            held.set()
            await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/"
    clock = FakeClock()
    session = RecyclingSession(aiohttp.ClientSession, max_age_seconds=30, drain_seconds=0.5, clock=clock)

    async def get(query: str = "") -> str:
        async with session.get(url + query) as resp:
            return await resp.text()

    try:
        for _ in range(5):
            assert await get() == "ok"
        young = list(ports)
        slow = asyncio.ensure_future(get("?hold"))  # in flight when the session is renewed
        await held.wait()
        clock.now = 31.0
        assert await get() == "ok"
        release.set()
        assert await slow == "ok"  # the old connection drained, not cut
        for _ in range(3):
            assert await get() == "ok"
        return young, session.recycled, ports[len(young) :]
    finally:
        await session.close()
        await runner.cleanup()


def test_connections_are_renewed_once_older_than_the_maximum_age() -> None:
    young, recycled, later = asyncio.run(_scenario())
    assert len(set(young)) == 1  # kept alive while young
    assert recycled == 1
    slow_port, after = later[0], later[1:]
    assert slow_port == young[0]
    assert len(set(after)) == 1 and after[0] != young[0]  # a new connection after the renewal


def test_zero_means_never_renewed() -> None:
    async def scenario() -> Any:
        clock = FakeClock()
        session = RecyclingSession(aiohttp.ClientSession, max_age_seconds=0, drain_seconds=0, clock=clock)
        first = session._current()
        clock.now = 1e9
        same = session._current() is first
        await session.close()
        return same

    assert asyncio.run(scenario()) is True
