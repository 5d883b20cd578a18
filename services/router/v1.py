"""The ``/v1`` API: a codec over the data plane (decode the JSON body, call, encode the answer).

Request and response types are declared in :mod:`winemeup.api`; the OpenAPI document is built
from the routes below and those types. Every rule that holds on both protocols (limits,
traffic policies, intervals, drift) lives in :mod:`~services.router.dataplane`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from services.router.dataplane import DataPlane, ExplainedRows, Prediction
from services.router.http import Request, Response, Route
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
    ModelList,
    PredictRequest,
    PredictResponse,
    TrafficChange,
    TrafficPolicies,
)
from winemeup.schema import SCHEMA, quality_grade

_PREDICT_ERRORS = {
    "404": "Unknown model",
    "429": "Over the key's budget of requests or rows (Retry-After says when to retry)",
    "503": "The model is unavailable (runner down or slow, load failed)",
    "409": "An interval was asked of a model stored without calibration data (retrain it)",
}
_EXPLAIN_ERRORS = {
    "404": "Unknown model",
    "429": "Over the key's budget, or the model's explanations in flight are at their bound",
    "503": "The model is unavailable (runner down or slow, load failed)",
    "422": "Invalid fields, too many rows, or the model cannot be explained as served (the message says why)",
}
_NAMES = tuple(SCHEMA.names)


def _explained(
    row: Sequence[float], base: float, score: float, contributions: Sequence[float], cached: bool
) -> dict[str, Any]:
    """One wine's entry of an explain answer (:class:`winemeup.api.ExplainedInstance`)."""
    values = SCHEMA.decode(row)
    return {
        "base": base,
        "score": score,
        "quality": quality_grade(score),
        "cached": cached,
        "contributions": [
            {"feature": name, "value": values[name], "contribution": c}
            for name, c in zip(_NAMES, contributions, strict=True)
        ],
    }


def _explained_rows(matrix: np.ndarray, result: ExplainedRows) -> list[dict[str, Any]]:
    return [
        _explained(row, base, score, contributions, cached)
        for row, base, score, contributions, cached in zip(
            matrix.tolist(), result.base, result.scores, result.contributions, result.cached, strict=True
        )
    ]


