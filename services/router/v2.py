"""The Open Inference Protocol ("V2") REST routes, beside ``/v1``: a thin adapter.

Same keys, same cache, same predictor and traffic policies as ``/v1``: an infer request is
decoded by :mod:`~services.router.oip` into the feature matrix and scored by
:meth:`~services.router.traffic.Traffic.predict_many`, exactly as ``POST /v1/predict/batch``
is. Errors are answered with the protocol's ``{"error": "<string>"}`` body (400, 404, 503).

Routes (health routes need no key, the others the ordinary one):

* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata)
* ``GET /v2/models/{name}[/versions/{version}]`` (model metadata), ``.../ready``
* ``POST /v2/models/{name}[/versions/{version}]/infer``

A request naming a version is answered by that model itself (no canary split), and only when
the model serves that version: another version is a 404 naming the served one.

Extra outputs: :meth:`OpenInference.add_outputs` registers outputs computed beside the score
(for example prediction intervals), answered when a request names them or when the hook's
``wanted(request)`` says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

import winemeup
from services.router import metrics
from services.router.models import READY, ServedModel
from services.router.oip import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    RequestedOutput,
    encode_infer,
    model_metadata,
    parse_infer,
)
from services.router.registry import ModelRegistry
from services.router.traffic import Traffic
from winemeup.errors import NotReady, ServiceError, UnknownModel
from winemeup.schema import quality_grade

SERVER_NAME = "winemeup"
EXTENSIONS = ["binary_tensor_data"]
_HEADER_LENGTH = HEADER_LENGTH.encode()


@dataclass(slots=True)
class Answer:
    """Status, body, content type and extra headers of one V2 answer."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Request(Protocol):
    scope: dict[str, Any]
    receive: Callable[[], Awaitable[dict[str, Any]]]
    headers: dict[bytes, bytes]
    model_label: str
    placement: str


class _Server(Protocol):
    """What the routes need of the router: resolved lazily, after start-up."""

    registry: ModelRegistry | None
    traffic: Traffic | None

    async def read_body(self, request: Any) -> bytes:
        """The raw body, uncompressed and within the size limit (ServiceError 415/413 otherwise)."""
        ...


@dataclass(frozen=True)
class InferContext:
    """What an extra-output hook sees: the request, the model that answered, rows and scores."""

    request: InferRequest
    model: ServedModel
    version: str
    rows: np.ndarray
    scores: np.ndarray
    served_by: str = ""
    """The model that served the rows (the one serving most of them when a split spread them)."""
    models: list[str] | None = None
    """The model of each row, when a split spread the rows over more than one model."""
    versions: dict[str, str] | None = None
    """The version of each model in ``models``."""


@dataclass(frozen=True)
class ExtraOutputs:
    """Outputs beside score and quality, computed by ``compute`` when asked for."""

    names: tuple[str, ...]
    compute: Callable[[InferContext], Awaitable[Mapping[str, tuple[str, np.ndarray]]]]
    """Values by output name: (datatype FP64|FP32|INT32, one value per row)."""
    wanted: Callable[[InferRequest], bool] = field(default=lambda request: False)
    """True when a request that names no outputs should get these too (e.g. a parameter asks)."""
    metadata: list[dict[str, Any]] = field(default_factory=list)
    """Their entries in the model metadata's ``outputs``."""


def match(path: str) -> tuple[str, dict[str, str]] | None:
    """The route template of a ``/v2`` path and its parameters, or None."""
    parts = path.rstrip("/").split("/")[1:] if path != "/" else []
    if parts == ["v2"]:
        return "/v2", {}
    if parts in (["v2", "health", "live"], ["v2", "health", "ready"]):
        return path.rstrip("/"), {}
    if len(parts) < 3 or parts[:2] != ["v2", "models"] or not parts[2]:
        return None
    params = {"name": parts[2]}
    rest = parts[3:]
    template = "/v2/models/{name}"
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        params["version"] = rest[1]
        template += "/versions/{version}"
        rest = rest[2:]
    if not rest:
        return template, params
    if rest in (["ready"], ["infer"]):
        return f"{template}/{rest[0]}", params
    return None


