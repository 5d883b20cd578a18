"""BentoML's request timeout (``traffic.timeout``) without holding every request for that long.

BentoML 1.4's ``TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)`` for each request and
never cancels it. The timer keeps a copy of the request's ``contextvars`` context, and with it
the request's OpenTelemetry span, its futures and what they reference, until the timeout
expires, long after the answer was sent. Profiled on extra_trees' runner at about 900 requests
per second with a 10 s timeout: the objects no collection can free grew by about 7 per request
(span, context, locks, deques) to 250,000 in 30 s, and each full collection walked them all
(gen2 pauses of 40-70 ms, collecting nothing: the p99 stalls of issue 21). The chain, read with
``gc.get_referrers`` during a collection: span <- OpenTelemetry context <- ``contextvars``
context <- ``uvloop.TimerHandle``.

:class:`ReleasingTimeoutMiddleware` behaves the same (504 when no response started in time)
and cancels its timer as soon as the response starts or the request ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class ReleasingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """``TimeoutMiddleware`` that cancels its timer when the response starts."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                await JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504
                )(scope, receive, send)
            return
        finally:
            timer.cancel()
        await fut


def install() -> None:
    """Make BentoML build its timeout middleware from :class:`ReleasingTimeoutMiddleware`.

    BentoML imports ``traffic.TimeoutMiddleware`` when it assembles a service's ASGI app, so
    this must run before the service is served (the runner's service module calls it)."""
    traffic.TimeoutMiddleware = ReleasingTimeoutMiddleware  # type: ignore[misc]