class V1:
    """The ``/v1`` route handlers."""

    def __init__(self, plane: DataPlane, batch_max_rows: int):
        self.plane = plane
        self.batch_max_rows = batch_max_rows

    def routes(self) -> list[Route]:
        """Every ``/v1`` route, as the application serves and documents it."""
        return [
            Route("POST", "/v1/predict", self.predict, "user", PredictRequest, PredictResponse,
                  errors=_PREDICT_ERRORS, rows=True, single_row=True),
            Route("POST", "/v1/predict/batch", self.predict_batch, "user", BatchRequest, BatchResponse,
                  errors=_PREDICT_ERRORS, rows=True),
            Route("POST", "/v1/explain", self.explain, "user", ExplainRequest, ExplainResponse, "insight",
                  _EXPLAIN_ERRORS, rows=True, single_row=True),
            Route("POST", "/v1/explain/batch", self.explain_batch, "user", ExplainBatchRequest,
                  ExplainBatchResponse, "insight", _EXPLAIN_ERRORS, rows=True),
            Route("GET", "/v1/drift", self.drift, "user", None, DriftReport, "insight"),
            Route("GET", "/v1/models", self.list_models, "user", None, ModelList, "models"),
            Route("PUT", "/v1/models/default", self.set_default, "admin", DefaultModelRequest,
                  DefaultModelChange, "models", {"404": "Unknown model"}),
            Route("GET", "/v1/features", self.features, "user", None, FeatureList, "models"),
            Route("GET", "/v1/traffic", self.get_traffic, "user", None, TrafficPolicies, "models"),
            Route("PUT", "/v1/traffic", self.set_traffic, "admin", TrafficChange, TrafficPolicies, "models"),
        ]  # fmt: skip

    async def predict(self, request: Request) -> Response:
        """Predict the quality of one wine.

        Body: `{"features": {...12 fields...}, "model": "<name>"}` (model optional: the current
        default). Training headers such as "fixed acidity" or "pH" are accepted as aliases.
        Answers the model's score, its rounded quality grade and whether it came from the cache.
        """
        row, name, level = parse_predict_request(await request.json_body())
        p = await self.plane.predict_one(name, row, request.labels, level)
        score = p.scores[0]
        answer: dict[str, Any] = {
            "model": p.served_by,
            "model_version": p.version,
            "score": score,
            "quality": quality_grade(score),
            "cached": p.cached[0],
        }
        if p.low is not None and p.high is not None:
            answer["interval"] = {"level": p.level, "low": p.low[0], "high": p.high[0]}
        return Response(200, orjson.dumps(answer))

    async def predict_batch(self, request: Request) -> Response:
        """Predict the quality of many wines with one model call.

        Body: `{"instances": [{...}, ...], "model": "<name>"}` with at most `batch_max_rows`
        instances. Predictions come back in input order; rows the cache holds are not
        recomputed. Field errors are named like `instances[3].ph`.
        """
        matrix, name, level = parse_batch_request(await request.json_body(), self.batch_max_rows)
        p = await self.plane.predict(name, matrix, request.labels, level=level)
        return Response(200, orjson.dumps(_batch_answer(p)))

    async def explain(self, request: Request) -> Response:
        """Explain the score of one wine: per-feature contributions, base and score.

        Body: as `/v1/predict` (`{"features": {...}, "model"?}`). `base + sum(contributions) ==
        score` within 1e-6 (XGBoost 2e-5: it computes in float32). `method` names how: exact
        TreeSHAP for the tree models (base: their mean prediction over the training data),
        baseline Shapley (exact, 4,096 coalitions; base: a reference wine's score) for svr.
        Explanations are cached by model version and row. A model that cannot be explained as
        served (e.g. an ONNX-only image without the framework) answers 422 saying why; a model
        already explaining `explain_max_inflight` requests answers 429 with `Retry-After`.
        """
        row, name = parse_predict(await request.json_body())
        model, result = await self.plane.explain(name, np.array([row], dtype=np.float64), request.labels)
        answer = {
            "model": model,
            "model_version": result.version,
            "method": result.method,
            **_explained(row, result.base[0], result.scores[0], result.contributions[0], result.cached[0]),
        }
        return Response(200, orjson.dumps(answer))

    async def explain_batch(self, request: Request) -> Response:
        """Explain the scores of many wines with one model call for the uncached ones.

        Body: as `/v1/predict/batch`, at most `explain_max_rows` instances (explaining costs
        milliseconds a row for the boosted trees, 0.1-0.3 s for the forests and svr).
        Explanations come back in input order.
        """
        matrix, name = parse_batch(await request.json_body(), self.batch_max_rows)
        model, result = await self.plane.explain(name, matrix, request.labels)
        answer = {
            "model": model,
            "model_version": result.version,
            "method": result.method,
            "explanations": _explained_rows(matrix, result),
        }
        return Response(200, orjson.dumps(answer))

    async def drift(self, request: Request) -> Response:
        """Input drift: PSI per measurement and wine type of the served-rows window.

        Compared with the training bins stored with the default model at start-up; aggregated
        every `drift_interval_seconds` off the request path (the same figures as the
        `winemeup_router_drift_*` gauges). Rows served on both protocols are counted.
        """
        return Response(200, orjson.dumps(self.plane.drift_report()))

    async def list_models(self, request: Request) -> Response:
        """List the served models with their placement, status, version and training metrics."""
        return Response(200, orjson.dumps(self.plane.model_list()))

    async def set_default(self, request: Request) -> Response:
        """Change the default model (admin key only); the next request uses it.

        Body: `{"model": "<name>"}`. Cache keys carry the model name and version, so a swap
        can never serve another model's cached score. With Redis, the swap is shared: other
        replicas adopt it within `default_sync_seconds` (`"shared": true` in the answer).
        """
        name = parse_default_model(await request.json_body())
        return Response(200, orjson.dumps(await self.plane.set_default(name, request.labels)))

    async def get_traffic(self, request: Request) -> Response:
        """The canary splits and shadows in force, with this replica's served rows and shadow figures."""
        return Response(200, orjson.dumps(self.plane.traffic_status()))

    async def set_traffic(self, request: Request) -> Response:
        """Change the canary splits and shadows (admin key only); sections left out are kept.

        Body: `{"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}}, "shadows": {"lightgbm":
        {"target": "catboost", "fraction": 0.1}}}`. A split's weights are percent and must add
        up to 100; every name must be served. A bad change is answered 422 naming the field and
        the policies in force are kept. With Redis, other replicas adopt it within
        `default_sync_seconds` (`"shared": true`).
        """
        return Response(200, orjson.dumps(await self.plane.set_traffic(await request.json_body())))

    async def features(self, request: Request) -> Response:
        """Describe the 12 input features: names, training headers, units, ranges."""
        return Response(200, orjson.dumps({"schema_version": SCHEMA.version, "features": SCHEMA.describe()}))


def _batch_answer(p: Prediction) -> dict[str, Any]:
    predictions: list[dict[str, Any]] = [
        {"score": s, "quality": quality_grade(s), "cached": c}
        for s, c in zip(p.scores, p.cached, strict=True)
    ]
    if p.models is not None and p.versions is not None:  # a split spread the batch
        for entry, m in zip(predictions, p.models, strict=True):
            entry["model"], entry["model_version"] = m, p.versions[m]
    if p.row_versions is not None:  # a rollout's two versions answered
        for entry, version in zip(predictions, p.row_versions, strict=True):
            entry["model_version"] = version
    if p.low is not None and p.high is not None:
        for entry, low, high in zip(predictions, p.low, p.high, strict=True):
            entry["interval"] = {"level": p.level, "low": low, "high": high}
    return {"model": p.served_by, "model_version": p.version, "predictions": predictions}
