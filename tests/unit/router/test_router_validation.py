"""Request-body parsing: the fast path agrees with the schema, errors name each field."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError as PydanticValidationError

from services.router.validation import (
    fast_matrix,
    fast_row,
    parse_batch,
    parse_default_model,
    parse_json,
    parse_predict,
)
from winemeup.api import BatchRequest, PredictRequest
from winemeup.errors import MalformedRequest, ValidationFailed
from winemeup.schema import SCHEMA

EXAMPLE = SCHEMA.example()


def _mutations(rng: random.Random) -> dict[str, Any]:
    """A random instance: mostly valid, sometimes with one of many kinds of defect."""
    inst: dict[str, Any] = {}
    for f in SCHEMA.features:
        if f.kind == "category":
            inst[f.name] = rng.choices([*f.choices, "rosé", 1, None], weights=[45, 45, 3, 3, 3])[0]
        else:
            span = f.maximum - f.minimum
            inst[f.name] = rng.choices(
                [
                    rng.uniform(f.minimum, f.maximum),
                    f.minimum,
                    f.maximum,
                    f.minimum - span * 0.01,
                    f.maximum + span * 0.01,
                    int(f.minimum),
                ],
                weights=[80, 4, 4, 2, 2, 4],
            )[0]
    roll = rng.random()
    names = SCHEMA.names
    if roll < 0.1:
        del inst[rng.choice(names)]
    elif roll < 0.2:
        inst["extra"] = 1.0
    elif roll < 0.3:
        inst[rng.choice(names)] = rng.choice(["1.0", True, None, [], {}])
    elif roll < 0.4:
        name = rng.choice(SCHEMA.features)
        inst[name.header] = inst.pop(name.name)  # training-header alias
    elif roll < 0.45:
        name = rng.choice(SCHEMA.features)
        inst[name.header + "x"] = inst.pop(name.name)
    return inst


def test_fast_row_agrees_with_schema_check() -> None:
    rng = random.Random(1234)
    fast_hits = 0
    for _ in range(5000):
        inst = _mutations(rng)
        row, errors = SCHEMA.check(inst)
        fast = fast_row(inst)
        if fast is not None:
            fast_hits += 1
            assert not errors, (inst, errors)
            assert fast == row
    assert fast_hits > 100  # the fast path is really exercised


def test_fast_matrix_agrees_with_schema_check() -> None:
    rng = random.Random(99)
    instances = [_mutations(rng) for _ in range(3000)]
    matrix, unsure = fast_matrix(instances)
    unsure_set = set(unsure)
    assert unsure == sorted(unsure_set)
    proven = 0
    for i, inst in enumerate(instances):
        row, errors = SCHEMA.check(inst)
        if i not in unsure_set:
            proven += 1
            assert not errors, (inst, errors)
            assert matrix[i].tolist() == row
    assert proven > 100
    assert fast_matrix([])[0].shape == (0, 12)


def test_fast_row_examples() -> None:
    assert fast_row(EXAMPLE) == SCHEMA.validate(EXAMPLE)
    assert fast_row({**EXAMPLE, "wine_type": "white"})[-1] == 0.0  # type: ignore[index]
    swapped = {**EXAMPLE, "free_sulfur_dioxide": 50.0, "total_sulfur_dioxide": 40.0}
    assert fast_row(swapped) is None
    assert SCHEMA.check(swapped)[1]
    assert fast_row({**EXAMPLE, "alcohol": True}) is None


def _body(doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_parse_predict_ok_and_aliases() -> None:
    row, model = parse_predict(_body({"features": EXAMPLE, "model": "svr"}))
    assert row == SCHEMA.validate(EXAMPLE) and model == "svr"
    aliased = {("pH" if k == "ph" else k): v for k, v in EXAMPLE.items()}
    aliased["fixed acidity"] = aliased.pop("fixed_acidity")
    assert parse_predict(_body({"features": aliased}))[0] == row


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b'{"features": {"ph": NaN}}', "NaN"),
        (b'{"features": {"ph": Infinity}}', "Infinity"),
        (b'{"features": {"ph": -Infinity}}', "Infinity"),
        (b'{"features": ', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, needle: str) -> None:
    with pytest.raises(MalformedRequest, match=needle):
        parse_json(body) if body.strip() else parse_predict(body)
    with pytest.raises(MalformedRequest):
        parse_predict(body)


def _fields(excinfo: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    return {d.field: d.problem for d in excinfo.value.details}


@pytest.mark.parametrize(
    ("doc", "field", "problem"),
    [
        ([EXAMPLE], "body", "JSON object"),
        ("features", "body", "JSON object"),
        ({}, "features", "required"),
        ({"feature": EXAMPLE}, "feature", "unknown field"),
        ({"features": EXAMPLE, "model": 3}, "model", "model name"),
        ({"features": [1, 2]}, "features", "object"),
        ({"features": {**EXAMPLE, "ph": "3.5"}}, "features.ph", "number"),
        ({"features": {**EXAMPLE, "color": 1}}, "features.color", "unknown field"),
        ({"features": {k: v for k, v in EXAMPLE.items() if k != "alcohol"}}, "features.alcohol", "required"),
        ({"features": {**EXAMPLE, "alcohol": 99}}, "features.alcohol", "between"),
        ({"features": {**EXAMPLE, "wine_type": "rosé"}}, "features.wine_type", "one of"),
        ({"features": {**EXAMPLE, "pH": 3.3}}, "features.ph", "twice"),
    ],
)
def test_validation_errors_name_the_field(doc: Any, field: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_predict(_body(doc))
    fields = _fields(info)
    assert field in fields, fields
    assert problem in fields[field]


def test_batch_rows_in_order_and_errors_indexed() -> None:
    other = {**EXAMPLE, "alcohol": 12.5, "wine_type": "white"}
    matrix, model = parse_batch(_body({"instances": [EXAMPLE, other, EXAMPLE]}), 10)
    assert model is None
    assert matrix.shape == (3, 12)
    assert matrix[1].tolist() == SCHEMA.validate(other)
    bad = [EXAMPLE, EXAMPLE, EXAMPLE, {**EXAMPLE, "ph": "x"}, {**EXAMPLE, "nope": 1}]
    with pytest.raises(ValidationFailed) as info:
        parse_batch(_body({"instances": bad}), 10)
    assert set(_fields(info)) == {"instances[3].ph", "instances[4].nope"}


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"instances": []}, "at least one"),
        ({"instances": {"a": 1}}, "array"),
        ({}, "required"),
        ({"instances": [EXAMPLE] * 4}, "at most 3"),
    ],
)
def test_batch_shape_errors(doc: Any, problem: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_batch(_body(doc), 3)
    assert problem in _fields(info)["instances"]


def test_default_model_body() -> None:
    assert parse_default_model(b'{"model": "svr"}') == "svr"
    with pytest.raises(ValidationFailed):
        parse_default_model(b"{}")
    with pytest.raises(ValidationFailed):
        parse_default_model(b'{"model": "svr", "x": 1}')


def _accepted_by_router(doc: Any) -> list[float] | None:
    try:
        row, _ = parse_predict(orjson.dumps(doc))
    except ValidationFailed:
        return None
    return row


def _accepted_by_contract(doc: Any) -> list[float] | None:
    try:
        request = PredictRequest.model_validate(doc)
    except PydanticValidationError:
        return None
    return SCHEMA.encode(request.features.model_dump())


def test_router_validation_agrees_with_the_declared_contract() -> None:
    """The fast path (and SCHEMA.check behind it) accepts exactly what winemeup.api.PredictRequest does."""
    rng = random.Random(99)
    accepted = 0
    for i in range(4000):
        inst = _mutations(rng)
        if i % 7 == 0 and isinstance(inst.get("total_sulfur_dioxide"), float):
            inst["free_sulfur_dioxide"] = inst["total_sulfur_dioxide"] + rng.choice([0.0, 0.5])
        if i % 11 == 0:
            name = rng.choice(SCHEMA.features)
            inst[name.header] = inst.get(name.name, name.example)  # given twice when header differs
        doc: dict[str, Any] = {"features": inst}
        if i % 5 == 0:
            doc["model"] = rng.choice([None, "lightgbm", "", 3])
        router, contract = _accepted_by_router(doc), _accepted_by_contract(doc)
        assert (router is None) == (contract is None), doc
        if router is not None:
            accepted += 1
            assert router == contract
    assert accepted > 500


def test_batch_validation_agrees_with_the_declared_contract() -> None:
    rng = random.Random(7)
    for _ in range(300):
        doc = {"instances": [_mutations(rng) for _ in range(rng.randint(0, 3))]}
        try:
            parse_batch(orjson.dumps(doc), max_rows=100)
            router = True
        except ValidationFailed:
            router = False
        try:
            BatchRequest.model_validate(doc)
            contract = True
        except PydanticValidationError:
            contract = False
        assert router == contract, doc
