"""Typed errors of the model runner: one hierarchy, one HTTP status each, one JSON body shape.

Every error a client can cause is a :class:`RunnerError` with a 4xx status; the service
adapter turns it into the body every WineMeUp service answers with
(:class:`winemeup.api.ErrorBody`)::

    {"error": "<message>", "code": "<stable code>", "details": [{"field": ..., "problem": ...}]}
"""

from __future__ import annotations

from typing import Any, ClassVar

from winemeup.schema import FieldError


class RunnerError(Exception):
    """Base of the runner's errors; ``status`` is the HTTP status it is answered with."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, errors: list[FieldError] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = list(errors or [])

    def body(self) -> dict[str, Any]:
        """The JSON error body: a message, a code and the offending fields (possibly none)."""
        return {"error": self.message, "code": self.code, "details": [e.as_dict() for e in self.errors]}


class InvalidRowsError(RunnerError):
    """A batch's rows are malformed: wrong width, not numbers, NaN or infinity."""

    status = 400
    code = "invalid_rows"


class BatchTooLargeError(RunnerError):
    """A batch carries more rows than ``batch_max_rows``."""

    status = 413
    code = "payload_too_large"


class InvalidFeaturesError(RunnerError):
    """A single instance failed the feature schema (unknown, missing or out-of-range fields)."""

    status = 400
    code = "validation_error"


class ModelNotLoadedError(RunnerError):
    """The model is still loading (or failed to load): the runner is not ready."""

    status = 503
    code = "not_ready"


class NotExplainableError(RunnerError):
    """The model cannot be explained the way it is served here (e.g. its framework is missing)."""

    status = 422
    code = "not_explainable"
