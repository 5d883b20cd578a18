"""The router's HTTP API: a thin ASGI application on uvicorn (uvloop + httptools).

Why not Starlette or FastAPI here: the predict path is a handful of microseconds of work,
and a framework's request/response objects, routing and middleware would cost more than
the work itself. This adapter reads the body, checks the key, calls the pure parts
(:mod:`~services.router.validation`, :mod:`~services.router.predictor`) and writes JSON
with orjson. Every error is a :class:`~services.router.errors.RouterError` turned into one
JSON body shape by one handler (the ``except RouterError`` of :meth:`Router._http`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.router import metrics
from services.router.auth import KeyRing, presented_key
from services.router.cache import PredictionCache, RedisCache, TieredCache, make_cache
from services.router.errors import (
    MethodNotAllowed,
    NotReady,
    PayloadTooLarge,
    RouteNotFound,
    RouterError,
    UnknownModel,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
)
from services.router.models import READY, InlineModel, RunnerClient, RunnerModel, ServedModel
from services.router.openapi import SWAGGER_HTML, build_openapi
from services.router.predictor import Predictor
from services.router.settings import RouterSettings
from services.router.validation import parse_batch, parse_default_model, parse_predict
from winemeup.runtimes import load_runtime
from winemeup.schema import SCHEMA, FieldError, quality_grade

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
DEFAULT_MODEL_KEY = "wmu:default-model"
"""Redis key of the shared default model record ``{"model", "configured"}``."""


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


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API route: method, path, handler and how it is guarded and documented."""

    method: str
    path: str
    handler: Handler
    auth: str  # "open", "user" or "admin"
    request_schema: str | None = None
    response_schema: str | None = None
    tag: str = "predictions"


