"""The wine feature schema: the one place where a feature is named.

Training, every runner, the router, the UI and the OpenAPI document read the features from
here. Each feature has its API name (``fixed_acidity``), its training header as spelled in
the UCI CSV files (``fixed acidity``), a unit, a physically plausible range and a one-line
description. ``wine_type`` is not a CSV column: the training loader adds it from the file a
row came from.

The model input is a row of 12 floats in schema order; ``wine_type`` is encoded as 1.0 for
red and 0.0 for white. This module imports neither a web framework nor a model library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = "1"
TARGET = "quality"
QUALITY_MIN = 0
QUALITY_MAX = 10
WINE_TYPES = ("red", "white")


@dataclass(frozen=True)
class Feature:
    """One model input: how the API, the CSV files and people name and bound it."""

    name: str
    header: str
    unit: str
    minimum: float
    maximum: float
    description: str
    kind: Literal["number", "category"] = "number"
    choices: tuple[str, ...] = ()
    example: float | str = 0.0


@dataclass(frozen=True)
class FieldError:
    """A problem with one field of one instance, as the API reports it."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class SchemaError(ValueError):
    """An instance did not validate; ``errors`` names every offending field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.problem}" for e in errors))


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered feature list and everything derived from it."""

    features: tuple[Feature, ...]
    not_exceeding: tuple[tuple[str, str], ...] = ()
    """Cross-field rules: in each pair (a, b), feature a must not exceed feature b."""
    version: str = SCHEMA_VERSION
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)
    _aliases: dict[str, str] = field(init=False, repr=False, compare=False)
    _row_rules: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.features}
        aliases: dict[str, str] = {}
        for f in self.features:
            aliases[f.name] = f.name
            aliases[f.header] = f.name
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_aliases", aliases)
        # row_valid's rules on model-input rows, as Python floats: bounds per column (a
        # category's are those of its codes), the code set of each category, the pairs by
        # position.
        codes = {i: frozenset(_encode_value(f, c) for c in f.choices) for i, f in enumerate(self.features)}
        bounds = tuple(
            (min(codes[i]), max(codes[i])) if f.kind == "category" else (float(f.minimum), float(f.maximum))
            for i, f in enumerate(self.features)
        )
        code_sets = tuple((i, codes[i]) for i, f in enumerate(self.features) if f.kind == "category")
        names = [f.name for f in self.features]
        pairs = tuple((names.index(a), names.index(b)) for a, b in self.not_exceeding)
        object.__setattr__(self, "_row_rules", (bounds, code_sets, pairs))

    # -- names ------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """API names in model-input order."""
        return [f.name for f in self.features]

    @property
    def headers(self) -> list[str]:
        """Training headers in model-input order (``wine_type`` for the added column)."""
        return [f.header for f in self.features]

    @property
    def measurements(self) -> tuple[Feature, ...]:
        """The 11 numeric measurements (every feature but ``wine_type``)."""
        return tuple(f for f in self.features if f.kind == "number")

    def __getitem__(self, name: str) -> Feature:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self.features)

    def canonical_name(self, key: str) -> str | None:
        """The API name for an API name or a training header, or None if unknown."""
        return self._aliases.get(key)

    # -- validation -------------------------------------------------------------------------

    def validate(self, instance: Any) -> list[float]:
        """Check one instance and return its model-input row; raise SchemaError otherwise.

        Accepts API names and training headers (``"fixed acidity"``, ``"pH"``). Every
        problem is reported, not just the first: unknown fields, fields given twice under
        two spellings, missing fields, wrong types, NaN/infinity and out-of-range values.
        """
        row, errors = self.check(instance)
        if errors:
            raise SchemaError(errors)
        return row

    def check(self, instance: Any, prefix: str = "") -> tuple[list[float], list[FieldError]]:
        """Like :meth:`validate` but returns ``(row, errors)``; ``prefix`` qualifies names."""
        if not isinstance(instance, Mapping):
            return [], [FieldError(prefix.rstrip(".") or "features", _not_an_object(instance))]
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in instance.items():
            name = self._aliases.get(key) if isinstance(key, str) else None
            if name is None:
                expected = ", ".join(self.names)
                errors.append(FieldError(f"{prefix}{key}", f"unknown field; expected one of {expected}"))
                continue
            if name in values:
                errors.append(
                    FieldError(f"{prefix}{name}", f"given twice (as '{spelled[name]}' and '{key}')")
                )
                continue
            values[name] = value
            spelled[name] = key
        row: list[float] = []
        for f in self.features:
            label = f"{prefix}{f.name}"
            if f.name not in values:
                errors.append(FieldError(label, "field required"))
                continue
            number, problem = _coerce(f, values[f.name])
            if problem is not None:
                errors.append(FieldError(label, problem))
            else:
                row.append(number)
        if not errors:
            for low, high in self.not_exceeding:
                a, b = row[self.names.index(low)], row[self.names.index(high)]
                if a > b:
                    errors.append(FieldError(f"{prefix}{low}", f"must not exceed {high} ({a:g} > {b:g})"))
        return row, errors

    def row_valid(self, row: Sequence[float]) -> bool:
        """Whether a model-input row is certainly valid: every value in its range, every
        category value one of its codes, no cross-field rule broken.

        The cheap yes of the hot paths (about 1 µs a row, against 15 µs for :meth:`check`).
        False only sends a row to the checks that name the problem. Every test is a comparison
        that must hold, and comparisons with NaN never hold: NaN and infinities fail too.
        """
        bounds, code_sets, pairs = self._row_rules
        if len(row) != len(bounds):
            return False
        for value, (low, high) in zip(row, bounds, strict=True):
            if not low <= value <= high:
                return False
        for column, codes in code_sets:
            if row[column] not in codes:
                return False
        return all(row[a] <= row[b] for a, b in pairs)

    def encode(self, instance: Mapping[str, Any]) -> list[float]:
        """Model-input row of an instance already known to be valid (API names only)."""
        return [_encode_value(f, instance[f.name]) for f in self.features]

    def decode(self, row: Iterable[float]) -> dict[str, float | str]:
        """Instance (API names) of a model-input row."""
        out: dict[str, float | str] = {}
        for f, v in zip(self.features, row, strict=True):
            out[f.name] = ("red" if v >= 0.5 else "white") if f.kind == "category" else float(v)
        return out

    def example(self) -> dict[str, float | str]:
        """A typical red wine (the first row of the UCI red file), by API name."""
        return {f.name: f.example for f in self.features}

    # -- documents --------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one instance, for the OpenAPI document."""
        props: dict[str, Any] = {}
        for f in self.features:
            if f.kind == "category":
                props[f.name] = {"type": "string", "enum": list(f.choices), "description": f.description}
            else:
                props[f.name] = {
                    "type": "number",
                    "minimum": f.minimum,
                    "maximum": f.maximum,
                    "description": f"{f.description} ({f.unit}); training header '{f.header}'",
                }
        return {
            "type": "object",
            "properties": props,
            "required": self.names,
            "additionalProperties": False,
            "example": self.example(),
            "description": "One wine. Training headers (e.g. 'fixed acidity', 'pH') are accepted as aliases.",
        }

    def describe(self) -> list[dict[str, Any]]:
        """Plain description of every feature (for UIs and docs)."""
        return [
            {
                "name": f.name,
                "header": f.header,
                "unit": f.unit,
                "minimum": f.minimum,
                "maximum": f.maximum,
                "description": f.description,
                "kind": f.kind,
                "choices": list(f.choices),
                "example": f.example,
            }
            for f in self.features
        ]


