"""The router's error hierarchy: each error carries its HTTP status and a stable code.

One handler (in :mod:`services.router.app`) turns any :class:`ApiError` into the one JSON
error body shape of every WineMeUp service (:class:`winemeup.api.ErrorBody`)::

    {"error": "1 invalid field: features.ph: ...", "code": "validation_error",
     "details": [{"field": "features.ph", "problem": "..."}]}

``error`` is a string, so an Open Inference Protocol client reads the same body.

A client mistake is always a 4xx; only a bug in the router is a 500.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from winemeup.schema import FieldError


class ApiError(Exception):
    """Base of every error the router answers with; ``status`` is the HTTP status."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, details: Iterable[FieldError] = ()):
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def body(self) -> bytes:
        """The JSON error body."""
        body: dict[str, object] = {"error": self.message, "code": self.code}
        if self.details:
            body["details"] = [d.as_dict() for d in self.details]
        return orjson.dumps(body)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers (e.g. ``WWW-Authenticate``, ``Allow``)."""
        return []


class MalformedRequest(ApiError):
    """The body is not a JSON document the API can read (empty, not JSON, NaN/Infinity)."""

    status = 400
    code = "malformed_request"


class ValidationFailed(ApiError):
    """The body is JSON but fields are missing, unknown, of the wrong type or out of range."""

    status = 422
    code = "validation_error"

    def __init__(self, details: Iterable[FieldError], message: str | None = None):
        details = list(details)
        if message is None:
            message = f"{len(details)} invalid field{'s' if len(details) != 1 else ''}: " + "; ".join(
                f"{d.field}: {d.problem}" for d in details[:5]
            )
            if len(details) > 5:
                message += f"; and {len(details) - 5} more"
        super().__init__(message, details)


class Unauthenticated(ApiError):
    """No API key, or one that is not configured."""

    status = 401
    code = "unauthenticated"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b'Bearer realm="winemeup"')]


class Forbidden(ApiError):
    """A valid key that may not use this route (admin routes)."""

    status = 403
    code = "forbidden"


class RouteNotFound(ApiError):
    """No route at this path."""

    status = 404
    code = "not_found"


class UnknownModel(ApiError):
    """The request names a model the router does not serve."""

    status = 404
    code = "unknown_model"


class MethodNotAllowed(ApiError):
    """The path exists but not with this HTTP method."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: Iterable[str]):
        super().__init__(message)
        self.allowed = sorted(allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", ", ".join(self.allowed).encode())]


class PayloadTooLarge(ApiError):
    """The body is larger than ``max_body_bytes``."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The body is not sent as ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """The body is compressed (``Content-Encoding``); the router reads only plain bodies."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        # RFC 7694: a 415 caused by the content coding names the codings the server accepts.
        return [(b"accept-encoding", b"identity")]


class ModelUnavailable(ApiError):
    """The model exists but cannot answer now (runner down or slow, load failed)."""

    status = 503
    code = "model_unavailable"

    def __init__(self, model: str, reason: str):
        super().__init__(f"model '{model}' is unavailable: {reason}")
        self.model = model
        self.reason = reason


class NotReady(ApiError):
    """The router cannot serve its default model yet (``/readyz``)."""

    status = 503
    code = "not_ready"


class NotExplainable(ApiError):
    """The model cannot be explained the way it is served (e.g. its framework is not installed)."""

    status = 422
    code = "not_explainable"


class NoCalibration(ApiError):
    """An interval was asked of a model version stored without calibration data: retrain it."""

    status = 409
    code = "no_calibration"


class UnsupportedIntervalLevel(ApiError):
    """An interval level the model was not calibrated at."""

    status = 422
    code = "unsupported_interval_level"
