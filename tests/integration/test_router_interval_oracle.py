"""Prediction intervals against an oracle: the stored calibration, applied by hand.

For real red and white wines, the bounds a router serves on ``/v1/predict``,
``/v1/predict/batch`` and ``/v2/.../infer`` (tritonclient) must equal exactly what this
module computes from the ``intervals.json`` of the model version named in the answer: the
served score ± the level's quantile × the scale of the score's bin, for the row's wine type
and the method selected for it, clipped to 0-10. The same holds under a 50/50 split, where
each row's bounds come from the version of the model that served it.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.wines import read_wines
from winemeup.runtimes.store import read_entry
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

LEVELS = (0.8, 0.9)
SPLIT = {"lightgbm": {"lightgbm": 50, "xgboost": 50}}


def oracle(
    model_store: Path, model: str, version: str, score: float, wine_type: str, level: float
) -> tuple[float, float]:
    """The interval of one served score, read off the version's calibration file by hand."""
    document = json.loads(
        (read_entry(model_store, model, version).path / "insight" / "intervals.json").read_text()
    )
    by_type = document["by_type"][wine_type]
    calibration = by_type[by_type["selected"]]
    scale = calibration["scales"][bisect.bisect_right(calibration["score_edges"], score)]
    half = calibration["quantiles"][f"{level:g}"] * scale
    return max(0.0, score - half), min(10.0, score + half)


@pytest.fixture(scope="module")
def wines(data_dir: Path) -> list[dict[str, Any]]:
    """Real wines of both types: their calibrations differ (red and white have their own)."""
    return read_wines(data_dir, "red")[:12] + read_wines(data_dir, "white")[:12]


@pytest.fixture(scope="module")
def interval_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-interval-oracle"),
        model_store,
        models=["lightgbm", "xgboost"],
        default_model="lightgbm",
        preload_inline_models=True,
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


def _served(router: Any, wines: list[dict[str, Any]], level: float) -> dict[str, list[dict[str, Any]]]:
    """Each wine's model, version, score and bounds as /v1 single, /v1 batch and /v2 serve them."""
    headers = router.headers()
    with httpx.Client(base_url=router.url, headers=headers, timeout=30) as client:
        single = []
        for wine in wines:
            r = client.post("/v1/predict", json={"features": wine, "interval": level})
            assert r.status_code == 200, r.text
            body = r.json()
            single.append({"model": body["model"], "version": body["model_version"], "score": body["score"],
                           "low": body["interval"]["low"], "high": body["interval"]["high"]})  # fmt: skip
        r = client.post("/v1/predict/batch", json={"instances": wines, "interval": level})
        assert r.status_code == 200, r.text
        body = r.json()
        batch = [
            {"model": p.get("model", body["model"]), "version": p.get("model_version", body["model_version"]),
             "score": p["score"], "low": p["interval"]["low"], "high": p["interval"]["high"]}
            for p in body["predictions"]
        ]  # fmt: skip
    rows = np.array([SCHEMA.validate(w) for w in wines])
    wine_type = SCHEMA.names.index("wine_type")
    rows[:, wine_type] = 1.0 - rows[:, wine_type]  # the protocol's 0 = red, 1 = white
    tensor = triton.InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=True)
    client = triton.InferenceServerClient(router.url.removeprefix("http://"))
    try:
        answer = client.infer("lightgbm", [tensor], parameters={"interval": level}, headers=dict(headers))
    finally:
        client.close()
    # V2 names one version per answer; under a split each row's model is the sticky one /v1 chose.
    v2 = [
        {"model": b["model"], "version": b["version"], "score": float(s), "low": float(lo), "high": float(hi)}
        for b, s, lo, hi in zip(
            batch,
            answer.as_numpy("score"),
            answer.as_numpy("interval_low"),
            answer.as_numpy("interval_high"),
            strict=True,
        )
    ]
    return {"/v1/predict": single, "/v1/predict/batch": batch, "/v2 infer": v2}


def _check(
    model_store: Path, wines: list[dict[str, Any]], served: dict[str, list[dict[str, Any]]], level: float
) -> set[str]:
    models = set()
    batch = served["/v1/predict/batch"]
    for route, answers in served.items():
        for wine, answer, reference in zip(wines, answers, batch, strict=True):
            assert answer["score"] == reference["score"], (route, wine["wine_type"], answer, reference)
            want = oracle(
                model_store, answer["model"], answer["version"], answer["score"], wine["wine_type"], level
            )
            assert (answer["low"], answer["high"]) == want, (route, wine["wine_type"], answer)
            models.add(answer["model"])
    return models


@pytest.mark.parametrize("level", LEVELS)
def test_served_bounds_equal_the_stored_calibration(
    interval_router: Any, model_store: Path, wines: list[dict[str, Any]], level: float
) -> None:
    assert _check(model_store, wines, _served(interval_router, wines, level), level) == {"lightgbm"}


def test_under_a_50_50_split_each_row_has_its_serving_models_bounds(
    interval_router: Any, model_store: Path, wines: list[dict[str, Any]]
) -> None:
    put = httpx.put(
        interval_router.url + "/v1/traffic",
        json={"splits": SPLIT},
        headers=interval_router.headers(admin=True),
        timeout=10,
    )
    assert put.status_code == 200, put.text
    try:
        served = _served(interval_router, wines, 0.9)
        assert _check(model_store, wines, served, 0.9) == {"lightgbm", "xgboost"}
        # Sticky: every route served each wine with the same model.
        assert len({tuple(a["model"] for a in answers) for answers in served.values()}) == 1
    finally:
        httpx.put(
            interval_router.url + "/v1/traffic",
            json={"splits": {}},
            headers=interval_router.headers(admin=True),
            timeout=10,
        )