class OpenInference:
    """The V2 route handlers over the router's registry and traffic policies."""

    def __init__(self, server: _Server):
        self.server = server
        self.extras: list[ExtraOutputs] = []

    def add_outputs(self, extra: ExtraOutputs) -> None:
        """Answer ``extra.names`` too (see :class:`ExtraOutputs`)."""
        self.extras.append(extra)

    def routes(self) -> list[tuple[str, str, Callable[[Any], Awaitable[Answer]], str]]:
        """(method, template, handler, auth) of every V2 route."""
        return [
            ("GET", "/v2/health/live", self.live, "open"),
            ("GET", "/v2/health/ready", self.ready, "open"),
            ("GET", "/v2", self.server_metadata, "user"),
            ("GET", "/v2/models/{name}", self.metadata, "user"),
            ("GET", "/v2/models/{name}/versions/{version}", self.metadata, "user"),
            ("GET", "/v2/models/{name}/ready", self.model_ready, "user"),
            ("GET", "/v2/models/{name}/versions/{version}/ready", self.model_ready, "user"),
            ("POST", "/v2/models/{name}/infer", self.infer, "user"),
            ("POST", "/v2/models/{name}/versions/{version}/infer", self.infer, "user"),
        ]

    # ---- helpers ----------------------------------------------------------------------------

    @property
    def registry(self) -> ModelRegistry:
        assert self.server.registry is not None
        return self.server.registry

    def _model(self, request: _Request) -> ServedModel:
        name = request.scope["path_params"]["name"]
        try:
            model = self.registry.resolve(name)
        except UnknownModel:
            request.model_label = "unknown"
            raise ProtocolError(
                f"unknown model '{name}'; this router serves {', '.join(self.registry.names)}", 404
            ) from None
        request.model_label = model.name
        return model

    async def _version(self, request: _Request, model: ServedModel) -> str:
        """The served version; a 404 naming it when the request asks for another."""
        served = await model.ensure_ready()
        asked = request.scope["path_params"].get("version")
        if asked is not None and asked != served:
            raise ProtocolError(
                f"model '{model.name}' version '{asked}' is not served; the served version is '{served}'", 404
            )
        return served

    @staticmethod
    def _json(doc: Any, status: int = 200) -> Answer:
        return Answer(status, orjson.dumps(doc))

    # ---- routes -----------------------------------------------------------------------------

    async def live(self, request: _Request) -> Answer:
        """Liveness: the process answers."""
        return self._json({"live": True})

    async def ready(self, request: _Request) -> Answer:
        """Readiness: the default model can be served by this pod (as ``/readyz``)."""
        try:
            self.registry.default_ready()
        except NotReady as e:
            return self._json({"error": e.message}, 503)
        return self._json({"ready": True})

    async def server_metadata(self, request: _Request) -> Answer:
        """Server name, version and protocol extensions."""
        return self._json({"name": SERVER_NAME, "version": winemeup.__version__, "extensions": EXTENSIONS})

    async def metadata(self, request: _Request) -> Answer:
        """Model metadata: inputs (both layouts), outputs, version; members of an ensemble; its split."""
        model = self._model(request)
        version = await self._version(request, model)
        doc = model_metadata(model.name, version, model.framework or model.placement)
        for extra in self.extras:
            doc["outputs"].extend(extra.metadata)
        members = getattr(getattr(model, "spec", None), "members", None)
        if members is not None:
            doc["parameters"]["members"] = dict(members)
            doc["parameters"]["on_member_down"] = model.spec.on_member_down  # type: ignore[attr-defined]
        traffic = self.server.traffic
        if traffic is not None and model.name in traffic.splits:
            doc["parameters"]["split"] = traffic.splits[model.name].as_dict()
        return self._json(doc)

    async def model_ready(self, request: _Request) -> Answer:
        """200 when the model can answer now, else 503 with the reason."""
        model = self._model(request)
        if model.status != READY:
            return self._json({"error": f"model '{model.name}' is {model.status}: {model.reason}"}, 503)
        await self._version(request, model)
        return self._json({"name": model.name, "ready": True})

    async def infer(self, request: _Request) -> Answer:
        """Score the wines of an infer request (JSON or binary tensor data, either input layout)."""
        model = self._model(request)
        request.placement = model.placement
        pinned = "version" in request.scope["path_params"]
        if pinned:
            await self._version(request, model)
        header = request.headers.get(_HEADER_LENGTH)
        names = tuple(n for extra in self.extras for n in extra.names)
        body = await self.server.read_body(request)
        decoded = parse_infer(body, header.decode() if header else None, names)
        rows = decoded.rows
        metrics.BATCH_ROWS.observe(rows.shape[0])
        traffic = self.server.traffic
        assert traffic is not None
        if pinned:  # a named version is that model's own answer, never a canary's
            plain = await traffic.predictor.predict_many(model, rows)
            scores, version, served_by = plain.scores, plain.version, model.name
            models, versions = None, None
            parameters: dict[str, Any] = {}
        else:
            routed = await traffic.predict_many(model, rows)
            scores, version, served_by = routed.scores, routed.version, routed.model
            models, versions = routed.models, routed.versions
            parameters = {"served_by": routed.models} if routed.models else {}
        score_array = np.asarray(scores, dtype=np.float64)
        quality = np.array([quality_grade(s) for s in scores], dtype=np.int32)
        context = InferContext(decoded, model, version, rows, score_array, served_by, models, versions)
        extra_values = await self._extras(decoded, context)
        if served_by != model.name:
            parameters["model"] = served_by
        body, json_length = encode_infer(
            decoded, model.name, version, score_array, quality, extra_values, parameters
        )
        if json_length is None:
            return Answer(200, body)
        return Answer(200, body, b"application/octet-stream", [(_HEADER_LENGTH, str(json_length).encode())])

    async def _extras(
        self, decoded: InferRequest, context: InferContext
    ) -> dict[str, tuple[str, np.ndarray]]:
        values: dict[str, tuple[str, np.ndarray]] = {}
        requested = {o.name for o in decoded.outputs}
        for extra in self.extras:
            asked = requested & set(extra.names)
            wanted = not decoded.outputs_named and extra.wanted(decoded)
            if not (asked or wanted):
                continue
            values.update(await extra.compute(context))
            if wanted:
                binary = any(o.binary for o in decoded.outputs)
                decoded.outputs.extend(RequestedOutput(n, binary) for n in extra.names if n not in requested)
        return values


def protocol_error(e: ProtocolError | ServiceError) -> Answer:
    """The protocol's error answer: ``{"error": "<string>"}``."""
    return Answer(e.status, orjson.dumps({"error": e.message}))
