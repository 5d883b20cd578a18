"""The router's HTTP API: a thin ASGI application on uvicorn (uvloop + httptools).

Why not Starlette or FastAPI here: the predict path is a handful of microseconds of work,
and a framework's request/response objects, routing and middleware would cost more than
the work itself. This adapter reads the body, checks the key, calls the pure parts
(:mod:`~services.router.validation`, :mod:`~services.router.predictor`) and writes JSON
with orjson. It only parses, authorises, calls the registry and the predictor, and answers.
Every error is a :class:`~services.router.errors.ServiceError` turned into one JSON body shape
(:class:`winemeup.api.ErrorBody`) by one handler (the ``except ServiceError`` of
:meth:`Router._http`). The parts it calls are built from the settings by
:mod:`~services.router.components`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel

from services.router import metrics
from services.router.auth import KeyRing, presented_key
from services.router.components import Components, build
from services.router.explain import explained_instance, explained_rows
from services.router.model_insight import ModelInsight
from services.router.models import ServedModel
from services.router.oip import ProtocolError
from services.router.openapi import SWAGGER_HTML, build_openapi
from services.router.predictor import Predictor
from services.router.registry import ModelRegistry
from services.router.settings import RouterSettings
from services.router.traffic import Traffic
from services.router.v2 import Answer, OpenInference, match, protocol_error
from services.router.v2_intervals import interval_outputs
from services.router.validation import (
    parse_batch,
    parse_batch_request,
    parse_default_model,
    parse_predict,
    parse_predict_request,
)
from winemeup.api import (
    BatchRequest,
    BatchResponse,
    DefaultModelChange,
    DefaultModelRequest,
    DriftReport,
    ExplainBatchRequest,
    ExplainBatchResponse,
    ExplainRequest,
    ExplainResponse,
    FeatureList,
    Health,
    ModelList,
    PredictRequest,
    PredictResponse,
    Readiness,
    TrafficChange,
    TrafficPolicies,
)
from winemeup.errors import (
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ServiceError,
    UnknownModel,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
)
from winemeup.insight import DriftReference
from winemeup.schema import SCHEMA, quality_grade

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"


@dataclass(slots=True)
class Request:
    """What a handler needs of one HTTP request."""

    scope: Scope
    receive: Receive
    headers: dict[bytes, bytes]
    model_label: str = "none"
    placement: str = ""


@dataclass(slots=True)
class Response:
    """Status, body and content type of one answer."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


_PREDICT_ERRORS = {
    "404": "Unknown model",
    "503": "The model is unavailable (runner down or slow, load failed)",
    "409": "An interval was asked of a model stored without calibration data (retrain it)",
}
_EXPLAIN_ERRORS = {
    "404": "Unknown model",
    "503": "The model is unavailable (runner down or slow, load failed)",
    "422": "Invalid fields, or the model cannot be explained as served (the message says why)",
}


@dataclass(frozen=True, slots=True)
class Route:
    """One API route: method, path, handler and how it is guarded and documented."""

    method: str
    path: str
    handler: Handler
    auth: str  # "open", "user" or "admin"
    request_type: type[BaseModel] | None = None
    response_type: type[BaseModel] | None = None
    tag: str = "predictions"
    errors: dict[str, str] = field(default_factory=dict)
    """Error statuses beyond those of every body and every key (documentation only)."""
    media_type: str = "application/json"


