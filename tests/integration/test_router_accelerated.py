"""Which path serves each model, seen from outside: /v1/models, /metrics and the answers.

A router over the session store serves every model from its ONNX artifact. A router over a
store whose artifact was corrupted still answers, from the framework, says so in
``/v1/models`` and counts the fallback in ``/metrics``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from winemeup.runtimes import MODEL_NAMES, load_runtime, read_entry
from winemeup.runtimes.accelerated import ARTIFACT_DIR, ONNX_FILE
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

WINE = {**SCHEMA.example(), "alcohol": 11.7, "wine_type": "white"}


def _models(handle: Any) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{handle.url}/v1/models", headers=handle.headers(), timeout=10).json()
    return {m["name"]: m for m in body["models"]}


def _wait_loaded(handle: Any, names: list[str]) -> None:
    """Inline models load on first use: ask each once."""
    for name in names:
        r = httpx.post(
            f"{handle.url}/v1/predict",
            json={"features": WINE, "model": name},
            headers=handle.headers(),
            timeout=60,
        )
        assert r.status_code == 200, r.text


def test_every_model_is_served_from_its_onnx_artifact(
    model_store: Path, router: Callable[..., Any], metric_reader: Callable[..., float]
) -> None:
    handle = router(model_store=model_store)
    _wait_loaded(handle, list(MODEL_NAMES))

    models = _models(handle)
    metrics = httpx.get(f"{handle.url}/metrics", timeout=10).text
    for name in MODEL_NAMES:
        serving = models[name]["serving"]
        assert serving["path"] == "onnx", (name, serving)
        assert serving["parity"]["passed"] is True and serving["parity"]["grade_flips"] == 0
        assert metric_reader(metrics, "winemeup_router_model_serving_path", model=name, path="onnx") == 1.0
        assert (
            metric_reader(metrics, "winemeup_router_model_serving_path", model=name, path="framework") == 0.0
        )
        assert metric_reader(metrics, "winemeup_router_accelerated_fallbacks_total", model=name) == 0.0


def test_a_corrupt_artifact_is_served_by_the_framework_and_counted(
    model_store: Path, router: Callable[..., Any], metric_reader: Callable[..., float], tmp_path: Path
) -> None:
    entry = read_entry(model_store, "random_forest")
    home = tmp_path / "store"
    target = home / "models" / "random_forest"
    target.mkdir(parents=True)
    shutil.copytree(entry.path, target / entry.version)
    (target / "latest").write_text(entry.version)
    onnx_file = target / entry.version / ARTIFACT_DIR / ONNX_FILE
    onnx_file.write_bytes(onnx_file.read_bytes()[:4096])

    handle = router(model_store=home, models=["random_forest"], default_model="random_forest")
    r = httpx.post(f"{handle.url}/v1/predict", json={"features": WINE}, headers=handle.headers(), timeout=60)

    assert r.status_code == 200, r.text
    want = load_runtime("random_forest", path="framework", store=model_store).predict([SCHEMA.validate(WINE)])
    assert r.json()["score"] == pytest.approx(float(want[0]), abs=1e-12)
    serving = _models(handle)["random_forest"]["serving"]
    assert serving["path"] == "framework"
    assert "unreadable" in serving["reason"]
    metrics = httpx.get(f"{handle.url}/metrics", timeout=10).text
    assert metric_reader(metrics, "winemeup_router_accelerated_fallbacks_total", model="random_forest") == 1.0
    assert (
        metric_reader(metrics, "winemeup_router_model_serving_path", model="random_forest", path="framework")
        == 1.0
    )
    log = Path(handle.process.log_path).read_text()
    assert "served by its framework, not ONNX" in log and "unreadable" in log
