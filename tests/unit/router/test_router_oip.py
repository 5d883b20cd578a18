"""The Open Inference Protocol codec, fed by the real client's encoder (tritonclient).

Requests are built with ``tritonclient.http``'s own ``generate_request_body`` (JSON and
binary tensor data, both layouts), and answers are read back with its
``parse_response_body``: what a user's client sends and reads, without a server.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from services.router.oip import ProtocolError, parse_infer
from services.router.oip_encode import encode_infer, model_metadata
from winemeup.schema import SCHEMA

EXAMPLE = SCHEMA.example()
EXAMPLE_ROW = SCHEMA.encode(EXAMPLE)


def column_inputs(n: int, binary: bool, override: dict[str, Any] | None = None) -> list[Any]:
    inputs = []
    for f in SCHEMA.features:
        value = (override or {}).get(f.name, EXAMPLE[f.name])
        if f.kind == "category":
            array = np.array([str(value).encode()] * n, dtype=np.object_)
            tensor = triton.InferInput(f.name, [n], "BYTES")
        else:
            array = np.full(n, value, dtype=np.float64)
            tensor = triton.InferInput(f.name, [n], "FP64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def matrix_input(rows: np.ndarray, binary: bool, datatype: str = "FP32") -> Any:
    tensor = triton.InferInput("features", list(rows.shape), datatype)
    tensor.set_data_from_numpy(
        rows.astype(np.float32 if datatype == "FP32" else np.float64), binary_data=binary
    )
    return tensor


def encoded(inputs: list[Any], outputs: list[Any] | None = None) -> tuple[bytes, str | None]:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, (str(json_size) if json_size is not None else None)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_column_layout_round_trip(binary: bool) -> None:
    request = parse_infer(*encoded(column_inputs(3, binary, {"alcohol": 11.5, "wine_type": "white"})))

    want = SCHEMA.encode({**EXAMPLE, "alcohol": 11.5, "wine_type": "white"})
    assert request.rows.tolist() == [want] * 3
    body, header = encode_infer(request, "lightgbm", "v7", np.array([5.25, 6.5, 7.0]), np.array([5, 7, 7]))
    answer = triton.InferenceServerClient.parse_response_body(body, header_length=header)
    np.testing.assert_array_equal(answer.as_numpy("score"), [5.25, 6.5, 7.0])
    np.testing.assert_array_equal(answer.as_numpy("quality"), [5, 7, 7])
    assert answer.get_response()["model_version"] == "v7"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_matrix_layout_with_wine_type_zero_for_red(binary: bool, datatype: str) -> None:
    rows = np.array([EXAMPLE_ROW, EXAMPLE_ROW])
    rows[:, 11] = [0, 1]  # the protocol's red, white

    request = parse_infer(*encoded([matrix_input(rows, binary, datatype)]))

    # The model's own encoding: red is 1.0.
    assert request.rows[:, 11].tolist() == [1.0, 0.0]
    tolerance = 1e-6 if datatype == "FP32" else 0.0
    np.testing.assert_allclose(request.rows[:, :11], rows[:, :11], rtol=tolerance)


def test_requested_outputs_select_and_choose_json_or_binary() -> None:
    outputs = [triton.InferRequestedOutput("quality", binary_data=False)]
    request = parse_infer(*encoded(column_inputs(1, True), outputs))

    body, header = encode_infer(request, "svr", "v1", np.array([5.6]), np.array([6]))

    assert header is None
    assert orjson.loads(body)["outputs"] == [
        {"name": "quality", "datatype": "INT32", "shape": [1], "data": [6]}
    ]


def _raw(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def _columns_json(n: int = 1, **override: Any) -> list[dict[str, Any]]:
    out = []
    for f in SCHEMA.features:
        value = override.get(f.name, EXAMPLE[f.name])
        datatype = "BYTES" if f.kind == "category" else "FP64"
        out.append({"name": f.name, "datatype": datatype, "shape": [n], "data": [value] * n})
    return out


BAD = [
    pytest.param(_raw(_columns_json()[:-1]), "missing inputs ['wine_type']", id="missing-feature"),
    pytest.param(
        _raw([*_columns_json()[:10], {**_columns_json()[10], "datatype": "INT64"}, _columns_json()[11]]),
        "input 'alcohol': datatype INT64 is not accepted",
        id="wrong-datatype",
    ),
    pytest.param(
        _raw([*_columns_json()[:10], {**_columns_json()[10], "shape": [2]}, _columns_json()[11]]),
        "input 'alcohol': 1 values for a shape of 2 elements",
        id="wrong-count",
    ),
    pytest.param(
        _raw([{"name": "features", "datatype": "FP64", "shape": [1, 11], "data": EXAMPLE_ROW[:11]}]),
        "input 'features': shape must be [N, 12]",
        id="wrong-shape",
    ),
    pytest.param(
        _raw(_columns_json(ph=9.5)), "input 'ph' row 0: must be between 2.5 and 4.5", id="out-of-range"
    ),
    pytest.param(
        _raw(_columns_json(wine_type="rose")), "input 'wine_type' row 0: must be 'red' or 'white'", id="rose"
    ),
    pytest.param(
        _raw(_columns_json(free_sulfur_dioxide=50.0, total_sulfur_dioxide=40.0)),
        "free_sulfur_dioxide (50) must not exceed total_sulfur_dioxide (40)",
        id="cross-field",
    ),
    pytest.param(
        _raw([{"name": "features", "datatype": "FP64", "shape": [1, 12], "data": [*EXAMPLE_ROW[:11], 2]}]),
        "column 11 (wine_type): wine_type must be 0 (red) or 1 (white)",
        id="matrix-wine-type",
    ),
    pytest.param(
        _raw(_columns_json(), outputs=[{"name": "colour"}]), "unknown output 'colour'", id="unknown-output"
    ),
    pytest.param(_raw([]), "'inputs' must be a non-empty list", id="no-inputs"),
    pytest.param(
        _raw([*_columns_json()[:10], {**_columns_json()[10], "parameters": ["binary"]}, _columns_json()[11]]),
        "input 'alcohol': 'parameters' must be an object",
        id="parameters-not-an-object",
    ),
    pytest.param(
        _raw(_columns_json(), outputs=[{"name": "score", "parameters": "binary"}]),
        "outputs[0]: 'parameters' must be an object",
        id="output-parameters-not-an-object",
    ),
    pytest.param(
        _raw([*_columns_json()[:10], {**_columns_json()[10], "data": [True]}, _columns_json()[11]]),
        "input 'alcohol' row 0: must be a number, got True",
        id="boolean-number",
    ),
    pytest.param(
        _raw([*_columns_json()[:10], {**_columns_json()[10], "data": [[[99.0]]]}, _columns_json()[11]]),
        "input 'alcohol' row 0: must be between 5 and 20 % vol, got 99",
        id="nested-data-flattened",
    ),
    pytest.param(b"{not json", "not valid JSON", id="not-json"),
    pytest.param(
        _raw([*_columns_json(), {"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["x"]}]),
        "unknown inputs ['colour']",
        id="unknown-input",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_requests_name_the_input_and_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_infer(body)
    assert caught.value.status == 400
    assert message in caught.value.message
    assert orjson.loads(caught.value.body()) == {"error": caught.value.message}


def test_binary_byte_counts_must_match_the_header() -> None:
    body, header = encoded([matrix_input(np.array([EXAMPLE_ROW]), binary=True, datatype="FP64")])
    assert header is not None

    with pytest.raises(ProtocolError, match="binary_data_size 96 exceeds the 90 bytes"):
        parse_infer(body[:-6], header)
    with pytest.raises(ProtocolError, match="4 bytes of binary data belong to no input"):
        parse_infer(body + b"\0" * 4, header)
    with pytest.raises(ProtocolError, match="does not fit a body"):
        parse_infer(body, str(len(body) + 1))
    with pytest.raises(ProtocolError, match="must be an integer"):
        parse_infer(body, "twelve")


def test_metadata_lists_both_layouts() -> None:
    meta = model_metadata("xgboost", "v3", "winemeup-onnx")

    assert [i["name"] for i in meta["inputs"]] == SCHEMA.names
    assert {o["name"] for o in meta["outputs"]} == {"score", "quality"}
    assert meta["parameters"]["alternative_input"]["shape"] == [-1, 12]


def _general_rows(body: bytes) -> np.ndarray:
    """The rows as the general decoder (every layout, every datatype) makes them."""
    from services.router import oip

    tensors = oip._tensors(orjson.loads(body)["inputs"], b"")
    rows = oip._columns(tensors)
    oip._check_values(rows, matrix=False)
    return rows


def test_one_wine_fast_path_agrees_with_the_general_decoder() -> None:
    """Single JSON rows (the common request) take a shortcut: same rows, same errors."""
    rng = np.random.default_rng(21)
    checked = 0
    for _ in range(1000):
        wine: dict[str, Any] = {
            f.name: (
                str(rng.choice(["red", "white", "rose"]))
                if f.kind == "category"
                else float(rng.uniform(f.minimum - 0.05 * (f.maximum - f.minimum), f.maximum * 1.02))
            )
            for f in SCHEMA.features
        }
        if rng.random() < 0.2:
            wine["alcohol"] = int(rng.integers(7, 16))  # integers are numbers too
        body = _raw(_columns_json(**wine))
        try:
            want = _general_rows(body)
        except ProtocolError as e:
            expected = e.message
        else:
            np.testing.assert_array_equal(parse_infer(body).rows, want)
            checked += 1
            continue
        with pytest.raises(ProtocolError) as caught:
            parse_infer(body)
        assert caught.value.message == expected
    assert checked > 100, checked  # enough valid wines reached the shortcut


def test_one_binary_row_fast_path_agrees_with_the_general_decoder() -> None:
    """One FP64 ``features`` row as binary data takes a shortcut: same rows, same errors."""
    from services.router import oip

    rng = np.random.default_rng(22)
    lows = np.array([f.minimum for f in SCHEMA.features])
    highs = np.array([f.maximum for f in SCHEMA.features])
    checked = 0
    for _ in range(1000):
        row = rng.uniform(lows - 0.03 * (highs - lows), highs + 0.03 * (highs - lows))
        row[SCHEMA.names.index("wine_type")] = rng.choice([0.0, 1.0, 0.5, 2.0], p=[0.45, 0.45, 0.05, 0.05])
        if rng.random() < 0.02:
            row[3] = np.nan
        blob = row.astype("<f8").tobytes()
        head = orjson.dumps(
            {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 12],
                         "parameters": {"binary_data_size": len(blob)}}]}
        )  # fmt: skip
        try:
            want = oip._matrix(oip._tensors(orjson.loads(head)["inputs"], blob))
            oip._check_values(want, matrix=True)
        except ProtocolError as e:
            expected = e.message
        else:
            np.testing.assert_array_equal(parse_infer(head + blob, str(len(head))).rows, want)
            checked += 1
            continue
        with pytest.raises(ProtocolError) as caught:
            parse_infer(head + blob, str(len(head)))
        assert caught.value.message == expected
    assert checked > 100, checked
