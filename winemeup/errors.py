"""The one error hierarchy of every WineMeUp service: each error carries its HTTP status and a code.

The router and the runners raise these (or their own subclasses) and answer every one with the
one JSON error body shape (:class:`winemeup.api.ErrorBody`)::

    {"error": "1 invalid field: features.ph: ...", "code": "validation_error",
     "details": [{"field": "features.ph", "problem": "..."}]}

``error`` is a string, so an Open Inference Protocol client reads the same body; ``details``
is always present (an empty list when no field is at fault).

A client mistake is always a 4xx; only a bug is a 500. No message may carry an internal host,
port, path or an upstream body: details of that kind go to the log, with the request id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from winemeup.schema import FieldError


class ServiceError(Exception):
    """Base of every error a WineMeUp service answers with; ``status`` is the HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, details: Iterable[FieldError] | None = ()):
        super().__init__(message)
        self.message = message
        self.details = list(details or ())

    def body(self) -> dict[str, Any]:
        """The JSON error body (:class:`winemeup.api.ErrorBody`)."""
        return {"error": self.message, "code": self.code, "details": [d.as_dict() for d in self.details]}

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers (e.g. ``WWW-Authenticate``, ``Allow``, ``Retry-After``)."""
        return []


class MalformedRequest(ServiceError):
    """The body is not a document the service can read (empty, not JSON, NaN/Infinity, two keys)."""

    status = 400
    code = "malformed_request"


class ValidationFailed(ServiceError):
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


class Unauthenticated(ServiceError):
    """No credential, or one that is not configured."""

    status = 401
    code = "unauthenticated"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b'Bearer realm="winemeup"')]


class Forbidden(ServiceError):
    """A valid key that may not use this route (admin routes)."""

    status = 403
    code = "forbidden"


class RouteNotFound(ServiceError):
    """No route at this path."""

    status = 404
    code = "not_found"


class UnknownModel(ServiceError):
    """The request names a model the service does not serve."""

    status = 404
    code = "unknown_model"


class VersionNotServed(ServiceError):
    """The request names a version of a served model that is not served."""

    status = 404
    code = "version_not_served"


class MethodNotAllowed(ServiceError):
    """The path exists but not with this HTTP method."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: Iterable[str]):
        super().__init__(message)
        self.allowed = sorted(allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", ", ".join(self.allowed).encode())]


class NoCalibration(ServiceError):
    """An interval was asked of a model version stored without calibration data: retrain it."""

    status = 409
    code = "no_calibration"


class PayloadTooLarge(ServiceError):
    """The body, or the rows it carries, exceed a limit (the message names it)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    """The body is not sent as ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """The body is compressed (``Content-Encoding``); the services read only plain bodies."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        # RFC 7694: a 415 caused by the content coding names the codings the server accepts.
        return [(b"accept-encoding", b"identity")]


class NotExplainable(ServiceError):
    """The model cannot be explained the way it is served (e.g. its framework is not installed)."""

    status = 422
    code = "not_explainable"


class UnsupportedIntervalLevel(ServiceError):
    """An interval level the model was not calibrated at."""

    status = 422
    code = "unsupported_interval_level"


class TooManyRequests(ServiceError):
    """Over a budget (rate limit) or a bound on work in flight; retry after ``retry_after`` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: float, extra: Iterable[tuple[bytes, bytes]] = ()):
        super().__init__(message)
        self.retry_after = retry_after
        self.extra = list(extra)

    def headers(self) -> list[tuple[bytes, bytes]]:
        seconds = max(1, math.ceil(self.retry_after))
        return [(b"retry-after", str(seconds).encode()), *self.extra]


class ModelUnavailable(ServiceError):
    """The model exists but cannot answer now (runner down or slow, load failed).

    ``reason`` is what the client reads (no internal address); ``detail`` is for the log only.
    """

    status = 503
    code = "model_unavailable"

    def __init__(self, model: str, reason: str, detail: str = ""):
        super().__init__(f"model '{model}' is unavailable: {reason}")
        self.model = model
        self.reason = reason
        self.detail = detail


class NotReady(ServiceError):
    """The service cannot serve yet (a model still loading)."""

    status = 503
    code = "not_ready"