class Router:
    """The ASGI application: route handlers over the registry and the predictor."""

    def __init__(self, settings: RouterSettings):
        self.settings = settings
        self.keyring = KeyRing(settings.key_set(), settings.key_set(admin=True))
        self.components: Components | None = None
        self.registry: ModelRegistry | None = None
        self.predictor: Predictor | None = None
        self.traffic: Traffic | None = None
        self.v2 = OpenInference(self)
        self.v2.add_outputs(
            interval_outputs(
                lambda c, level: self._intervals(
                    c.served_by, c.version, c.scores, c.rows, level, c.models, c.versions
                )
            )
        )
        self.routes = [
            Route(
                "POST",
                "/v1/predict",
                self.predict,
                "user",
                PredictRequest,
                PredictResponse,
                errors=_PREDICT_ERRORS,
            ),
            Route(
                "POST",
                "/v1/predict/batch",
                self.predict_batch,
                "user",
                BatchRequest,
                BatchResponse,
                errors=_PREDICT_ERRORS,
            ),
            Route(
                "POST",
                "/v1/explain",
                self.explain,
                "user",
                ExplainRequest,
                ExplainResponse,
                "insight",
                _EXPLAIN_ERRORS,
            ),
            Route(
                "POST",
                "/v1/explain/batch",
                self.explain_batch,
                "user",
                ExplainBatchRequest,
                ExplainBatchResponse,
                "insight",
                _EXPLAIN_ERRORS,
            ),
            Route("GET", "/v1/drift", self.drift, "user", None, DriftReport, "insight"),
            Route("GET", "/v1/models", self.list_models, "user", None, ModelList, "models"),
            Route(
                "PUT",
                "/v1/models/default",
                self.set_default,
                "admin",
                DefaultModelRequest,
                DefaultModelChange,
                "models",
                {"404": "Unknown model"},
            ),
            Route("GET", "/v1/features", self.features, "user", None, FeatureList, "models"),
            Route("GET", "/v1/traffic", self.get_traffic, "user", None, TrafficPolicies, "models"),
            Route(
                "PUT",
                "/v1/traffic",
                self.set_traffic,
                "admin",
                TrafficChange,
                TrafficPolicies,
                "models",
            ),
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
        for method, template, v2_handler, auth in self.v2.routes():
            self._v2_table.setdefault(template, {})[method] = Route(
                method, template, _v2_adapter(v2_handler), auth, tag="open inference protocol"
            )
        served = [*settings.models, *(str(e.get("name")) for e in settings.ensembles)]
        self._openapi = orjson.dumps(build_openapi(self.routes, served, settings.batch_max_rows))
        self._max_body = settings.max_body_bytes

    # ---- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Build the cache, models and registry; start probes and background loads."""
        s = self.settings
        self.components = build(s)
        self.registry = self.components.registry
        self.predictor = Predictor(self.components.cache)
        self.traffic = Traffic(
            self.registry,
            self.predictor,
            {"splits": s.splits, "shadows": s.shadows},
            s.shadow_max_inflight,
            s.default_sync_seconds,
        )
        await self.registry.start(warm_all=s.preload_inline_models)
        await self.traffic.start()
        if self.components.drift is not None:
            self.components.drift.start(self._drift_reference)
        logger.info(
            "router serving %s (default %s), cache %s, on %s:%s",
            ", ".join(f"{m.name}:{m.placement}" for m in self.registry.models()),
            self.registry.default,
            self.components.cache.backend,
            s.host,
            s.port,
        )

    async def shutdown(self) -> None:
        """Stop probes and close connections."""
        if self.traffic is not None:
            await self.traffic.close()
        if self.registry is not None:
            await self.registry.close()
        if self.predictor is not None:
            await self.predictor.drain()
        if self.components is not None:
            await self.components.close()

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

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path = scope["path"]
        methods = self._table.get(path)
        route_label = path if methods is not None else "other"
        if methods is None and path.startswith("/v2"):
            matched = match(path)
            if matched is not None:
                route_label, scope["path_params"] = matched
                methods = self._v2_table.get(route_label)
        request = Request(scope, receive, dict(scope["headers"]))
        extra: list[tuple[bytes, bytes]] = []
        try:
            if methods is None:
                raise RouteNotFound(f"no route {path}")
            route = methods.get(scope["method"])
            if route is None:
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {path}", methods)
            if route.auth != "open":
                key = presented_key(request.headers.get(b"x-api-key"), request.headers.get(b"authorization"))
                self.keyring.require(key, admin=route.auth == "admin")
            response = await route.handler(request)
        except ServiceError as e:
            response = Response(e.status, orjson.dumps(e.body()))
            extra = e.headers()
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], path)
            response = Response(500, orjson.dumps(ServiceError("internal error; see the router log").body()))
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    *response.headers,
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        status_class = f"{response.status // 100}xx"
        metrics.request_counter(route_label, request.model_label, status_class).inc()
        if request.placement:
            metrics.latency_histogram(request.model_label, request.placement).observe(
                time.perf_counter() - started
            )

    async def _json_body(self, request: Request) -> bytes:
        """The body of a JSON request, enforcing content type and size."""
        headers = request.headers
        content_type = headers.get(b"content-type", b"")
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != JSON:
            shown = media.decode(errors="replace") or "none"
            raise UnsupportedMediaType(f"send the body as application/json (got content type {shown})")
        return await self.read_body(request)

    async def read_body(self, request: Request) -> bytes:
        """The raw body, uncompressed and within ``max_body_bytes`` (415 and 413 otherwise).

        The /v1 routes and the Open Inference Protocol routes read their bodies here.
        """
        headers = request.headers
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            shown = encoding.decode(errors="replace")
            raise UnsupportedContentEncoding(
                f"Content-Encoding {shown} is not supported: send the body uncompressed"
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise PayloadTooLarge(f"the body has {int(length)} bytes; at most {self._max_body} are accepted")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self._max_body:
                    raise PayloadTooLarge(f"the body exceeds {self._max_body} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _model(self, name: str | None, request: Request) -> ServedModel:
        assert self.registry is not None
        try:
            model = self.registry.resolve(name)
        except UnknownModel:
            request.model_label = "unknown"
            raise
        request.model_label = model.name
        request.placement = model.placement
        return model

    # ---- routes -----------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        """Predict the quality of one wine.

        Body: `{"features": {...12 fields...}, "model": "<name>"}` (model optional: the current
        default). Training headers such as "fixed acidity" or "pH" are accepted as aliases.
        Answers the model's score, its rounded quality grade and whether it came from the cache.
        """
        row, name, level = parse_predict_request(await self._json_body(request))
        model = self._model(name, request)
        assert self.predictor is not None and self.components is not None and self.traffic is not None
        traffic = self.traffic
        if traffic.splits:  # a canary split picks the model per wine
            model = self._model(traffic.choose_one(model.name, row), request)
        score, version, cached = await self.predictor.predict_one(model, row)
        if traffic.shadows:
            traffic.shadow(model.name, np.array((row,), dtype=np.float64), (score,))
        answer: dict[str, Any] = {
            "model": model.name,
            "model_version": version,
            "score": score,
            "quality": quality_grade(score),
            "cached": cached,
        }
        if level is not None:
            low, high = await self._insight().intervals(
                model, version, np.array([score]), np.array([row]), level
            )
            answer["interval"] = {"level": level, "low": float(low[0]), "high": float(high[0])}
        if self.components.drift is not None:
            self.components.drift.add(row)
        return Response(200, orjson.dumps(answer))

    async def predict_batch(self, request: Request) -> Response:
        """Predict the quality of many wines with one model call.

        Body: `{"instances": [{...}, ...], "model": "<name>"}` with at most `batch_max_rows`
        instances. Predictions come back in input order; rows the cache holds are not
        recomputed. Field errors are named like `instances[3].ph`.
        """
        matrix, name, level = parse_batch_request(
            await self._json_body(request), self.settings.batch_max_rows
        )
        model = self._model(name, request)
        metrics.BATCH_ROWS.observe(matrix.shape[0])
        assert self.predictor is not None and self.components is not None
        assert self.traffic is not None
        result = await self.traffic.predict_many(model, matrix)
        predictions: list[dict[str, Any]] = [
            {"score": s, "quality": quality_grade(s), "cached": c}
            for s, c in zip(result.scores, result.cached, strict=True)
        ]
        if result.models is not None and result.versions is not None:  # a split spread the batch
            for p, m in zip(predictions, result.models, strict=True):
                p["model"], p["model_version"] = m, result.versions[m]
        if level is not None:
            lows, highs = await self._intervals(
                result.model,
                result.version,
                np.asarray(result.scores),
                matrix,
                level,
                result.models,
                result.versions,
            )
            for p, low, high in zip(predictions, lows.tolist(), highs.tolist(), strict=True):
                p["interval"] = {"level": level, "low": low, "high": high}
        if self.components.drift is not None:
            self.components.drift.add_rows(matrix)
        return Response(
            200,
            orjson.dumps(
                {"model": result.model, "model_version": result.version, "predictions": predictions}
            ),
        )

    async def _intervals(
        self,
        served_by: str,
        version: str,
        scores: np.ndarray,
        rows: np.ndarray,
        level: float,
        models: list[str] | None = None,
        versions: dict[str, str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Interval bounds of each row from the calibration of the model version that served it
        (a canary split may have spread the rows over several models)."""
        assert self.registry is not None
        insight = self._insight()
        if models is None or versions is None:
            return await insight.intervals(self.registry.resolve(served_by), version, scores, rows, level)
        low, high = np.empty(len(scores)), np.empty(len(scores))
        names = np.asarray(models)
        for name in dict.fromkeys(models):
            at = np.flatnonzero(names == name)
            low[at], high[at] = await insight.intervals(
                self.registry.resolve(name), versions[name], scores[at], rows[at], level
            )
        return low, high

    def _insight(self) -> ModelInsight:
        assert self.components is not None and self.components.insight is not None
        return self.components.insight

    async def _drift_reference(self) -> tuple[str, DriftReference] | None:
        """The default model's drift reference (None while it cannot be read yet)."""
        assert self.registry is not None
        model = self.registry.resolve(None)
        version = await model.ensure_ready()
        found = await self._insight().documents(model, version)
        if found.drift_reference is None:
            return None
        return f"{model.name}:{found.version}", found.drift_reference

    async def explain(self, request: Request) -> Response:
        """Explain the score of one wine: per-feature contributions, base and score.

        Body: as `/v1/predict` (`{"features": {...}, "model"?}`). `base + sum(contributions) ==
        score` within 1e-6 (XGBoost 2e-5: it computes in float32). `method` names how: exact
        TreeSHAP for the tree models (base: their mean prediction over the training data),
        baseline Shapley (exact, 4,096 coalitions; base: a reference wine's score) for svr.
        Explanations are cached by model version and row. A model that cannot be explained as
        served (e.g. an ONNX-only image without the framework) answers 422 saying why.
        """
        row, name = parse_predict(await self._json_body(request))
        model = self._model(name, request)
        assert self.components is not None and self.components.explainer is not None
        result = await self.components.explainer.explain(model, np.array([row], dtype=np.float64))
        answer = {
            "model": model.name,
            "model_version": result.version,
            "method": result.method,
            **explained_instance(
                row, result.base[0], result.scores[0], result.contributions[0], result.cached[0]
            ),
        }
        return Response(200, orjson.dumps(answer))

    async def explain_batch(self, request: Request) -> Response:
        """Explain the scores of many wines with one model call for the uncached ones.

        Body: as `/v1/predict/batch`, at most `batch_max_rows` instances (explaining costs
        milliseconds a row for the boosted trees, 0.1-0.3 s for the forests and svr).
        Explanations come back in input order.
        """
        matrix, name = parse_batch(await self._json_body(request), self.settings.batch_max_rows)
        model = self._model(name, request)
        assert self.components is not None and self.components.explainer is not None
        result = await self.components.explainer.explain(model, matrix)
        answer = {
            "model": model.name,
            "model_version": result.version,
            "method": result.method,
            "explanations": explained_rows(matrix, result),
        }
        return Response(200, orjson.dumps(answer))

    async def drift(self, request: Request) -> Response:
        """Input drift: PSI per measurement and wine type of the served-rows window.

        Compared with the training bins stored with the default model at start-up; aggregated
        every `drift_interval_seconds` off the request path (the same figures as the
        `winemeup_router_drift_*` gauges).
        """
        assert self.components is not None and self.components.drift is not None
        return Response(200, orjson.dumps(self.components.drift.describe()))

    async def list_models(self, request: Request) -> Response:
        """List the served models with their placement, status, version and training metrics."""
        assert self.registry is not None
        return Response(
            200, orjson.dumps({"default": self.registry.default, "models": self.registry.describe()})
        )

    async def set_default(self, request: Request) -> Response:
        """Change the default model (admin key only); the next request uses it.

        Body: `{"model": "<name>"}`. Cache keys carry the model name and version, so a swap
        can never serve another model's cached score. With Redis, the swap is shared: other
        replicas adopt it within `default_sync_seconds` (`"shared": true` in the answer).
        """
        assert self.registry is not None
        name = parse_default_model(await self._json_body(request))
        self._model(name, request)
        swap = await self.registry.set_default(name)
        return Response(
            200,
            orjson.dumps(
                {
                    "default": swap.model.name,
                    "previous": swap.previous,
                    "status": swap.model.status,
                    "shared": swap.shared,
                }
            ),
        )

    async def get_traffic(self, request: Request) -> Response:
        """The canary splits and shadows in force, with this replica's served rows and shadow figures."""
        assert self.traffic is not None
        return Response(200, orjson.dumps({**self.traffic.status(), "shared": self.registry_shared()}))

    async def set_traffic(self, request: Request) -> Response:
        """Change the canary splits and shadows (admin key only); sections left out are kept.

        Body: `{"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}}, "shadows": {"lightgbm":
        {"target": "catboost", "fraction": 0.1}}}`. A split's weights are percent and must add
        up to 100; every name must be served. A bad change is answered 422 naming the field and
        the policies in force are kept. With Redis, other replicas adopt it within
        `default_sync_seconds` (`"shared": true`).
        """
        assert self.traffic is not None
        shared = await self.traffic.update_body(await self._json_body(request))
        return Response(200, orjson.dumps({**self.traffic.document(), "shared": shared}))

    def registry_shared(self) -> bool:
        return self.registry is not None and self.registry.shared.shared

    async def features(self, request: Request) -> Response:
        """Describe the 12 input features: names, training headers, units, ranges."""
        return Response(200, orjson.dumps({"schema_version": SCHEMA.version, "features": SCHEMA.describe()}))

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
        assert self.registry is not None and self.components is not None
        cache = self.components.cache
        state: dict[str, Any] = {"backend": cache.backend}
        try:
            reachable = await asyncio.wait_for(cache.ping(), self.settings.redis_timeout_seconds * 4)
        except TimeoutError:
            reachable = False
        if reachable is not None:
            state["reachable"] = reachable
        model = self.registry.default_ready()
        return Response(
            200,
            orjson.dumps(
                {
                    "status": "ready",
                    "default_model": model.name,
                    "default_model_status": model.status,
                    "version": model.version,
                    "models_not_ready": self.registry.not_ready(),
                    "cache": state,
                }
            ),
        )

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(200, metrics.exposition(), metrics.CONTENT_TYPE.encode())

    async def openapi_json(self, request: Request) -> Response:
        """This API's OpenAPI 3.1 document."""
        return Response(200, self._openapi)

    async def docs(self, request: Request) -> Response:
        """Swagger UI for this API."""
        return Response(200, SWAGGER_HTML, b"text/html; charset=utf-8")


def _v2_adapter(handler: Callable[[Any], Awaitable[Answer]]) -> Handler:
    """A V2 handler as a route handler: its protocol errors become ``{"error": "..."}`` answers."""

    async def handle(request: Request) -> Response:
        try:
            answer = await handler(request)
        except (ProtocolError, ServiceError) as e:
            answer = protocol_error(e)
        return Response(answer.status, answer.body, answer.content_type, answer.headers)

    handle.__doc__ = handler.__doc__
    handle.__name__ = handler.__name__
    return handle


def create_app(settings: RouterSettings | None = None) -> Router:
    """The ASGI application for the given (or environment) settings."""
    return Router(settings or RouterSettings())  # type: ignore[call-arg]