def quality_grade(score: float) -> int:
    """The integer quality grade of a model score: rounded half up and clamped to 0..10."""
    if not math.isfinite(score):
        raise ValueError(f"score is not finite: {score!r}")
    return int(min(QUALITY_MAX, max(QUALITY_MIN, math.floor(score + 0.5))))


def _not_an_object(value: Any) -> str:
    return f"must be an object mapping feature names to values, got {_json_type(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _coerce(f: Feature, value: Any) -> tuple[float, str | None]:
    if f.kind == "category":
        if isinstance(value, str) and value in f.choices:
            return (1.0 if value == "red" else 0.0), None
        shown = f"'{value}'" if isinstance(value, str) else _json_type(value)
        return 0.0, f"must be one of {', '.join(repr(c) for c in f.choices)}, got {shown}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0, f"must be a number, got {_json_type(value)}"
    number = float(value)
    if math.isnan(number):
        return 0.0, "must be a finite number, got NaN"
    if math.isinf(number):
        return 0.0, "must be a finite number, got infinity"
    if not f.minimum <= number <= f.maximum:
        return 0.0, f"must be between {f.minimum:g} and {f.maximum:g} {f.unit}, got {number:g}"
    return number, None


def _encode_value(f: Feature, value: Any) -> float:
    if f.kind == "category":
        return 1.0 if value == "red" else 0.0
    return float(value)


SCHEMA = FeatureSchema(
    features=(
        Feature(
            "fixed_acidity",
            "fixed acidity",
            "g(tartaric acid)/dm³",
            0.0,
            20.0,
            "Non-volatile acids, mostly tartaric",
            example=7.4,
        ),
        Feature(
            "volatile_acidity",
            "volatile acidity",
            "g(acetic acid)/dm³",
            0.0,
            2.0,
            "Acetic acid; too much tastes of vinegar",
            example=0.7,
        ),
        Feature("citric_acid", "citric acid", "g/dm³", 0.0, 2.0, "Adds freshness and flavour", example=0.0),
        Feature(
            "residual_sugar",
            "residual sugar",
            "g/dm³",
            0.0,
            150.0,
            "Sugar left after fermentation stops",
            example=1.9,
        ),
        Feature("chlorides", "chlorides", "g(sodium chloride)/dm³", 0.0, 1.0, "Salt content", example=0.076),
        Feature(
            "free_sulfur_dioxide",
            "free sulfur dioxide",
            "mg/dm³",
            0.0,
            300.0,
            "Free SO₂ protecting against microbes and oxidation",
            example=11.0,
        ),
        Feature(
            "total_sulfur_dioxide",
            "total sulfur dioxide",
            "mg/dm³",
            0.0,
            500.0,
            "Free plus bound SO₂",
            example=34.0,
        ),
        Feature(
            "density",
            "density",
            "g/cm³",
            0.98,
            1.05,
            "Density, close to water's; depends on alcohol and sugar",
            example=0.9978,
        ),
        Feature("ph", "pH", "pH", 2.5, 4.5, "Acidity on the pH scale", example=3.51),
        Feature(
            "sulphates",
            "sulphates",
            "g(potassium sulphate)/dm³",
            0.0,
            2.5,
            "Additive contributing to SO₂ levels",
            example=0.56,
        ),
        Feature("alcohol", "alcohol", "% vol", 5.0, 20.0, "Alcohol content by volume", example=9.4),
        Feature(
            "wine_type",
            "wine_type",
            "",
            0.0,
            1.0,
            "Red or white wine",
            kind="category",
            choices=WINE_TYPES,
            example="red",
        ),
    ),
    # Total SO2 is free plus bound SO2, so free can never be the larger.
    not_exceeding=(("free_sulfur_dioxide", "total_sulfur_dioxide"),),
)
