"""The Open Inference Protocol ("V2") REST routes, beside ``/v1``: a codec over the data plane.

Same keys, same cache, same limits, traffic policies and drift window as ``/v1``: an infer
request is decoded by :mod:`~services.router.oip` into the feature matrix, handed to
:meth:`~services.router.dataplane.DataPlane.predict`, and its result encoded back. Errors are
answered with the protocol's ``{"error": "<string>"}`` body (400, 404, 413, 422, 429, 503).

Routes (health routes need no key, the others the ordinary one):

* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata)
* ``GET /v2/models/{name}[/versions/{version}]`` (model metadata), ``.../ready``
* ``POST /v2/models/{name}[/versions/{version}]/infer``

A request naming a version is answered by that model itself (no canary split), and only when
the model serves that version: another version is a 404 naming the served one.

Prediction intervals are two extra outputs, ``interval_low`` and ``interval_high`` (FP64):
asked with the parameter ``interval`` (0.8 or 0.9, the levels training calibrates), or by
naming the outputs (then at 0.9). The bounds are those of ``"interval"`` on ``/v1/predict``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

import winemeup
from services.router.dataplane import DataPlane
from services.router.http import Handler, Request, Response, Route
from services.router.oip import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    RequestedOutput,
    parse_infer,
)
from services.router.oip_encode import encode_infer, model_metadata
from winemeup.errors import NotReady, ServiceError
from winemeup.schema import quality_grade

SERVER_NAME = "winemeup"
EXTENSIONS = ["binary_tensor_data"]
_HEADER_LENGTH = HEADER_LENGTH.encode()
INTERVAL_OUTPUTS = ("interval_low", "interval_high")
DEFAULT_LEVEL = 0.9
_INTERVAL_METADATA = [
    {"name": name, "datatype": "FP64", "shape": [-1], "parameters": {"asked_by": "parameter interval"}}
    for name in INTERVAL_OUTPUTS
]


def match(path: str) -> tuple[str, dict[str, str]] | None:
    """The route template of a ``/v2`` path and its parameters (a fresh dict), or None."""
    found = _match(path)
    return None if found is None else (found[0], dict(found[1]))


@functools.lru_cache(maxsize=1024)
def _match(path: str) -> tuple[str, dict[str, str]] | None:
    # Clients call few paths, over and over: each is split once (bounded by the cache).
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


def interval_level(request: InferRequest) -> float | None:
    """The interval level a request asks for (parameter ``interval``, or 0.9 when it names the
    outputs); None when it asks for none. Adds the interval outputs a parameter asked for."""
    asked = {o.name for o in request.outputs} & set(INTERVAL_OUTPUTS)
    wanted = not request.outputs_named and request.parameters.get("interval") is not None
    if not (asked or wanted):
        return None
    value = request.parameters.get("interval", DEFAULT_LEVEL)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            f"parameter 'interval' must be a coverage level such as 0.8 or 0.9, got {value!r}"
        )
    if wanted:
        binary = any(o.binary for o in request.outputs)
        request.outputs.extend(RequestedOutput(n, binary) for n in INTERVAL_OUTPUTS)
    return float(value)


def protocol_error(e: ProtocolError | ServiceError) -> Response:
    """The protocol's error answer: ``{"error": "<string>"}`` (with the error's headers)."""
    headers = e.headers() if isinstance(e, ServiceError) else []
    return Response(e.status, orjson.dumps({"error": e.message}), headers=headers)


def _protocol(handler: Callable[[Request], Awaitable[Response]]) -> Handler:
    """A V2 handler whose errors are answered in the protocol's ``{"error": "..."}`` shape."""

    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except (ProtocolError, ServiceError) as e:
            return protocol_error(e)

    handle.__doc__ = handler.__doc__
    handle.__name__ = handler.__name__
    return handle


class OpenInference:
    """The V2 route handlers over the data plane."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    def routes(self) -> list[Route]:
        """Every V2 route (templated paths are matched by :func:`match`)."""
        table = [
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
        return [
            Route(
                method,
                path,
                _protocol(handler),
                auth,
                tag="open inference protocol",
                rows=path.endswith("infer"),
            )
            for method, path, handler, auth in table
        ]

    @staticmethod
    def _json(doc: Any, status: int = 200) -> Response:
        return Response(status, orjson.dumps(doc))

    async def live(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return self._json({"live": True})

    async def ready(self, request: Request) -> Response:
        """Readiness: the default model can be served by this pod (as ``/readyz``)."""
        try:
            self.plane.default_ready()
        except NotReady as e:
            return self._json({"error": e.message}, 503)
        return self._json({"ready": True})

    async def server_metadata(self, request: Request) -> Response:
        """Server name, version and protocol extensions."""
        return self._json({"name": SERVER_NAME, "version": winemeup.__version__, "extensions": EXTENSIONS})

    async def metadata(self, request: Request) -> Response:
        """Model metadata: inputs (both layouts), outputs, version; members of an ensemble; its split."""
        params = request.path_params
        view = await self.plane.model(params["name"], params.get("version"), request.labels)
        doc = model_metadata(view.name, view.version or "", view.platform)
        doc["outputs"].extend(_INTERVAL_METADATA)
        if view.members is not None:
            doc["parameters"]["members"] = view.members
            doc["parameters"]["on_member_down"] = view.on_member_down
        if view.split is not None:
            doc["parameters"]["split"] = view.split
        if view.versions is not None and params.get("version") is None:
            doc["versions"] = [v["version"] for v in view.versions if v["version"] is not None]
            doc["parameters"]["versions"] = view.versions
        return self._json(doc)

    async def model_ready(self, request: Request) -> Response:
        """200 when the model can answer now, else 503 with the reason."""
        params = request.path_params
        state = self.plane.model_state(params["name"], request.labels)
        if state.status != "ready":
            return self._json({"error": f"model '{state.name}' is {state.status}: {state.reason}"}, 503)
        await self.plane.model(params["name"], params.get("version"), request.labels)
        return self._json({"name": state.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        """Score the wines of an infer request (JSON or binary tensor data, either input layout)."""
        params = request.path_params
        # The name (and a named version) first: a 404 whatever the body holds.
        if "version" in params:
            await self.plane.model(params["name"], params["version"], request.labels)
        else:
            self.plane.check_name(params["name"], request.labels)
        header = request.headers.get(_HEADER_LENGTH)
        body = await request.body()
        decoded = parse_infer(body, header.decode() if header else None, INTERVAL_OUTPUTS)
        level = interval_level(decoded)
        p = await self.plane.predict(
            params["name"], decoded.rows, request.labels, params.get("version"), level, field_name="inputs"
        )
        scores = list(p.scores)
        quality = [quality_grade(s) for s in scores]
        extra: dict[str, tuple[str, Sequence[float]]] = {}
        if p.low is not None and p.high is not None:
            extra = {"interval_low": ("FP64", list(p.low)), "interval_high": ("FP64", list(p.high))}
        parameters: dict[str, Any] = {"served_by": p.models} if p.models else {}
        if p.row_versions is not None:
            parameters["versions"] = p.row_versions
        if p.served_by != p.model:
            parameters["model"] = p.served_by
        body, json_length = encode_infer(decoded, p.model, p.version, scores, quality, extra, parameters)
        if json_length is None:
            return Response(200, body)
        return Response(200, body, b"application/octet-stream", [(_HEADER_LENGTH, str(json_length).encode())])
