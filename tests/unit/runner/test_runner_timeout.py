"""The runner's request timeout releases each request as soon as it is answered
(services/runner/timeout.py), unlike BentoML's own, which holds it for the whole timeout: the
cause of the runner's p99 stalls (full collections walking every request of the last 10 s)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop
from bentoml._internal.server.base_app import BaseAppFactory
from bentoml._internal.server.http import traffic

from services.runner import timeout

_REQUEST: contextvars.ContextVar[object] = contextvars.ContextVar("request")


class _Marker:
    """Stands for what a request's context holds (its span, its futures)."""


async def _serve_once(middleware_class: type, delay: float = 0.0) -> tuple[list[dict[str, Any]], weakref.ref]:
    marker = _Marker()
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        _REQUEST.set(marker)  # the request's context now references the marker
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = middleware_class(app, timeout=0.2 if delay else 30.0)
    # Each request runs in a context of its own, as the ASGI server gives it.
    await asyncio.create_task(middleware({"type": "http"}, receive, send), context=contextvars.Context())
    return sent, weakref.ref(marker)


def _request_outlives_its_answer(middleware_class: type) -> bool:
    async def main() -> bool:
        sent, marker = await _serve_once(middleware_class)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        gc.collect()
        return marker() is not None

    return uvloop.run(main())


def test_bentoml_timeout_holds_each_answered_request() -> None:
    # The defect the replacement exists for: if BentoML fixes it, drop services/runner/timeout.py.
    assert _request_outlives_its_answer(_upstream())


def test_the_runner_timeout_releases_each_request_once_answered() -> None:
    assert not _request_outlives_its_answer(timeout.ReleasingTimeoutMiddleware)


def test_a_slow_request_still_gets_504() -> None:
    sent, _ = uvloop.run(_serve_once(timeout.ReleasingTimeoutMiddleware, delay=1.0))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 504


@pytest.fixture
def restore_traffic() -> Any:
    original = traffic.TimeoutMiddleware
    yield
    traffic.TimeoutMiddleware = original  # type: ignore[misc]


def test_install_makes_bentoml_build_the_releasing_middleware(restore_traffic: Any) -> None:
    timeout.install()
    factory = SimpleNamespace(timeout=10.0, max_concurrency=None)
    middlewares = BaseAppFactory.middlewares.fget(factory)  # type: ignore[attr-defined]
    assert [m.cls for m in middlewares] == [timeout.ReleasingTimeoutMiddleware]


def _upstream() -> type:
    """BentoML's own class, even after install() replaced the module attribute."""
    return next(
        c for c in timeout.ReleasingTimeoutMiddleware.__mro__[1:] if c.__name__ == "TimeoutMiddleware"
    )
