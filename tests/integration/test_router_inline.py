"""The router over real sockets with every model inline and the in-memory cache.

One router process serves the seven models loaded from the session model store; tests
compare its answers with ``load_runtime(name).predict`` run in another process.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.binaries import require_binary
from tests.support.wines import WINES
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA, quality_grade

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()
SWAP_WINE: dict[str, Any] = {**EXAMPLE, "alcohol": 12.34, "wine_type": "white"}
"""Only the hot-swap test sends this one, so nothing has cached it before."""


@pytest.fixture(scope="module")
def inline_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-inline"), model_store, max_body_bytes=200_000, batch_max_rows=50
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture(scope="module")
def client(inline_router: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inline_router.url, headers=inline_router.headers(), timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def expected(model_store: Path, reference_scorer: Callable[..., dict]) -> dict[str, list[float]]:
    return reference_scorer(model_store, [SCHEMA.validate(w) for w in [*WINES, SWAP_WINE]])


def _metrics(client: httpx.Client) -> str:
    return client.get("/metrics").text


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_answers_what_its_runtime_predicts(
    client: httpx.Client, expected: dict[str, list[float]], model: str
) -> None:
    for wine, want in zip(WINES, expected[model][: len(WINES)], strict=True):
        r = client.post("/v1/predict", json={"features": wine, "model": model})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == model
        assert body["score"] == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert body["quality"] == quality_grade(want)
        assert isinstance(body["model_version"], str) and body["model_version"]
    batch = client.post("/v1/predict/batch", json={"instances": WINES, "model": model})
    assert batch.status_code == 200, batch.text
    scores = [p["score"] for p in batch.json()["predictions"]]
    assert scores == pytest.approx(expected[model][: len(WINES)], rel=1e-9, abs=1e-9)


def test_miss_then_hit(client: httpx.Client, metric_reader: Callable[..., float]) -> None:
    wine = {**EXAMPLE, "alcohol": 10.123456}
    before = metric_reader(_metrics(client), "winemeup_router_cache_hits_total")
    first = client.post("/v1/predict", json={"features": wine, "model": "xgboost"}).json()
    second = client.post("/v1/predict", json={"features": wine, "model": "xgboost"}).json()
    assert first["cached"] is False
    assert second["cached"] is True
    assert second["score"] == first["score"]
    assert metric_reader(_metrics(client), "winemeup_router_cache_hits_total") == before + 1


def test_training_headers_are_aliases(client: httpx.Client) -> None:
    wine = {f.header: EXAMPLE[f.name] for f in SCHEMA.features}
    by_header = client.post("/v1/predict", json={"features": wine})
    by_name = client.post("/v1/predict", json={"features": EXAMPLE})
    assert by_header.status_code == 200, by_header.text
    assert by_header.json()["score"] == by_name.json()["score"]


def test_batch_keeps_order_and_marks_cached_rows(client: httpx.Client) -> None:
    fresh = [{**EXAMPLE, "alcohol": 9.0 + i / 100} for i in range(6)]
    client.post("/v1/predict", json={"features": fresh[3], "model": "random_forest"})
    r = client.post("/v1/predict/batch", json={"instances": fresh, "model": "random_forest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "random_forest"
    assert [p["cached"] for p in body["predictions"]] == [False, False, False, True, False, False]
    singles = [
        client.post("/v1/predict", json={"features": w, "model": "random_forest"}).json() for w in fresh
    ]
    assert [p["score"] for p in body["predictions"]] == [s["score"] for s in singles]
    assert all(s["cached"] for s in singles)


def test_hot_swap_never_serves_a_stale_answer(
    inline_router: Any, client: httpx.Client, expected: dict[str, list[float]]
) -> None:
    wine = SWAP_WINE
    admin = inline_router.headers(admin=True)
    try:
        first = client.post("/v1/predict", json={"features": wine}).json()
        assert first["model"] == "lightgbm"
        r = client.put("/v1/models/default", json={"model": "catboost"}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["default"] == "catboost"
        swapped = client.post("/v1/predict", json={"features": wine}).json()
        assert swapped["model"] == "catboost"
        assert swapped["cached"] is False
        assert swapped["score"] == pytest.approx(expected["catboost"][-1], rel=1e-9)
        assert swapped["score"] != first["score"]
        models = client.get("/v1/models").json()
        assert models["default"] == "catboost"
        assert [m["name"] for m in models["models"] if m["default"]] == ["catboost"]
        metrics = _metrics(client)
        assert 'winemeup_router_default_model{model="catboost"} 1.0' in metrics
        assert 'winemeup_router_default_model{model="lightgbm"} 0.0' in metrics
    finally:
        client.put("/v1/models/default", json={"model": "lightgbm"}, headers=admin)
    back = client.post("/v1/predict", json={"features": wine}).json()
    assert back["model"] == "lightgbm"
    assert back["cached"] is True  # lightgbm's own earlier answer, under lightgbm's key
    assert back["score"] == pytest.approx(expected["lightgbm"][-1], rel=1e-9)


def test_auth(inline_router: Any) -> None:
    url = inline_router.url
    body = {"features": EXAMPLE}
    assert httpx.post(f"{url}/v1/predict", json=body).status_code == 401
    assert httpx.post(f"{url}/v1/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert (
        httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    for bearer in (False, True):
        for admin in (False, True):
            headers = inline_router.headers(admin=admin, bearer=bearer)
            assert httpx.post(f"{url}/v1/predict", json=body, headers=headers).status_code == 200
            assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 200
        user = inline_router.headers(bearer=bearer)
        r = httpx.put(f"{url}/v1/models/default", json={"model": "lightgbm"}, headers=user)
        assert r.status_code == 403
        assert r.json()["code"] == "forbidden"
        admin_headers = inline_router.headers(admin=True, bearer=bearer)
        assert (
            httpx.put(
                f"{url}/v1/models/default", json={"model": "lightgbm"}, headers=admin_headers
            ).status_code
            == 200
        )
    assert httpx.put(f"{url}/v1/models/default", json={"model": "lightgbm"}).status_code == 401
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert httpx.get(url + open_path).status_code == 200, open_path


def test_keys_never_reach_the_log(inline_router: Any) -> None:
    log = inline_router.process.log_path.read_text()
    assert inline_router.api_key not in log
    assert inline_router.admin_key not in log


WINE_JSON = orjson.dumps({"features": EXAMPLE})
BAD_INPUTS: list[tuple[str, bytes, str, int, str, str | None]] = [
    # id, body, content type, status, error code, offending field (None: no details)
    ("empty", b"", "application/json", 400, "malformed_request", None),
    ("malformed", b'{"features": {', "application/json", 400, "malformed_request", None),
    ("nan", WINE_JSON.replace(b"3.51", b"NaN"), "application/json", 400, "malformed_request", None),
    ("infinity", WINE_JSON.replace(b"9.4", b"Infinity"), "application/json", 400, "malformed_request", None),
    (
        "string-value",
        WINE_JSON.replace(b"3.51", b'"3.51"'),
        "application/json",
        422,
        "validation_error",
        "features.ph",
    ),
    (
        "unknown-field",
        orjson.dumps({"features": {**EXAMPLE, "colour": 1}}),
        "application/json",
        422,
        "validation_error",
        "features.colour",
    ),
    (
        "missing-field",
        orjson.dumps({"features": {k: v for k, v in EXAMPLE.items() if k != "density"}}),
        "application/json",
        422,
        "validation_error",
        "features.density",
    ),
    (
        "out-of-range",
        orjson.dumps({"features": {**EXAMPLE, "ph": 9}}),
        "application/json",
        422,
        "validation_error",
        "features.ph",
    ),
    ("top-level-array", orjson.dumps([EXAMPLE]), "application/json", 422, "validation_error", "body"),
    ("no-features", orjson.dumps({"wine": EXAMPLE}), "application/json", 422, "validation_error", "wine"),
    (
        "features-not-object",
        orjson.dumps({"features": [1, 2, 3]}),
        "application/json",
        422,
        "validation_error",
        "features",
    ),
    (
        "unknown-model",
        orjson.dumps({"features": EXAMPLE, "model": "gpt"}),
        "application/json",
        404,
        "unknown_model",
        "model",
    ),
    ("wrong-content-type", WINE_JSON, "text/plain", 415, "unsupported_media_type", None),
    ("no-content-type", WINE_JSON, "", 415, "unsupported_media_type", None),
    ("form-content-type", b"a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code", "field"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_a_4xx_naming_the_problem(
    inline_router: Any, body: bytes, ctype: str, status: int, code: str, field: str | None
) -> None:
    headers = {**inline_router.headers()}
    if ctype:
        headers["Content-Type"] = ctype
    r = httpx.post(f"{inline_router.url}/v1/predict", content=body, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["code"] == code
    assert error["error"]
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error
    if code == "malformed_request" and body:
        assert ("NaN" in error["error"]) == (b"NaN" in body)
        assert ("Infinity" in error["error"]) == (b"Infinity" in body)


def test_a_gzip_body_is_415_naming_content_encoding(inline_router: Any) -> None:
    import gzip

    plain = orjson.dumps({"features": EXAMPLE})
    headers = {**inline_router.headers(), "Content-Type": "application/json"}
    r = httpx.post(
        f"{inline_router.url}/v1/predict",
        content=gzip.compress(plain),
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
    assert "Content-Encoding gzip" in r.json()["error"]
    assert r.headers["accept-encoding"] == "identity"
    same = httpx.post(
        f"{inline_router.url}/v1/predict", content=plain, headers={**headers, "Content-Encoding": "identity"}
    )
    assert same.status_code == 200, same.text


def test_oversized_body_is_413(inline_router: Any) -> None:
    big = orjson.dumps({"instances": [EXAMPLE] * 2000})
    assert len(big) > 200_000
    r = httpx.post(
        f"{inline_router.url}/v1/predict/batch",
        content=big,
        headers={**inline_router.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"


def test_batch_errors_are_indexed_and_limited(client: httpx.Client) -> None:
    bad = [EXAMPLE, EXAMPLE, EXAMPLE, {**EXAMPLE, "ph": "acid"}, {**EXAMPLE, "alcohol": None}]
    r = client.post("/v1/predict/batch", json={"instances": bad})
    assert r.status_code == 422
    fields = [d["field"] for d in r.json()["details"]]
    assert fields == ["instances[3].ph", "instances[4].alcohol"]
    too_many = client.post("/v1/predict/batch", json={"instances": [EXAMPLE] * 51})
    assert too_many.status_code == 422
    assert "at most 50" in too_many.text
    assert client.post("/v1/predict/batch", json={"instances": []}).status_code == 422


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").status_code == 404
    r = client.get("/v1/predict")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    # The key is checked before the body: a user key is refused whatever it asks for.
    assert client.put("/v1/models/default", json={"model": "nope"}).status_code == 403


def test_models_listing(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["default"] == "lightgbm"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == set(MODEL_NAMES)
    for m in by_name.values():
        assert m["placement"] == "inline"
        assert m["status"] == "ready"
        assert m["version"]
        assert m["framework"] in ("lightgbm", "xgboost", "catboost", "sklearn")
        assert isinstance(m["metrics"], dict) and m["metrics"], m
    assert by_name["lightgbm"]["default"] is True


def test_readyz_and_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["default_model"] == "lightgbm"


def test_metrics_pass_promtool(client: httpx.Client, tmp_path: Path) -> None:
    client.post("/v1/predict", json={"features": EXAMPLE})
    client.post("/v1/predict", json={"features": {}})
    text = _metrics(client)
    for name in (
        "winemeup_router_requests_total",
        "winemeup_router_request_duration_seconds_bucket",
        "winemeup_router_cache_hits_total",
        "winemeup_router_cache_errors_total",
        "winemeup_router_runner_errors_total",
        "winemeup_router_model_load_seconds",
        "winemeup_router_default_model",
        "winemeup_router_batch_rows_bucket",
    ):
        assert name in text, name
    assert 'route="/v1/predict",status_class="4xx"' in text
    promtool = require_binary("promtool", "apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_openapi_document_and_docs(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    features = doc["components"]["schemas"]["Features"]
    assert features["required"] == SCHEMA.names and features["additionalProperties"] is False
    for f in SCHEMA.measurements:
        assert (features["properties"][f.name]["minimum"], features["properties"][f.name]["maximum"]) == (
            f.minimum,
            f.maximum,
        )
    assert "free_sulfur_dioxide must not exceed total_sulfur_dioxide" in features["description"]
    model = doc["components"]["schemas"]["PredictRequest"]["properties"]["model"]
    assert {"type": "null"} in model["anyOf"]  # "model": null means the default model
    assert doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["type"] == "string"
    predict = doc["paths"]["/v1/predict"]["post"]
    assert predict["summary"] == "Predict the quality of one wine."
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictRequest")
    assert {
        "/v1/predict/batch",
        "/v1/models",
        "/v1/models/default",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(doc["paths"])
    assert doc["paths"]["/v1/models/default"]["put"]["summary"].startswith("Change the default model")
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text