class Router:
    """The ASGI application: state (models, cache, default model) plus route handlers."""

    def __init__(self, settings: RouterSettings):
        self.settings = settings
        self.keyring = KeyRing(settings.key_set(), settings.key_set(admin=True))
        self.default_model = settings.default_model
        self.models: dict[str, ServedModel] = {}
        self.cache: PredictionCache | None = None
        self.predictor: Predictor | None = None
        self._session: Any = None
        self._background: set[asyncio.Task[Any]] = set()
        self.routes = [
            Route("POST", "/v1/predict", self.predict, "user", "PredictRequest", "PredictResponse"),
            Route("POST", "/v1/predict/batch", self.predict_batch, "user", "BatchRequest", "BatchResponse"),
            Route("GET", "/v1/models", self.list_models, "user", None, "ModelList", "models"),
            Route(
                "PUT",
                "/v1/models/default",
                self.set_default,
                "admin",
                "DefaultModelRequest",
                "DefaultModel",
                "models",
            ),
            Route("GET", "/v1/features", self.features, "user", None, "FeatureList", "models"),
            Route("GET", "/healthz", self.healthz, "open", None, "Status", "operations"),
            Route("GET", "/readyz", self.readyz, "open", None, "Status", "operations"),
            Route("GET", "/metrics", self.metrics, "open", None, None, "operations"),
            Route("GET", "/openapi.json", self.openapi_json, "open", None, None, "operations"),
            Route("GET", "/docs", self.docs, "open", None, None, "operations"),
        ]
        self._table: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            self._table.setdefault(route.path, {})[route.method] = route
        self._openapi = orjson.dumps(build_openapi(self.routes, list(settings.models)))
        self._max_body = settings.max_body_bytes

    # ---- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the cache and runner sessions, start probes and background loads."""
        import aiohttp

        s = self.settings
        redis_url = s.redis_url.get_secret_value() if s.redis_url is not None else None
        self.cache = make_cache(
            redis_url,
            s.cache_ttl_seconds,
            s.cache_max_entries,
            s.redis_timeout_seconds,
            s.cache_backoff_seconds,
            s.near_cache_entries,
            s.redis_password.get_secret_value() if s.redis_password is not None else None,
            str(s.redis_tls_ca_file) if s.redis_tls_ca_file is not None else None,
        )
        self.predictor = Predictor(self.cache)
        runner_models = [m for m in s.models if s.placement_of(m) == "runner"]
        if runner_models:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60, ttl_dns_cache=300),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        for name in s.models:
            if s.placement_of(name) == "runner":
                client = RunnerClient(self._session, s.runner_urls[name], s.runner_timeout_seconds)
                self.models[name] = RunnerModel(
                    name,
                    client,
                    s.health_interval_seconds,
                    s.microbatch_max_rows,
                    s.microbatch_wait_ms,
                    s.runner_max_inflight_calls,
                )
            else:
                self.models[name] = InlineModel(
                    name,
                    s.inline_thread_min_rows,
                    s.health_interval_seconds,
                    loader=functools.partial(
                        load_runtime, batch_threads=s.inline_threads, path=s.serving_path, store=s.model_store
                    ),
                    loop_max_seconds=s.inline_loop_max_seconds,
                )
        for model in self.models.values():
            await model.start()
        metrics.set_default_model(self.default_model, list(self.models))
        self._spawn(self._preload())
        if self._shared_redis() is not None:
            await self._sync_default()
            self._spawn(self._sync_default_loop())
        logger.info(
            "router serving %s (default %s), cache %s, on %s:%s",
            ", ".join(f"{m.name}:{m.placement}" for m in self.models.values()),
            self.default_model,
            self.cache.backend,
            s.host,
            s.port,
        )

    def _shared_redis(self) -> RedisCache | None:
        redis = self.cache.far if isinstance(self.cache, TieredCache) else self.cache
        return redis if isinstance(redis, RedisCache) else None

    def _apply_default(self, name: str, why: str) -> None:
        if name == self.default_model:
            return
        previous, self.default_model = self.default_model, name
        metrics.set_default_model(name, list(self.models))
        logger.info("default model %s -> %s (%s)", previous, name, why)
        model = self.models[name]
        if isinstance(model, InlineModel):
            model.begin_load()

    async def _sync_default(self) -> None:
        """Adopt the default model another replica swapped to, if it was swapped from our config.

        The shared record names the configured default it was made over: after a deploy that
        changes the configured default, the configuration wins again.
        """
        redis = self._shared_redis()
        if redis is None:
            return
        text = await redis.get_text(DEFAULT_MODEL_KEY)
        if not text:
            return
        try:
            record = orjson.loads(text)
            name, configured = record["model"], record["configured"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("ignoring malformed shared default model record %.100r", text)
            return
        if configured == self.settings.default_model and name in self.models:
            self._apply_default(name, "swapped on another replica")

    async def _sync_default_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.default_sync_seconds)
            try:
                await self._sync_default()
            except Exception:  # a sync bug must not end syncing
                logger.exception("syncing the default model failed")

    async def _preload(self) -> None:
        default = self.models[self.default_model]
        if isinstance(default, InlineModel):
            await default.begin_load()
        if not self.settings.preload_inline_models:
            return
        for model in self.models.values():
            if isinstance(model, InlineModel):
                await model.begin_load()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        """Stop probes and close connections."""
        for task in list(self._background):
            task.cancel()
        for model in self.models.values():
            await model.close()
        if self.predictor is not None:
            await self.predictor.drain()
        if self._session is not None:
            await self._session.close()
        if self.cache is not None:
            await self.cache.close()

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
        except RouterError as e:
            response = Response(e.status, e.body())
            extra = e.headers()
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], path)
            response = Response(500, RouterError("internal error; see the router log").body())
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
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
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            shown = encoding.decode(errors="replace")
            raise UnsupportedContentEncoding(
                f"Content-Encoding {shown} is not supported: send the JSON body uncompressed"
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
        model = self.models.get(name or self.default_model)
        if model is None:
            request.model_label = "unknown"
            raise UnknownModel(
                f"unknown model '{name}'; this router serves {', '.join(self.models)}",
                [FieldError("model", f"unknown model '{name}'")],
            )
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
        row, name = parse_predict(await self._json_body(request))
        model = self._model(name, request)
        assert self.predictor is not None
        score, version, cached = await self.predictor.predict_one(model, row)
        return Response(
            200,
            orjson.dumps(
                {
                    "model": model.name,
                    "model_version": version,
                    "score": score,
                    "quality": quality_grade(score),
                    "cached": cached,
                }
            ),
        )

    async def predict_batch(self, request: Request) -> Response:
        """Predict the quality of many wines with one model call.

        Body: `{"instances": [{...}, ...], "model": "<name>"}` with at most `batch_max_rows`
        instances. Predictions come back in input order; rows the cache holds are not
        recomputed. Field errors are named like `instances[3].ph`.
        """
        matrix, name = parse_batch(await self._json_body(request), self.settings.batch_max_rows)
        model = self._model(name, request)
        metrics.BATCH_ROWS.observe(matrix.shape[0])
        assert self.predictor is not None
        result = await self.predictor.predict_many(model, matrix)
        predictions = [
            {"score": s, "quality": quality_grade(s), "cached": c}
            for s, c in zip(result.scores, result.cached, strict=True)
        ]
        return Response(
            200,
            orjson.dumps({"model": model.name, "model_version": result.version, "predictions": predictions}),
        )

    async def list_models(self, request: Request) -> Response:
        """List the served models with their placement, status, version and training metrics."""
        entries = []
        for model in self.models.values():
            entry = model.describe()
            entry["default"] = model.name == self.default_model
            entries.append(entry)
        return Response(200, orjson.dumps({"default": self.default_model, "models": entries}))

    async def set_default(self, request: Request) -> Response:
        """Change the default model (admin key only); the next request uses it.

        Body: `{"model": "<name>"}`. Cache keys carry the model name and version, so a swap
        can never serve another model's cached score. With Redis, the swap is shared: other
        replicas adopt it within `default_sync_seconds` (`"shared": true` in the answer).
        """
        name = parse_default_model(await self._json_body(request))
        model = self._model(name, request)
        previous = self.default_model
        self._apply_default(model.name, "admin request")
        shared = False
        redis = self._shared_redis()
        if redis is not None:
            record = orjson.dumps({"model": model.name, "configured": self.settings.default_model})
            shared = await redis.set_text(DEFAULT_MODEL_KEY, record.decode())
        return Response(
            200,
            orjson.dumps(
                {"default": model.name, "previous": previous, "status": model.status, "shared": shared}
            ),
        )

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
        model = self.models.get(self.default_model)
        cache: dict[str, Any] = {"backend": self.cache.backend if self.cache else "none"}
        redis = self.cache.far if isinstance(self.cache, TieredCache) else self.cache
        if isinstance(redis, RedisCache):
            try:
                cache["reachable"] = await asyncio.wait_for(
                    redis.ping(), self.settings.redis_timeout_seconds * 4
                )
            except TimeoutError:
                cache["reachable"] = False
        if model is None:
            raise NotReady("no default model")
        if isinstance(model, InlineModel) and model.status != READY:
            model.begin_load()
            raise NotReady(
                f"default model '{model.name}' is {model.status}: {model.reason or 'not loaded yet'}"
            )
        unavailable = sorted(m.name for m in self.models.values() if m.status != READY)
        return Response(
            200,
            orjson.dumps(
                {
                    "status": "ready",
                    "default_model": model.name,
                    "default_model_status": model.status,
                    "version": model.version,
                    "models_not_ready": unavailable,
                    "cache": cache,
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


def create_app(settings: RouterSettings | None = None) -> Router:
    """The ASGI application for the given (or environment) settings."""
    return Router(settings or RouterSettings())  # type: ignore[call-arg]
