"""The feature schema: names, aliases, validation messages and the quality grade."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from winemeup.schema import SCHEMA, FieldError, SchemaError, quality_grade


def test_twelve_features_in_the_order_the_models_use() -> None:
    assert SCHEMA.names == [
        "fixed_acidity",
        "volatile_acidity",
        "citric_acid",
        "residual_sugar",
        "chlorides",
        "free_sulfur_dioxide",
        "total_sulfur_dioxide",
        "density",
        "ph",
        "sulphates",
        "alcohol",
        "wine_type",
    ]
    assert SCHEMA["ph"].header == "pH"
    assert SCHEMA["fixed_acidity"].header == "fixed acidity"
    assert all(f.unit and f.description for f in SCHEMA.measurements)


def test_headers_match_the_uci_files(data_dir: Path) -> None:
    for colour in ("red", "white"):
        with (data_dir / f"winequality-{colour}.csv").open() as fh:
            header = next(csv.reader(fh, delimiter=";"))
        assert header[:-1] == [f.header for f in SCHEMA.measurements]


def test_every_uci_row_is_within_the_schema_ranges(data_dir: Path) -> None:
    for colour in ("red", "white"):
        with (data_dir / f"winequality-{colour}.csv").open() as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))
        for row in rows:
            instance: dict[str, object] = {k: float(v) for k, v in row.items() if k != "quality"}
            instance["wine_type"] = colour
            SCHEMA.validate(instance)  # raises on any problem


def test_example_validates_and_encodes_red_as_one() -> None:
    row = SCHEMA.validate(SCHEMA.example())
    assert len(row) == 12 and row[-1] == 1.0
    assert row == SCHEMA.encode(SCHEMA.example())
    assert SCHEMA.decode(row) == {**SCHEMA.example(), "wine_type": "red"}


def test_training_headers_are_aliases() -> None:
    by_header = {SCHEMA[n].header: v for n, v in SCHEMA.example().items()}
    assert SCHEMA.validate(by_header) == SCHEMA.validate(SCHEMA.example())


def _problems(instance: object, prefix: str = "") -> dict[str, str]:
    _, errors = SCHEMA.check(instance, prefix)
    return {e.field: e.problem for e in errors}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("ph", float("nan"), "must be a finite number, got NaN"),
        ("alcohol", math.inf, "must be a finite number, got infinity"),
        ("density", "0.99", "must be a number, got string"),
        ("chlorides", True, "must be a number, got boolean"),
        ("sulphates", None, "must be a number, got null"),
        ("alcohol", 42, "must be between 5 and 20 % vol, got 42"),
        ("wine_type", "rosé", "must be one of 'red', 'white', got 'rosé'"),
        ("wine_type", 1, "must be one of 'red', 'white', got number"),
    ],
)
def test_bad_values_name_the_field_and_the_problem(field: str, value: object, problem: str) -> None:
    assert _problems({**SCHEMA.example(), field: value}) == {field: problem}


def test_every_problem_is_reported_at_once_with_a_prefix() -> None:
    instance = {**SCHEMA.example(), "colour": "red", "pH": 3.3}
    del instance["alcohol"]
    assert _problems(instance, "instances[2].") == {
        "instances[2].colour": "unknown field; expected one of " + ", ".join(SCHEMA.names),
        "instances[2].ph": "given twice (as 'ph' and 'pH')",
        "instances[2].alcohol": "field required",
    }


def test_free_sulfur_dioxide_cannot_exceed_total() -> None:
    instance = {**SCHEMA.example(), "free_sulfur_dioxide": 50.0, "total_sulfur_dioxide": 40.0}
    with pytest.raises(SchemaError) as info:
        SCHEMA.validate(instance)
    assert info.value.errors == [
        FieldError("free_sulfur_dioxide", "must not exceed total_sulfur_dioxide (50 > 40)")
    ]


def test_non_object_instance() -> None:
    assert _problems([1, 2, 3], "features.") == {
        "features": "must be an object mapping feature names to values, got array"
    }


def test_json_schema_lists_every_feature_with_its_range() -> None:
    doc = SCHEMA.json_schema()
    assert doc["required"] == SCHEMA.names
    assert doc["properties"]["ph"]["minimum"] == 2.5
    assert doc["properties"]["wine_type"]["enum"] == ["red", "white"]


@pytest.mark.parametrize(
    ("score", "grade"), [(5.49, 5), (5.5, 6), (-0.7, 0), (12.2, 10), (9.51, 10), (0.0, 0)]
)
def test_quality_grade_rounds_half_up_and_clamps(score: float, grade: int) -> None:
    assert quality_grade(score) == grade


def test_quality_grade_rejects_non_finite_scores() -> None:
    with pytest.raises(ValueError, match="not finite"):
        quality_grade(float("nan"))


def test_row_valid_agrees_with_check_on_random_rows() -> None:
    """The hot paths' cheap yes (runner batches, /v1 and /v2 single rows) never accepts a row
    the full check rejects, and accepts every valid one."""
    rng = np.random.default_rng(7)
    lows = np.array([f.minimum for f in SCHEMA.features])
    highs = np.array([f.maximum for f in SCHEMA.features])
    span = highs - lows
    accepted = rejected = 0
    for _ in range(2000):
        row = (lows - 0.05 * span + rng.random(len(SCHEMA)) * 1.1 * span).tolist()
        row[-1] = float(rng.choice([0.0, 1.0, 0.5, 2.0]))
        if rng.random() < 0.05:
            row[int(rng.integers(len(row)))] = float(rng.choice([math.nan, math.inf, -math.inf]))
        instance = dict(zip(SCHEMA.names, row, strict=True))
        instance["wine_type"] = {1.0: "red", 0.0: "white"}.get(row[-1], "rosé")
        _, errors = SCHEMA.check(instance)
        assert SCHEMA.row_valid(row) is not errors, (row, errors)
        accepted += not errors
        rejected += bool(errors)
    assert accepted > 50 and rejected > 50, (accepted, rejected)


def test_row_valid_refuses_a_row_of_the_wrong_length_and_a_broken_pair() -> None:
    row = SCHEMA.encode(SCHEMA.example())
    assert SCHEMA.row_valid(row)
    assert not SCHEMA.row_valid(row[:-1]) and not SCHEMA.row_valid([*row, 0.0])
    free, total = SCHEMA.names.index("free_sulfur_dioxide"), SCHEMA.names.index("total_sulfur_dioxide")
    row[free] = row[total] + 1
    assert not SCHEMA.row_valid(row)
