"""A small client of the router's REST API, with errors a person can act on.

The UI talks to the router and to nothing else. The router's answers are read with the
API contract's own types (:mod:`winemeup.api`), the same types the router's OpenAPI document
is generated from. Every failure becomes one of the :class:`RouterCallError` subclasses
below; each carries a ``user_message`` that says what went wrong and what to do about it, so
the app never shows a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from winemeup.api import BatchResponse, ErrorBody, ModelList, PredictResponse
from winemeup.schema import FieldError

logger = logging.getLogger(__name__)


# ---- errors -----------------------------------------------------------------------------------


AnswerT = TypeVar("AnswerT", bound=BaseModel)
"""A response type declared in :mod:`winemeup.api`."""


class RouterCallError(Exception):
    """Base of every failure talking to the router; ``user_message`` is shown to people."""

    def __init__(self, user_message: str, status: int | None = None):
        super().__init__(user_message)
        self.user_message = user_message
        self.status = status


class RouterUnreachableError(RouterCallError):
    """Nothing answers at the router URL (refused, DNS, timeout, connection dropped)."""


class RouterAuthError(RouterCallError):
    """The router refused the API key (HTTP 401 or 403)."""


class RouterValidationError(RouterCallError):
    """The router rejected the input (HTTP 422); ``details`` names each bad field."""

    def __init__(self, user_message: str, details: list[FieldError], status: int = 422):
        super().__init__(user_message, status)
        self.details = details


class ModelUnavailableError(RouterCallError):
    """The model asked for cannot serve right now (HTTP 503)."""

    def __init__(self, user_message: str, model: str | None, status: int = 503):
        super().__init__(user_message, status)
        self.model = model


class UnknownModelError(RouterCallError):
    """The router does not serve the model asked for (HTTP 404, ``unknown_model``)."""


class RouterResponseError(RouterCallError):
    """Any other unexpected answer: another status or a body that is not the documented JSON."""


# ---- answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """The answer to one wine."""

    model: str
    model_version: str
    score: float
    quality: int
    cached: bool
    seconds: float
    """Round-trip time of the HTTP call, as the UI saw it."""


@dataclass(frozen=True)
class ScoredInstance:
    """One row of a batch answer."""

    score: float
    quality: int
    cached: bool


@dataclass(frozen=True)
class BatchPrediction:
    """The answer to a batch: one :class:`ScoredInstance` per instance, in order."""

    model: str
    model_version: str
    predictions: list[ScoredInstance]
    seconds: float


@dataclass(frozen=True)
class ModelEntry:
    """One model the router knows of."""

    name: str
    framework: str
    version: str | None
    placement: str
    status: str
    """``ready``, ``loading`` or ``unavailable``."""
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    """Why the model is not ready, when the router says."""

    @property
    def ready(self) -> bool:
        return self.status == "ready"


@dataclass(frozen=True)
class ModelsOverview:
    """GET /v1/models: every model and which one is the default."""

    default_model: str | None
    models: list[ModelEntry]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)


# ---- client -----------------------------------------------------------------------------------


class RouterClient:
    """Synchronous client of the router: ``predict``, ``predict_batch`` and ``models``.

    Thread-safe (one ``httpx.Client`` with a connection pool), so the comparison may score one
    wine with several models at once.
    """

    def __init__(self, base_url: str, api_key: str, timeout_seconds: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            timeout=timeout_seconds,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(self, features: Mapping[str, Any], model: str | None = None) -> Prediction:
        """Score one wine (API names) with ``model``, or the router's default when None."""
        body: dict[str, Any] = {"features": dict(features)}
        if model:
            body["model"] = model
        data, seconds = self._call("POST", "/v1/predict", body, model)
        try:
            answer = PredictResponse.model_validate(data)
        except ValidationError as e:
            raise self._malformed("/v1/predict", data) from e
        return Prediction(
            answer.model, answer.model_version, answer.score, answer.quality, answer.cached, seconds
        )

    def predict_batch(
        self, instances: Sequence[Mapping[str, Any]], model: str | None = None
    ) -> BatchPrediction:
        """Score several wines in one call; the router rejects the whole batch if one is invalid."""
        body: dict[str, Any] = {"instances": [dict(i) for i in instances]}
        if model:
            body["model"] = model
        data, seconds = self._call("POST", "/v1/predict/batch", body, model)
        try:
            answer = BatchResponse.model_validate(data)
        except ValidationError as e:
            raise self._malformed("/v1/predict/batch", data) from e
        predictions = [ScoredInstance(p.score, p.quality, p.cached) for p in answer.predictions]
        result = BatchPrediction(answer.model, answer.model_version, predictions, seconds)
        if len(result.predictions) != len(instances):
            raise RouterResponseError(
                f"The router answered {len(result.predictions)} predictions for {len(instances)} wines."
            )
        return result

    def models(self) -> ModelsOverview:
        """The models the router serves, their status and training metrics, and the default."""
        data, _ = self._call("GET", "/v1/models", None, None)
        try:
            return parse_models(data)
        except ValidationError as e:
            raise self._malformed("/v1/models", data) from e

    def fetch(
        self,
        answer: type[AnswerT],
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> AnswerT:
        """Call a route and read its answer as the declared type (``winemeup.api``).

        Router failures raise the same errors as :meth:`predict`; an answer that does not match
        the type is a :class:`RouterResponseError`.
        """
        data, _ = self._call(method, path, body, model)
        try:
            return answer.model_validate(data)
        except ValidationError as e:
            raise self._malformed(path, data) from e

    # -- plumbing ---------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, model: str | None
    ) -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as e:
            raise RouterUnreachableError(
                f"The router at {self.base_url} did not answer within {self.timeout_seconds:g} s. "
                "It may be overloaded or still starting; try again, or raise WINEMEUP_UI_TIMEOUT_SECONDS."
            ) from e
        except httpx.HTTPError as e:
            raise RouterUnreachableError(
                f"Cannot reach the router at {self.base_url} ({_reason(e)}). Check that it is running "
                "and that WINEMEUP_UI_ROUTER_URL points at it."
            ) from e
        seconds = time.perf_counter() - started
        if response.status_code >= 400:
            raise self._error(response, model)
        try:
            return response.json(), seconds
        except ValueError as e:
            raise RouterResponseError(
                f"The router answered {path} with something that is not JSON (HTTP {response.status_code}).",
                response.status_code,
            ) from e

    def _error(self, response: httpx.Response, model: str | None) -> RouterCallError:
        status = response.status_code
        code, message, details = _error_body(response)
        logger.info("router answered HTTP %s (%s): %s", status, code, message)
        if status in (401, 403):
            return RouterAuthError(
                f"The router refused the UI's API key (HTTP {status}: {message}). Set WINEMEUP_UI_API_KEY "
                "to one of the keys in the router's WINEMEUP_ROUTER_API_KEYS.",
                status,
            )
        if status in (400, 413, 422):
            return RouterValidationError(f"The router rejected the input: {message}", details, status)
        if status == 404 and code == "unknown_model":
            return UnknownModelError(
                f"The router does not serve model {model or '(default)'}: {message}. Pick one from the "
                "model list (Refresh model list in the sidebar).",
                status,
            )
        if status == 503:
            name = model or "the default model"
            return ModelUnavailableError(
                f"Model {name} is unavailable right now ({message}). Pick another model, or try again "
                "once it is ready (see the Models tab).",
                model,
                status,
            )
        return RouterResponseError(f"The router answered HTTP {status}: {message}", status)

    def _malformed(self, path: str, data: Any) -> RouterResponseError:
        logger.warning("unexpected body from %s: %.300r", path, data)
        return RouterResponseError(f"The router's answer to {path} does not have the expected shape.")


def parse_models(data: Any) -> ModelsOverview:
    """A :class:`ModelsOverview` from the JSON body of GET /v1/models (:class:`winemeup.api.ModelList`)."""
    if isinstance(data, Mapping) and "default" not in data and "default_model" in data:
        data = {**data, "default": data["default_model"]}  # the name this client used to read
    answer = ModelList.model_validate(data)
    models = [
        ModelEntry(
            name=m.name,
            framework=m.framework or "",
            version=m.version,
            placement=m.placement,
            status=m.status,
            metrics=dict(m.metrics),
            reason=m.reason,
        )
        for m in answer.models
    ]
    return ModelsOverview(default_model=answer.default, models=models)


def _error_body(response: httpx.Response) -> tuple[str, str, list[FieldError]]:
    """``(code, message, details)`` of the one error body (:class:`winemeup.api.ErrorBody`) or another."""
    try:
        error = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        text = response.text.strip().replace("\n", " ")[:200]
        return "", text or response.reason_phrase, []
    return error.code, error.error, [FieldError(d.field, d.problem) for d in error.details]


def _reason(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text
