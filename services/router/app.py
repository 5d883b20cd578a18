"""The router's ASGI application: dispatch, keys, budgets, one error handler, operations routes.

The protocols are codecs over one data plane (:mod:`~services.router.dataplane`, built by
:mod:`~services.router.components`): ``/v1`` in :mod:`~services.router.v1`, the Open Inference
Protocol in :mod:`~services.router.v2`. This module only matches the route, checks the key and
its budget, calls the handler and writes the answer. Every error is a
:class:`~winemeup.errors.ServiceError` turned into one JSON body shape
(:class:`winemeup.api.ErrorBody`) by one handler (the ``except`` of :meth:`Router._http`);
the answer carries the request id (``X-Request-ID``), and so does the log line with the details.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

import orjson

from services.router import metrics
from services.router.auth import KeyRing, Role, presented_key
from services.router.components import build
from services.router.http import Receive, Request, Response, Route, Scope, Send
from services.router.openapi import SWAGGER_HTML, build_openapi
from services.router.rate_limit import RateLimiter, build_rate_limiter
from services.router.request_log import REQUEST_ID, key_id
from services.router.rollout_api import RolloutRoutes
from services.router.settings import RouterSettings
from services.router.v1 import V1
from services.router.v2 import OpenInference, match
from winemeup.api import Health, Readiness
from winemeup.errors import MalformedRequest, MethodNotAllowed, RouteNotFound, ServiceError

logger = logging.getLogger(__name__)

_REQUEST_ID = b"x-request-id"
# Generated request ids: 64 random bits per process, then a counter (32 hex digits in all).
# Unique across replicas without a random draw per request (uuid4 reads the OS's RNG each time).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def _request_id(presented: bytes | None) -> str:
    """The client's request id when it is a short printable token, else a fresh one."""
    if presented and len(presented) <= 128 and presented.isascii():
        text = presented.decode()
        if text.isprintable() and " " not in text:
            return text
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class Router:
    """The ASGI application: the route table over the data plane."""

    def __init__(self, settings: RouterSettings):
        self.settings = settings
        self.keyring = KeyRing(settings.key_set(), settings.key_set(admin=True))
        self.plane = build(settings)
        self.limiter: RateLimiter = build_rate_limiter(settings)
        self.routes: list[Route] = [
            *V1(self.plane, settings.batch_max_rows).routes(),
            *RolloutRoutes(self.plane.rollouts).routes(),
            Route("GET", "/healthz", self.healthz, "open", None, Health, "operations"),
            Route(
                "GET",
                "/readyz",
                self.readyz,
                "open",
                None,
                Readiness,
                "operations",
                {"503": "An inline default model is still loading in this pod"},
            ),
            Route(
                "GET",
                "/metrics",
                self.metrics,
                "open",
                None,
                None,
                "operations",
                media_type=metrics.CONTENT_TYPE,
            ),
            Route("GET", "/openapi.json", self.openapi_json, "open", None, None, "operations"),
            Route("GET", "/docs", self.docs, "open", None, None, "operations", media_type="text/html"),
        ]
        self._table: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            self._table.setdefault(route.path, {})[route.method] = route
        # The Open Inference Protocol routes have path parameters: matched by services.router.v2.
        self._v2_table: dict[str, dict[str, Route]] = {}
        for route in OpenInference(self.plane).routes():
            self._v2_table.setdefault(route.path, {})[route.method] = route
        served = [*settings.models, *(str(e.get("name")) for e in settings.ensembles)]
        self._openapi = orjson.dumps(
            build_openapi(self.routes, served, settings.batch_max_rows, settings.explain_max_rows)
        )

    # ---- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the data plane's background work (probes, loads, shared records, drift)."""
        s = self.settings
        await self.plane.start(warm_all=s.preload_inline_models)
        registry = self.plane.registry
        logger.info(
            "router serving %s (default %s), cache %s, on %s:%s",
            ", ".join(f"{m.name}:{m.placement}" for m in registry.models()),
            registry.default,
            self.plane.cache.backend,
            s.host,
            s.port,
        )

    async def shutdown(self) -> None:
        """Stop background work and close connections."""
        await self.plane.close()
        await self.limiter.close()

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    logger.exception("router start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _route(self, scope: Scope) -> tuple[str, dict[str, Route] | None]:
        """(metrics label, the routes of the path by method) of a request path."""
        path = scope["path"]
        methods = self._table.get(path)
        if methods is not None:
            return path, methods
        if path.startswith("/v2"):
            matched = match(path)
            if matched is not None:
                template, scope["path_params"] = matched
                return template, self._v2_table.get(template)
        return "other", None

    async def _guard(self, route: Route, request: Request) -> tuple[bytes, Role, list[tuple[bytes, bytes]]]:
        """Check the key and its budget: (key, its role, the budget's headers for the answer)."""
        if route.auth == "open":
            return b"", Role.NONE, []
        keys = [v for k, v in request.scope["headers"] if k == b"x-api-key"]
        if len(keys) > 1:
            raise MalformedRequest("send one X-API-Key header, not several")
        key = presented_key(request.headers.get(b"x-api-key"), request.headers.get(b"authorization"))
        role = self.keyring.require(key, admin=route.auth == "admin")
        if route.auth == "admin":
            logger.info("admin %s %s by %s (request %s)", route.method, route.path, key_id(key), request.id)
        return key or b"", role, await self.limiter.admit(key or b"", role, route.rows, route.single_row)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route_label, methods = self._route(scope)
        headers = dict(scope["headers"])
        request = Request(scope, receive, headers, self.settings.max_body_bytes)
        request.id = _request_id(headers.get(_REQUEST_ID))
        token = REQUEST_ID.set(request.id)
        extra: list[tuple[bytes, bytes]] = []
        key, role, paid = b"", Role.NONE, 0
        try:
            if methods is None:
                raise RouteNotFound(f"no route {scope['path']}")
            route = methods.get(scope["method"])
            if route is None:
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}", methods)
            key, role, extra = await self._guard(route, request)
            paid = 1 if route.single_row and route.auth != "open" else 0  # taken on admission
            response = await route.handler(request)
        except ServiceError as e:
            response = Response(e.status, orjson.dumps(e.body()))
            extra = [*extra, *e.headers()]
            if e.status >= 500:
                logger.warning(
                    "%s %s answered %d (request %s): %s %s",
                    scope["method"],
                    scope["path"],
                    e.status,
                    request.id,
                    e.message,
                    getattr(e, "detail", ""),
                )
        except Exception:
            logger.exception(
                "unhandled error on %s %s (request %s)", scope["method"], scope["path"], request.id
            )
            response = Response(500, orjson.dumps(ServiceError("internal error; see the router log").body()))
        finally:
            REQUEST_ID.reset(token)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    (_REQUEST_ID, request.id.encode()),
                    *response.headers,
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        labels = request.labels
        unpaid = labels.rows - paid
        if unpaid > 0 and response.status < 400:
            await self.limiter.charge_rows(key, role, unpaid)
        metrics.request_counter(route_label, labels.model, f"{response.status // 100}xx").inc()
        if labels.placement:
            metrics.latency_histogram(labels.model, labels.placement).observe(time.perf_counter() - started)

    # ---- operations routes ------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return Response(200, b'{"status":"ok"}')

    async def readyz(self, request: Request) -> Response:
        """Readiness: 200 when this pod can serve; a runner or Redis being down does not matter.

        A runner is shared by every router pod: when it is down, its model answers 503 (and
        alerts fire on ``winemeup_router_model_ready``), but the pods stay in the Service so
        the other models, cached answers and the UI keep working. Only an inline default model
        still loading in this pod keeps it unready.
        """
        state = await self.plane.readiness(self.settings.redis_timeout_seconds * 4)
        return Response(200, orjson.dumps(state))

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(200, metrics.exposition(), metrics.CONTENT_TYPE.encode())

    async def openapi_json(self, request: Request) -> Response:
        """This API's OpenAPI 3.1 document."""
        return Response(200, self._openapi)

    async def docs(self, request: Request) -> Response:
        """Swagger UI for this API."""
        return Response(200, SWAGGER_HTML, b"text/html; charset=utf-8")


def create_app(settings: RouterSettings | None = None) -> Router:
    """The ASGI application for the given (or environment) settings."""
    return Router(settings or RouterSettings())  # type: ignore[call-arg]
