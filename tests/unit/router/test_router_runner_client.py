"""The router's runner client against a real loopback HTTP server standing for a runner.

The server requires the shared secret the way the runners do (``X-WineMeUp-Runner-Token``),
answers 413 to a batch over its limit and 500 when asked to: a 4xx is that request's error and
leaves the model ready, a 5xx marks it unavailable; no error carries the runner's address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from services.router.models import READY, UNAVAILABLE
from services.router.runner_http import RunnerConnections, RunnerTransport
from services.router.runners import (
    RUNNER_TOKEN_HEADER,
    MicroBatcher,
    RunnerClient,
    RunnerModel,
)
from winemeup.errors import ModelUnavailable, PayloadTooLarge, ServiceError
from winemeup.schema import SCHEMA

TOKEN = "s3cret-token-for-tests-0123456789"
ROW = SCHEMA.encode(SCHEMA.example())
MAX_ROWS = 5


async def _with_runner(test: Callable[[str, list[dict[str, str]]], Awaitable[None]]) -> None:
    seen: list[dict[str, str]] = []

    def allowed(request: web.Request) -> bool:
        seen.append(dict(request.headers))
        return request.headers.get(RUNNER_TOKEN_HEADER) == TOKEN

    async def predict(request: web.Request) -> web.Response:
        if not allowed(request):
            return web.json_response(
                {"error": "no token", "code": "unauthenticated", "details": []}, status=401
            )
        rows = np.frombuffer(await request.read(), dtype="<f8").reshape(-1, len(SCHEMA))
        if rows.shape[0] > MAX_ROWS:
            return web.json_response(
                {"error": "too many", "code": "payload_too_large", "details": []}, status=413
            )
        if rows[0, 0] < 0:
            return web.Response(status=500, text="Traceback (most recent call last): /srv/model.py")
        return web.Response(body=np.full(rows.shape[0], 6.0).tobytes(), headers={"X-Model-Version": "v1"})

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=200 if allowed(request) else 401)

    async def metadata(request: web.Request) -> web.Response:
        if not allowed(request):
            return web.json_response({"error": "no token"}, status=401)
        return web.json_response({"name": "m", "version": "v1", "framework": "test"})

    app = web.Application()
    app.router.add_post("/binary/predict", predict)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/metadata", metadata)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await test(f"http://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def _model(session: Any, url: str, token: str | None) -> RunnerModel:
    client = RunnerClient(RunnerTransport(session, RunnerConnections()), url, 2.0, token)
    return RunnerModel("m", client, 60.0, 256, 0.0, 2)


def test_every_call_carries_the_token_and_a_4xx_leaves_the_model_ready() -> None:
    async def scenario(url: str, seen: list[dict[str, str]]) -> None:
        async with aiohttp.ClientSession() as session:
            model = _model(session, url, TOKEN)
            await model.probe()
            assert model.status == READY
            scores, version = await model.predict(np.array([ROW] * 3))
            assert version == "v1" and scores.tolist() == [6.0] * 3
            with pytest.raises(PayloadTooLarge) as refused:
                await model.predict(np.array([ROW] * (MAX_ROWS + 1)))
            assert "127.0.0.1" not in refused.value.message
            assert model.status == READY  # the client's mistake, not the runner's
            assert all(h.get(RUNNER_TOKEN_HEADER) == TOKEN for h in seen) and len(seen) >= 4

    asyncio.run(_with_runner(scenario))


def test_without_the_token_the_runner_is_not_ready_and_a_5xx_hides_its_details() -> None:
    async def scenario(url: str, seen: list[dict[str, str]]) -> None:
        async with aiohttp.ClientSession() as session:
            model = _model(session, url, None)
            await model.probe()
            assert model.status == UNAVAILABLE and url not in model.reason
            good = _model(session, url, TOKEN)
            await good.probe()
            bad_row = np.array([[-1.0, *ROW[1:]]])
            with pytest.raises(ModelUnavailable) as failed:
                await good.predict(bad_row)
            message = failed.value.message
            assert "/srv" not in message and "127.0.0.1" not in message and "Traceback" not in message
            assert "Traceback" in failed.value.detail  # kept for the log
            assert good.status == UNAVAILABLE

    asyncio.run(_with_runner(scenario))


def test_a_refused_caller_in_a_gathered_call_does_not_fail_the_others() -> None:
    async def scenario() -> None:
        calls: list[int] = []

        async def call(matrix: np.ndarray) -> tuple[np.ndarray, str]:
            calls.append(matrix.shape[0])
            if matrix.shape[0] > 3:
                raise PayloadTooLarge("too many rows")
            return np.zeros(matrix.shape[0]), "v"

        batcher = MicroBatcher(call, max_rows=100)
        small = batcher.submit(np.zeros((1, len(SCHEMA))))
        large = batcher.submit(np.zeros((4, len(SCHEMA))))
        results = await asyncio.gather(small, large, return_exceptions=True)
        assert isinstance(results[1], ServiceError) and results[1].status == 413
        assert not isinstance(results[0], BaseException) and results[0][0].tolist() == [0.0]
        assert calls == [5, 1, 4]

    asyncio.run(scenario())
