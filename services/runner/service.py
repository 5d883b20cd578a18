"""The model runner: ONE BentoML service class that serves whichever model RunnerSettings names.

Start one process per model::

    WINEMEUP_RUNNER_MODEL=lightgbm BENTOML_HOME=<home> \
        bentoml serve services.runner.service:ModelRunner --port 3001

(or ``--arg model=lightgbm``; a runner bento carries its model as such an argument).

The service is named ``winemeup-runner-<model>`` with dashes (``winemeup-runner-random-forest``).
It loads its model from the model store (``$BENTOML_HOME/models``) with
:func:`winemeup.runtimes.load_runtime` in a background thread at start-up, so ``/livez``
answers while a model loads and ``/readyz`` turns 200 only when it is in (``/livez`` turns
503 if loading failed, so an orchestrator restarts the process).

Endpoints (JSON in, JSON out): ``POST /predict``, ``POST /predict_one``, ``POST /metadata``,
``POST /explain``, ``POST /insight``, plus BentoML's ``/readyz``, ``/livez`` and ``/metrics``;
and ``POST /binary/predict`` (float64 rows in, float64 scores out), the route the router uses
(:mod:`services.runner.binary`), answered ahead of BentoML's middleware stack
(:class:`services.runner.middleware.BinaryRouteMiddleware`) and so counted by
``winemeup_runner_binary_*`` (:mod:`services.runner.binary_metrics`) instead of BentoML's
``bentoml_service_request_*``. Every call but the probes and ``/metrics`` must carry the
shared secret in ``X-WineMeUp-Runner-Token`` (:mod:`services.runner.middleware`); the
metrics also answer on ``metrics_port`` (:mod:`services.runner.metrics_listener`), so a
NetworkPolicy can let Prometheus scrape without opening the API.
Every error answers ``{"error": str, "code": str, "details": [{"field", "problem"}]}``
(:class:`winemeup.api.ErrorBody`), BentoML's own validation errors included; see
:mod:`services.runner.errors`.
All logic lives in :mod:`services.runner.core`; this module only adapts it to BentoML.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import bentoml
from pydantic import BaseModel, Field, StrictFloat, ValidationError
from starlette.responses import JSONResponse

from services.runner.binary import BinaryPredictApp
from services.runner.binary_metrics import binary_route_metrics
from services.runner.core import ModelServer, runner_name
from services.runner.explainer import ProcessExplainer
from services.runner.metrics_listener import start_metrics_listener
from services.runner.middleware import BinaryRouteMiddleware, ErrorBodyMiddleware, RunnerTokenMiddleware
from services.runner.settings import RunnerSettings
from services.runner.timeout import install as install_releasing_timeout
from winemeup.errors import ServiceError
from winemeup.runtimes import bentoml_home, load_runtime, read_entry
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

# BentoML's traffic.timeout middleware holds every answered request until its timeout: the
# runner's p99 stalls (services/runner/timeout.py). Before the service's app is built.
install_releasing_timeout()

# `bentoml serve ... --arg model=svr` or a bento's baked-in arguments; WINEMEUP_RUNNER_* wins.
_bento_arguments = {k: v for k, v in vars(bentoml.use_arguments()).items() if k in ("model", "version")}
try:
    settings = RunnerSettings(**_bento_arguments)
except ValidationError as e:
    # Not a ValueError on the way out: BentoML's loader reads a ValueError as "not a bento tag".
    raise RuntimeError(
        f"invalid runner settings: {e}\nEach field is read from WINEMEUP_RUNNER_<FIELD> (the model "
        "can also be passed as `--arg model=<name>` to bentoml serve)."
    ) from None


def _require_writable_metrics_dir() -> None:
    """Refuse to start when BentoML's Prometheus multiprocess directory is not writable here.

    Otherwise BentoML's metrics middleware fails half-way through its set-up at start-up (which
    uvicorn's lifespan "auto" mode swallows) and retries it on every request, so every route,
    probes included, answers 500 with ``DuplicateTimeseries`` (seen with a root-owned directory
    and the pod's UID 10001; docs/images.md).
    """
    from bentoml._internal.configuration.containers import BentoMLContainer

    directory = Path(BentoMLContainer.prometheus_multiproc_dir.get())
    if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
        raise RuntimeError(
            f"BentoML's Prometheus directory {directory} is not writable by uid {os.getuid()}: "
            "mount a writable volume there (the chart mounts an emptyDir) or give it to this user"
        )


_require_writable_metrics_dir()


class PredictResponse(BaseModel):
    """Scores of a batch, one per row, in row order."""

    model: str = Field(description="Model name.")
    model_version: str = Field(description="Model store version that produced the scores.")
    scores: list[float] = Field(description="Predicted quality score of each row.")


class PredictOneResponse(BaseModel):
    """Score and integer quality grade of one wine."""

    model: str = Field(description="Model name.")
    model_version: str = Field(description="Model store version that produced the score.")
    score: float = Field(description="Predicted quality score (continuous).")
    quality: int = Field(description="Score rounded half up and clamped to 0..10.")


class MetadataResponse(BaseModel):
    """What the model store records of the served model."""

    name: str
    version: str
    framework: str
    labels: dict[str, str]
    metadata: dict[str, Any] = Field(description="Training metadata, including its `metrics`.")
    serving: dict[str, Any] = Field(
        default_factory=dict,
        description="How the model is served: `path` onnx (with its parity report) or framework "
        "(with the reason).",
    )


class ExplainResponse(BaseModel):
    """Per-feature contributions of each row: base + sum(contributions) = score."""

    model: str = Field(description="Model name.")
    model_version: str = Field(description="Model store version explained.")
    method: str = Field(description="How the contributions were computed and what base means.")
    base: list[float] = Field(description="Per row, the value the contributions start from.")
    contributions: list[list[float]] = Field(
        description="Per row, one contribution per feature (schema order)."
    )
    scores: list[float] = Field(description="Per row, the model's score.")


class InsightResponse(BaseModel):
    """The insight documents stored with the served model version."""

    model: str
    model_version: str
    intervals: dict[str, Any] | None = Field(description="intervals.json, null when stored without it.")
    drift_reference: dict[str, Any] | None = Field(description="drift_reference.json, null when absent.")


def _error_response(error: ServiceError) -> JSONResponse:
    return JSONResponse(
        error.body(), status_code=error.status, headers={k.decode(): v.decode() for k, v in error.headers()}
    )


# The router's route for misses: binary rows in, binary scores out (services/runner/binary.py).
BINARY_PREDICT = BinaryPredictApp(max_body_bytes=settings.batch_max_rows * len(SCHEMA) * 8)


@bentoml.asgi_app(BINARY_PREDICT, path="/binary")
@bentoml.service(
    name=runner_name(settings.model),
    workers=settings.workers,
    # Longest a request may take before its 504 (services/runner/timeout.py enforces it).
    traffic={"timeout": settings.request_timeout_seconds},
    # Clients built by bentoml.depends(url=...) recycle their session after max_requests and
    # drop in-flight calls at that moment: make recycling practically never happen.
    runner_connection={"max_requests": 1_000_000_000},
    logging={"access": {"enabled": settings.access_log}},
    # No tracer exports anything here, yet every request paid for an OpenTelemetry span: the
    # profile of a runner under 4 concurrent misses showed the middlewares costing several
    # times the model's own predict. The router's hot route skips it.
    tracing={"excluded_urls": ["/binary/predict"]},
)
class ModelRunner:
    """Serves one model of the store: batch scores, one scored wine, and its metadata."""

    def __init__(self) -> None:
        self.server = ModelServer(
            settings.model,
            lambda: load_runtime(settings.model, settings.version, path=settings.serving_path),
            batch_max_rows=settings.batch_max_rows,
            version_dir=lambda version: read_entry(bentoml_home(), settings.model, version).path,
            explain_max_rows=settings.explain_max_rows,
            explain_max_inflight=settings.explain_max_inflight,
            explain_timeout_seconds=settings.explain_timeout_seconds,
            explainer=lambda runtime: ProcessExplainer(
                settings.model, runtime.info.version, settings.serving_path, settings.explain_niceness
            ),
        )
        BINARY_PREDICT.server = self.server
        self.server.load_in_background()
        # One listener per runner: the first worker's exposition merges every worker's files.
        if settings.metrics_port and bentoml.server_context.worker_index in (None, 1):
            try:
                self.metrics_listener = start_metrics_listener(settings.metrics_host, settings.metrics_port)
            except OSError as e:
                # The API still serves; Prometheus sees the target down and alerts.
                logger.error("metrics port %d not bound: %s", settings.metrics_port, e)

    def __is_ready__(self) -> bool:
        return self.server.ready

    def __is_alive__(self) -> bool:
        return not self.server.failed

    @bentoml.api(route="/predict")
    async def predict(self, rows: list[list[StrictFloat]]) -> PredictResponse:
        """Score a batch of model-input rows (12 floats in schema order, wine_type red=1.0)."""
        # StrictFloat: numbers only (no "7.4" strings, no booleans); NaN and width are checked
        # by the core so that the error names the row and column.
        try:
            return PredictResponse.model_construct(**self.server.predict(rows))
        except ServiceError as e:
            return _error_response(e)  # type: ignore[return-value]

    @bentoml.api(route="/predict_one")
    async def predict_one(self, features: dict[str, Any]) -> PredictOneResponse:
        """Score one wine given by feature name (API names or training headers)."""
        try:
            return PredictOneResponse.model_construct(**self.server.predict_one(features))
        except ServiceError as e:
            return _error_response(e)  # type: ignore[return-value]

    @bentoml.api(route="/explain")
    async def explain(self, rows: list[list[StrictFloat]]) -> ExplainResponse:
        """Per-feature contributions of a batch of model-input rows: base + sum = score per row."""
        # The explainer process stops at its deadline, or is killed once this event is set (the
        # request was cancelled: its client is gone or BentoML's timeout fired).
        cancelled = threading.Event()
        try:
            return ExplainResponse.model_construct(
                **await asyncio.to_thread(self.server.explain, rows, cancelled)
            )
        except ServiceError as e:
            return _error_response(e)  # type: ignore[return-value]
        finally:
            cancelled.set()

    @bentoml.api(route="/insight")
    async def insight(self) -> InsightResponse:
        """The served version's interval calibration and drift reference documents (null when absent)."""
        try:
            return InsightResponse.model_construct(**self.server.insight())
        except ServiceError as e:
            return _error_response(e)  # type: ignore[return-value]

    @bentoml.api(route="/metadata")
    async def metadata(self) -> MetadataResponse:
        """Name, version, framework, labels and training metadata (with metrics) of the model."""
        try:
            return MetadataResponse.model_construct(**self.server.metadata())
        except ServiceError as e:
            return _error_response(e)  # type: ignore[return-value]


# Outermost first: every error, the token's 401 included, leaves in the one body shape.
_service: Any = ModelRunner  # a bentoml Service; its decorators' types hide that from mypy
_service.add_asgi_middleware(ErrorBodyMiddleware)
_service.add_asgi_middleware(
    RunnerTokenMiddleware, token=settings.token.get_secret_value() if settings.token else None
)


def _answer_binary_predict_first(service: Any, token: str | None) -> None:
    """Make ``service``'s ASGI app :class:`BinaryRouteMiddleware` around the app BentoML builds.

    BentoML puts its own middlewares (traffic metrics, OpenTelemetry, timeout, request context)
    outside any added with ``add_asgi_middleware``, and offers no hook outside them; its worker
    serves ``service.to_asgi()``. ``Service`` is a slotted attrs class, so the method is wrapped
    on the class, for this one service only.
    """
    cls = type(service)
    build = cls.to_asgi

    def to_asgi(self: Any, is_main: bool = True) -> Any:
        app = build(self, is_main)
        if self is not service:
            return app
        return BinaryRouteMiddleware(app, BINARY_PREDICT.answer, token=token, metrics=binary_route_metrics())

    cls.to_asgi = to_asgi


_answer_binary_predict_first(_service, settings.token.get_secret_value() if settings.token else None)
if settings.token is None:
    logger.warning(
        "WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED is set: this runner answers anyone who reaches its port"
    )
