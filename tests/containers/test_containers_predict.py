"""Every model predicts through the router container: on /v1, and on /v2 (the Open Inference
Protocol) with tritonclient, the way a user's client calls it. Both answer the same score."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.containers.harness import PlayedRelease
from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA

pytestmark = [pytest.mark.containers, pytest.mark.slow]

WINES = [
    SCHEMA.example(),
    {**SCHEMA.example(), "alcohol": 12.8, "wine_type": "white", "residual_sugar": 6.0},
]


def test_every_model_predicts_on_v1_and_v2(
    release: PlayedRelease, router: httpx.Client, router_url: str, api_key: str, models: list[str]
) -> None:
    assert len(models) == 7, models
    listed = router.get("/v1/models")
    assert listed.status_code == 200, listed.text
    client = triton.InferenceServerClient(router_url.removeprefix("http://"))
    try:
        scores: dict[str, list[float]] = {}
        for model in models:
            v1 = []
            for wine in WINES:
                r = router.post("/v1/predict", json={"features": wine, "model": model})
                assert r.status_code == 200, f"{model}: {r.status_code} {r.text}"
                body = r.json()
                assert body["model"] == model and QUALITY_MIN <= body["score"] <= QUALITY_MAX, body
                v1.append(body["score"])
            scores[model] = v1

            rows = np.array(
                [[w[n] if n != "wine_type" else float(w[n] == "white") for n in SCHEMA.names] for w in WINES],
                dtype=np.float64,
            )
            tensor = triton.InferInput("features", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=True)
            assert client.is_model_ready(model, headers={"X-API-Key": api_key}), model
            result = client.infer(model, [tensor], headers={"X-API-Key": api_key})
            v2 = result.as_numpy("score")
            assert v2 is not None, f"{model}: no `score` output in {result.get_response()}"
            np.testing.assert_allclose(v2.reshape(-1), v1, rtol=1e-6, err_msg=model)
    finally:
        client.close()
    # Seven models, seven runner containers: they do not all answer the same.
    assert len({round(s[0], 6) for s in scores.values()}) > 1, scores
