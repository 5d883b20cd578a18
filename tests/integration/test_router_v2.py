"""The Open Inference Protocol routes of a real router, driven by a real client (tritonclient).

One router serves lightgbm and xgboost inline plus an ensemble of the two; every V2 route is
called the way a user's client calls it: readiness, metadata, infer with binary and JSON
tensor data in both input layouts, requested outputs, versions and errors. The scores must be
the ones ``/v1/predict/batch`` answers (same predictor, same cache keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.waiting import wait_until
from tests.support.wines import WINES
from winemeup.schema import SCHEMA, quality_grade

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()
ENSEMBLE = {"name": "duo", "members": {"lightgbm": 3, "xgboost": 1}, "on_member_down": "fail"}


@pytest.fixture(scope="module")
def v2_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-v2"),
        model_store,
        models=["lightgbm", "xgboost"],
        default_model="lightgbm",
        ensembles=json.dumps([ENSEMBLE]),
        batch_max_rows=50,
    )
    try:
        handle.wait_ready()
        # Every inline model loads in the background: the ensemble is ready once both are.
        wait_until(
            lambda: (
                httpx.get(handle.url + "/v2/models/duo/ready", headers=handle.headers()).status_code == 200
            ),
            60,
            interval=0.2,
            message=lambda: handle.process.log_tail(),
        )
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture(scope="module")
def client(v2_router: Any) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(v2_router.url.removeprefix("http://"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def headers(v2_router: Any) -> dict[str, str]:
    """The key; pass a copy per call: tritonclient adds Inference-Header-Content-Length to it."""
    return v2_router.headers()


@pytest.fixture(scope="module")
def v1_scores(v2_router: Any) -> Callable[[str], list[float]]:
    def scores(model: str) -> list[float]:
        r = httpx.post(
            v2_router.url + "/v1/predict/batch",
            json={"instances": WINES, "model": model},
            headers=v2_router.headers(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return [p["score"] for p in r.json()["predictions"]]

    return scores


def column_inputs(wines: list[dict[str, Any]], binary: bool) -> list[Any]:
    inputs = []
    for f in SCHEMA.features:
        if f.kind == "category":
            array = np.array([str(w[f.name]).encode() for w in wines], dtype=np.object_)
            tensor = triton.InferInput(f.name, [len(wines)], "BYTES")
        else:
            array = np.array([w[f.name] for w in wines], dtype=np.float64)
            tensor = triton.InferInput(f.name, [len(wines)], "FP64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def matrix_input(wines: list[dict[str, Any]], binary: bool) -> Any:
    rows = np.array(
        [[w[n] if n != "wine_type" else float(w[n] == "white") for n in SCHEMA.names] for w in wines]
    )
    tensor = triton.InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def test_server_and_model_readiness(client: triton.InferenceServerClient, headers: dict[str, str]) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("lightgbm", headers=dict(headers))
    assert client.is_model_ready("duo", headers=dict(headers))
    assert not client.is_model_ready("no-such-model", headers=dict(headers))
    meta = client.get_server_metadata(headers=dict(headers))
    assert meta["name"] == "winemeup" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_names_inputs_outputs_and_members(
    client: triton.InferenceServerClient, headers: dict[str, str]
) -> None:
    meta = client.get_model_metadata("lightgbm", headers=dict(headers))
    assert [i["name"] for i in meta["inputs"]] == SCHEMA.names
    # interval_low/high are sent only when asked (parameter "interval" or by name).
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "score": "FP64",
        "quality": "INT32",
        "interval_low": "FP64",
        "interval_high": "FP64",
    }
    assert meta["parameters"]["alternative_input"]["shape"] == [-1, 12]
    version = meta["versions"][0]
    assert client.get_model_metadata("lightgbm", version, headers=dict(headers))["versions"] == [version]
    duo = client.get_model_metadata("duo", headers=dict(headers))
    assert duo["parameters"]["members"] == {"lightgbm": 3, "xgboost": 1}
    assert duo["platform"] == "ensemble"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("layout", ["columns", "matrix"])
def test_infer_answers_what_v1_answers(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    v1_scores: Callable[[str], list[float]],
    binary: bool,
    layout: str,
) -> None:
    inputs = column_inputs(WINES, binary) if layout == "columns" else [matrix_input(WINES, binary)]
    outputs = [
        triton.InferRequestedOutput("score", binary_data=binary),
        triton.InferRequestedOutput("quality", binary_data=binary),
    ]
    for model in ("xgboost", "duo"):
        answer = client.infer(model, inputs, outputs=outputs, headers=dict(headers))
        want = v1_scores(model)
        np.testing.assert_allclose(answer.as_numpy("score"), want, rtol=0, atol=1e-12)
        assert answer.as_numpy("quality").tolist() == [quality_grade(s) for s in want]
        response = answer.get_response()
        assert response["model_name"] == model and response["model_version"]


def test_ensemble_blends_its_members(
    client: triton.InferenceServerClient, headers: dict[str, str], v1_scores: Callable[[str], list[float]]
) -> None:
    blend = client.infer("duo", column_inputs(WINES, True), headers=dict(headers)).as_numpy("score")
    want = (3 * np.array(v1_scores("lightgbm")) + np.array(v1_scores("xgboost"))) / 4
    np.testing.assert_allclose(blend, want, rtol=0, atol=1e-9)


def test_requested_outputs_and_versions(
    client: triton.InferenceServerClient, headers: dict[str, str]
) -> None:
    only = client.infer(
        "lightgbm",
        column_inputs(WINES, False),
        outputs=[triton.InferRequestedOutput("quality")],
        headers=dict(headers),
    )
    assert only.as_numpy("score") is None
    assert only.as_numpy("quality").shape == (3,)
    version = only.get_response()["model_version"]
    pinned = client.infer(
        "lightgbm", column_inputs(WINES, True), model_version=version, headers=dict(headers)
    )
    assert pinned.get_response()["model_version"] == version
    with pytest.raises(InferenceServerException) as e:
        client.infer(
            "lightgbm", column_inputs(WINES, True), model_version="not-" + version, headers=dict(headers)
        )
    assert e.value.status() == "404" and version in e.value.message()
    assert version in str(e.value)  # the client prints the message: `error` is a string


def _error(call: Callable[[], Any]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        call()
    str(e.value)  # tritonclient fails to print an error whose `error` is not a string
    return e.value


def test_errors_name_the_input_and_row(client: triton.InferenceServerClient, headers: dict[str, str]) -> None:
    bad = [*WINES, {**EXAMPLE, "ph": 9.0}]
    e = _error(lambda: client.infer("lightgbm", column_inputs(bad, True), headers=dict(headers)))
    assert e.status() == "400" and "input 'ph' row 3" in e.message()

    missing = [t for t in column_inputs(WINES, False) if t.name() != "alcohol"]
    e = _error(lambda: client.infer("lightgbm", missing, headers=dict(headers)))
    assert e.status() == "400" and "alcohol" in e.message()

    e = _error(
        lambda: client.infer(
            "lightgbm",
            column_inputs(WINES, True),
            outputs=[triton.InferRequestedOutput("proba")],
            headers=dict(headers),
        )
    )
    assert e.status() == "400" and "unknown output 'proba'" in e.message()

    e = _error(lambda: client.infer("nope", column_inputs(WINES, True), headers=dict(headers)))
    assert e.status() == "404" and "unknown model 'nope'" in e.message()

    e = _error(lambda: client.infer("lightgbm", column_inputs(WINES, True)))
    assert e.status() == "401"


def test_binary_byte_counts_that_do_not_match_are_400(v2_router: Any) -> None:
    body, json_size = triton.InferenceServerClient.generate_request_body([matrix_input(WINES, True)])
    r = httpx.post(
        v2_router.url + "/v2/models/lightgbm/infer",
        content=body[:-8],
        headers={**v2_router.headers(), "Inference-Header-Content-Length": str(json_size)},
    )
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["error"], str) and "binary_data_size" in r.json()["error"]


def test_v2_counts_in_the_same_metrics(v2_router: Any, client: triton.InferenceServerClient) -> None:
    client.infer("lightgbm", column_inputs(WINES, True), headers=v2_router.headers())
    text = httpx.get(v2_router.url + "/metrics").text
    assert 'route="/v2/models/{name}/infer",status_class="2xx"' in text
    assert 'winemeup_router_request_duration_seconds_count{model="lightgbm",placement="inline"}' in text


def test_intervals_are_extra_outputs_when_asked(
    v2_router: Any, client: triton.InferenceServerClient, headers: dict[str, str]
) -> None:
    """The same bounds as /v1's ``"interval"``, asked by parameter or by naming the outputs."""
    by_parameter = client.infer(
        "lightgbm", column_inputs(WINES, True), parameters={"interval": 0.8}, headers=dict(headers)
    )
    low, high = by_parameter.as_numpy("interval_low"), by_parameter.as_numpy("interval_high")
    scores = by_parameter.as_numpy("score")
    assert low.shape == high.shape == (3,) and np.all(low < scores) and np.all(scores < high)
    v1 = httpx.post(
        v2_router.url + "/v1/predict/batch",
        json={"instances": WINES, "model": "lightgbm", "interval": 0.8},
        headers=v2_router.headers(),
        timeout=30,
    ).json()["predictions"]
    assert low.tolist() == pytest.approx([p["interval"]["low"] for p in v1], abs=1e-12)
    assert high.tolist() == pytest.approx([p["interval"]["high"] for p in v1], abs=1e-12)

    named = client.infer(
        "lightgbm",
        [matrix_input(WINES, False)],
        outputs=[triton.InferRequestedOutput("interval_high", binary_data=False)],
        headers=dict(headers),
    )
    assert named.as_numpy("score") is None
    wider = named.as_numpy("interval_high")  # 0.9 when no level is given
    assert np.all(wider >= high)
    # Without the parameter nothing extra is computed or sent.
    plain = client.infer("lightgbm", column_inputs(WINES, True), headers=dict(headers))
    assert plain.as_numpy("interval_low") is None

    error = _error(
        lambda: client.infer(
            "lightgbm", column_inputs(WINES, True), parameters={"interval": 0.5}, headers=dict(headers)
        )
    )
    assert error.status() == "422" and "0.5" in error.message()
