"""Parsing and validating request bodies: pure functions, no web framework.

Every rule about a wine's fields comes from :data:`winemeup.schema.SCHEMA`. Because
``SCHEMA.check`` builds a message for every field it looks at, it costs about 15 µs per
instance; :func:`fast_row` is a lean pre-check derived from the same schema (names, order,
bounds, category codes) that returns the row of an instance it can prove valid and ``None``
otherwise, in which case ``SCHEMA.check`` produces the row or the exact errors. A unit test
checks that the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from services.router.errors import MalformedRequest, ValidationFailed
from winemeup.schema import SCHEMA, FieldError

_NAMES: tuple[str, ...] = tuple(SCHEMA.names)
_NAME_SET = frozenset(_NAMES)
_WIDTH = len(_NAMES)
# (name, minimum, maximum) for numbers; (name, None, choice->code) for categories.
_NUMERIC = tuple(
    (i, f.name, f.minimum, f.maximum) for i, f in enumerate(SCHEMA.features) if f.kind == "number"
)
_CATEGORIES = tuple(
    (i, f.name, {c: (1.0 if c == f.choices[0] else 0.0) for c in f.choices})
    for i, f in enumerate(SCHEMA.features)
    if f.kind == "category"
)
# The schema's one cross-field rule (free SO2 cannot exceed total SO2), by position.
_FREE_SO2 = _NAMES.index(SCHEMA["free_sulfur_dioxide"].name)
_TOTAL_SO2 = _NAMES.index(SCHEMA["total_sulfur_dioxide"].name)


def fast_row(instance: Any) -> list[float] | None:
    """The model-input row of an instance that is certainly valid, else None (use the schema)."""
    if type(instance) is not dict or len(instance) != _WIDTH:
        return None
    row = [0.0] * _WIDTH
    try:
        for i, name, low, high in _NUMERIC:
            value = instance[name]
            kind = type(value)
            if kind is not float and kind is not int:
                return None
            if not low <= value <= high:  # also false for NaN
                return None
            row[i] = float(value)
        for i, name, codes in _CATEGORIES:
            code = codes.get(instance[name])  # type: ignore[call-overload]
            if code is None:
                return None
            row[i] = code
    except (KeyError, TypeError):
        return None
    if row[_FREE_SO2] > row[_TOTAL_SO2]:
        return None
    return row


def instance_row(instance: Any, prefix: str) -> tuple[list[float], list[FieldError]]:
    """Row and errors of one instance; ``prefix`` names it in errors (``features.``)."""
    row = fast_row(instance)
    if row is not None:
        return row, []
    return SCHEMA.check(instance, prefix)


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, mapping every decoding problem to a 400 that names it."""
    if not body or not body.strip():
        raise MalformedRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        for token in (b"NaN", b"Infinity"):
            if token in body:
                raise MalformedRequest(
                    f"the body contains {token.decode()}, which JSON does not allow; "
                    "every feature must be a finite number"
                ) from e
        raise MalformedRequest(f"the body is not valid JSON: {e}") from e


def _object(doc: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        kind = "an array" if isinstance(doc, list) else f"a {type(doc).__name__}"
        raise ValidationFailed([FieldError("body", f"must be a JSON object with {what}, got {kind}")])
    unknown = [k for k in doc if k not in allowed]
    if unknown:
        raise ValidationFailed(
            [
                FieldError(k, f"unknown field; expected {' and '.join(repr(a) for a in allowed)}")
                for k in unknown
            ]
        )
    return doc


def _model_field(doc: dict[str, Any]) -> str | None:
    model = doc.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise ValidationFailed([FieldError("model", "must be a model name (a non-empty string)")])
    return model


def parse_predict(body: bytes) -> tuple[list[float], str | None]:
    """``{"features": {...}, "model"?: str}`` -> (model-input row, model name or None)."""
    doc = orjson_object(body, ("features", "model"), "'features' (and optionally 'model')")
    errors: list[FieldError] = []
    model: str | None = None
    try:
        model = _model_field(doc)
    except ValidationFailed as e:
        errors.extend(e.details)
    if "features" not in doc:
        errors.append(FieldError("features", "field required: an object mapping feature names to numbers"))
        raise ValidationFailed(errors)
    row, field_errors = instance_row(doc["features"], "features.")
    errors.extend(field_errors)
    if errors:
        raise ValidationFailed(errors)
    return row, model


def parse_batch(body: bytes, max_rows: int) -> tuple[np.ndarray, str | None]:
    """``{"instances": [...], "model"?: str}`` -> ((n, 12) float64 rows, model name or None)."""
    doc = orjson_object(body, ("instances", "model"), "'instances' (and optionally 'model')")
    errors: list[FieldError] = []
    model: str | None = None
    try:
        model = _model_field(doc)
    except ValidationFailed as e:
        errors.extend(e.details)
    instances = doc.get("instances")
    if instances is None:
        errors.append(FieldError("instances", "field required: an array of feature objects"))
        raise ValidationFailed(errors)
    if not isinstance(instances, list):
        errors.append(FieldError("instances", "must be an array of feature objects"))
        raise ValidationFailed(errors)
    if not instances:
        errors.append(FieldError("instances", "must hold at least one instance"))
        raise ValidationFailed(errors)
    if len(instances) > max_rows:
        errors.append(
            FieldError("instances", f"holds {len(instances)} instances; at most {max_rows} are allowed")
        )
        raise ValidationFailed(errors)
    matrix = np.empty((len(instances), _WIDTH), dtype=np.float64)
    for i, instance in enumerate(instances):
        row = fast_row(instance)
        if row is None:
            row, field_errors = SCHEMA.check(instance, f"instances[{i}].")
            if field_errors:
                errors.extend(field_errors)
                continue
        matrix[i] = row
    if errors:
        raise ValidationFailed(errors)
    return matrix, model


def parse_default_model(body: bytes) -> str:
    """``{"model": str}`` -> the model name."""
    doc = orjson_object(body, ("model",), "'model'")
    model = _model_field(doc)
    if model is None:
        raise ValidationFailed([FieldError("model", "field required: the name of the new default model")])
    return model


def orjson_object(body: bytes, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Decode a body that must be a JSON object with only the ``allowed`` keys."""
    return _object(parse_json(body), allowed, what)
