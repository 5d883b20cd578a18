"""Parsing and validating request bodies: pure functions, no web framework.

Every rule about a wine's fields comes from :data:`winemeup.schema.SCHEMA`. Because
``SCHEMA.check`` builds a message for every field it looks at, it costs about 15 µs per
instance; :func:`fast_row` is a lean pre-check derived from the same schema (names, order,
bounds, category codes) that returns the row of an instance it can prove valid and ``None``
otherwise, in which case ``SCHEMA.check`` produces the row or the exact errors. A unit test
checks that the two agree.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import orjson

from winemeup.api import INTERVAL_LEVELS
from winemeup.errors import MalformedRequest, ValidationFailed
from winemeup.schema import SCHEMA, FieldError

_NAMES: tuple[str, ...] = tuple(SCHEMA.names)
_WIDTH = len(_NAMES)
_NUMERIC = tuple(f for f in SCHEMA.features if f.kind == "number")
_NUM_POSITIONS = tuple(_NAMES.index(f.name) for f in _NUMERIC)
_NUM_POS = np.array(_NUM_POSITIONS)
_GET_NUMBERS = operator.itemgetter(*(f.name for f in _NUMERIC))
_LOWS = np.array([f.minimum for f in _NUMERIC])
_HIGHS = np.array([f.maximum for f in _NUMERIC])
# Category features: (position, name, choice -> code), the codes being SCHEMA.encode's.
_CATEGORIES = tuple(
    (_NAMES.index(f.name), f.name, {c: SCHEMA.encode({**SCHEMA.example(), f.name: c})[i] for c in f.choices})
    for i, f in enumerate(SCHEMA.features)
    if f.kind == "category"
)
_CAT_POS = np.array([pos for pos, _, _ in _CATEGORIES])
_NUMBERS_FIRST = _NUM_POSITIONS + tuple(pos for pos, _, _ in _CATEGORIES) == tuple(range(_WIDTH))
_NUMBER_TYPES = frozenset((float, int))  # bool is its own type: rejected, as the schema does
# The schema's cross-field rules (a must not exceed b), by numeric position.
_NUMERIC_NAMES = [f.name for f in _NUMERIC]
_NOT_EXCEEDING = tuple((_NUMERIC_NAMES.index(a), _NUMERIC_NAMES.index(b)) for a, b in SCHEMA.not_exceeding)


def _numbers_and_codes(instance: Any) -> tuple[tuple[Any, ...], list[float]] | None:
    """Numeric values (schema order of numbers) and category codes, if all are well typed."""
    if type(instance) is not dict or len(instance) != _WIDTH:
        return None
    try:
        numbers = _GET_NUMBERS(instance)
        codes = [choices[instance[name]] for _, name, choices in _CATEGORIES]
    except (KeyError, TypeError):  # missing, aliased or unknown field; unhashable category value
        return None
    if not _NUMBER_TYPES.issuperset(map(type, numbers)):
        return None
    return numbers, codes


def fast_row(instance: Any) -> list[float] | None:
    """The model-input row of an instance that is certainly valid, else None (use the schema)."""
    parts = _numbers_and_codes(instance)
    if parts is None:
        return None
    numbers, codes = parts
    if _NUMBERS_FIRST:
        row: list[Any] = [*numbers, *codes]
    else:
        row = [0.0] * _WIDTH
        for pos, value in zip(_NUM_POSITIONS, numbers, strict=True):
            row[pos] = value
        for (pos, _, _), code in zip(_CATEGORIES, codes, strict=True):
            row[pos] = code
    # Checked before float(): an int too large for a float fails its bound instead of raising.
    return list(map(float, row)) if SCHEMA.row_valid(row) else None


def fast_matrix(instances: list[Any]) -> tuple[np.ndarray, list[int]]:
    """Model-input rows of many instances, checked with vectorised bounds.

    Returns the (n, 12) matrix and the indices of instances it could not prove valid (their
    rows are garbage; run ``SCHEMA.check`` on those).
    """
    n = len(instances)
    numbers = np.zeros((n, len(_NUMERIC)), dtype=np.float64)
    codes = np.zeros((n, len(_CATEGORIES)), dtype=np.float64)
    unsure: list[int] = []
    number_rows: list[tuple[Any, ...]] = []
    code_rows: list[list[float]] = []
    good: list[int] = []
    for i, instance in enumerate(instances):
        parts = _numbers_and_codes(instance)
        if parts is None:
            unsure.append(i)
            continue
        good.append(i)
        number_rows.append(parts[0])
        code_rows.append(parts[1])
    if good:
        numbers[good] = np.array(number_rows, dtype=np.float64)
        if len(_CATEGORIES):
            codes[good] = np.array(code_rows, dtype=np.float64)
        out_of_bounds = np.asarray(~((numbers >= _LOWS) & (numbers <= _HIGHS)).all(axis=1))
        for a, b in _NOT_EXCEEDING:
            out_of_bounds |= numbers[:, a] > numbers[:, b]
        out_of_bounds[unsure] = False
        unsure.extend(np.flatnonzero(out_of_bounds).tolist())
        unsure.sort()
    matrix = np.empty((n, _WIDTH), dtype=np.float64)
    matrix[:, _NUM_POS] = numbers
    if len(_CATEGORIES):
        matrix[:, _CAT_POS] = codes
    return matrix, unsure


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


def _predict_body(
    body: bytes, payload: str, options: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str | None, list[FieldError]]:
    """A prediction body with its ``payload`` key, an optional model and ``options``: (doc, model, errors).

    A bad ``model`` is collected, not raised, so that it is reported with the payload's errors.
    """
    allowed = (payload, "model", *options)
    doc = orjson_object(
        body, allowed, f"'{payload}' (and optionally {', '.join(repr(a) for a in allowed[1:])})"
    )
    try:
        return doc, _model_field(doc), []
    except ValidationFailed as e:
        return doc, None, list(e.details)


def _interval_field(doc: dict[str, Any], errors: list[FieldError]) -> float | None:
    """The ``interval`` level asked for (one of ``INTERVAL_LEVELS``), None when not asked."""
    level = doc.get("interval")
    if level is None:
        return None
    if type(level) is float and level in INTERVAL_LEVELS:
        return level
    offered = " or ".join(f"{lv:g}" for lv in INTERVAL_LEVELS)
    errors.append(FieldError("interval", f"must be a coverage level, {offered}; got {level!r}"))
    return None


def parse_predict(body: bytes) -> tuple[list[float], str | None]:
    """``{"features": {...}, "model"?: str}`` -> (model-input row, model name or None)."""
    row, model, _ = _parse_predict(body, ())
    return row, model


def parse_predict_request(body: bytes) -> tuple[list[float], str | None, float | None]:
    """``{"features": {...}, "model"?: str, "interval"?: 0.8|0.9}`` -> (row, model, interval level)."""
    return _parse_predict(body, ("interval",))


def _parse_predict(body: bytes, options: tuple[str, ...]) -> tuple[list[float], str | None, float | None]:
    doc, model, errors = _predict_body(body, "features", options)
    level = _interval_field(doc, errors) if options else None
    if "features" not in doc:
        errors.append(FieldError("features", "field required: an object mapping feature names to numbers"))
        raise ValidationFailed(errors)
    row, field_errors = instance_row(doc["features"], "features.")
    errors.extend(field_errors)
    if errors:
        raise ValidationFailed(errors)
    return row, model, level


def parse_batch(body: bytes, max_rows: int) -> tuple[np.ndarray, str | None]:
    """``{"instances": [...], "model"?: str}`` -> ((n, 12) float64 rows, model name or None)."""
    matrix, model, _ = _parse_batch(body, max_rows, ())
    return matrix, model


def parse_batch_request(body: bytes, max_rows: int) -> tuple[np.ndarray, str | None, float | None]:
    """``{"instances": [...], "model"?: str, "interval"?: 0.8|0.9}`` -> (rows, model, interval level)."""
    return _parse_batch(body, max_rows, ("interval",))


def _parse_batch(
    body: bytes, max_rows: int, options: tuple[str, ...]
) -> tuple[np.ndarray, str | None, float | None]:
    doc, model, errors = _predict_body(body, "instances", options)
    level = _interval_field(doc, errors) if options else None
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
    matrix, unsure = fast_matrix(instances)
    for i in unsure:
        row, field_errors = SCHEMA.check(instances[i], f"instances[{i}].")
        if field_errors:
            errors.extend(field_errors)
        else:
            matrix[i] = row
    if errors:
        raise ValidationFailed(errors)
    return matrix, model, level


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
