"""Typed errors of the model runner, on the one error hierarchy of every service (:mod:`winemeup.errors`).

Every error a client can cause is a :class:`RunnerError` with a 4xx status; the service
adapter answers it with the one body shape (:class:`winemeup.api.ErrorBody`)::

    {"error": "<message>", "code": "<stable code>", "details": [{"field": ..., "problem": ...}]}
"""

from __future__ import annotations

from winemeup.errors import NotExplainable, NotReady, PayloadTooLarge, ServiceError
from winemeup.schema import FieldError


class RunnerError(ServiceError):
    """Base of the runner's errors; ``status`` is the HTTP status it is answered with."""

    @property
    def errors(self) -> list[FieldError]:
        """The offending fields (the body's ``details``)."""
        return self.details


class InvalidRowsError(RunnerError):
    """A batch's rows are malformed: wrong width, not numbers, NaN or infinity."""

    status = 400
    code = "invalid_rows"


class BatchTooLargeError(RunnerError, PayloadTooLarge):
    """A batch carries more rows than ``batch_max_rows``."""


class InvalidFeaturesError(RunnerError):
    """A single instance failed the feature schema (unknown, missing or out-of-range fields)."""

    status = 400
    code = "validation_error"


class ModelNotLoadedError(RunnerError, NotReady):
    """The model is still loading (or failed to load): the runner is not ready."""


class NotExplainableError(RunnerError, NotExplainable):
    """The model cannot be explained the way it is served here (e.g. its framework is missing)."""
