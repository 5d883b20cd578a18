"""The accelerated (ONNX) path of every model: parity with the framework, and safe fallback.

Parity is checked here independently of the reference training stored: the framework's own
runtime and the ONNX artifact alone (no crossover, no framework to hand a batch to) both
score every row of the real data set, loaded from the CSV files, and must agree within the
pinned tolerance with no grade flipped. An error injected just above the tolerance is
refused, at load and in training's export (a deliberately wrong converter).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.model_store import copy_model
from training.data import load_wine_data
from winemeup.runtimes import (
    MODEL_NAMES,
    AcceleratedUnavailable,
    load_runtime,
    read_entry,
)
from winemeup.runtimes.accelerated import (
    ARTIFACT_DIR,
    ONNX_FILE,
    PARITY_MAX_ABS_DIFF,
    REFERENCE_FILE,
    REPORT_FILE,
    compare,
    crossover_rows,
    load_accelerated,
)

pytestmark = pytest.mark.slow

INJECTED_ERROR = 2e-4
"""Just above the pinned tolerance (1e-4): an artifact this far off must be refused."""


@pytest.fixture(scope="module")
def wine_rows(data_dir: Path) -> np.ndarray:
    data = load_wine_data(data_dir, "", timeout=1.0, verify=True)
    return np.ascontiguousarray(data.X, dtype=np.float64)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_artifact_matches_the_framework_on_the_whole_data_set(
    name: str, model_store: Path, wine_rows: np.ndarray
) -> None:
    served = load_runtime(name, path="onnx", store=model_store)
    framework = load_runtime(name, path="framework", store=model_store)
    # The served runtime hands batches from its crossover on (1,000 rows for catboost) to the
    # framework: the artifact alone, which has no framework, scores the whole data set here.
    onnx = load_accelerated(read_entry(model_store, name), framework.info.framework)
    assert onnx.crossover is None and onnx.framework_runtime() is None

    assert served.info.serving_path == "onnx"
    assert framework.info.serving_path == "framework"
    assert served.info.version == framework.info.version == onnx.info.version
    report = compare(framework.predict(wine_rows), onnx.predict(wine_rows))
    assert report.rows == len(wine_rows) == 6497
    assert report.max_abs_diff <= PARITY_MAX_ABS_DIFF, report
    assert report.grade_flips == 0, report
    # Below the crossover the served runtime is that same artifact.
    np.testing.assert_array_equal(served.predict(wine_rows[:500]), onnx.predict(wine_rows[:500]))
    # What the load-time check measured is reported with the model.
    parity = served.info.serving["parity"]
    assert parity["passed"] is True and parity["rows"] == 6497


def test_the_parity_tolerance_is_pinned() -> None:
    """1e-4 quality points: far below a grade, far above float64 noise (see the module doc)."""
    assert PARITY_MAX_ABS_DIFF == 1e-4
    scores = np.linspace(3.0, 8.0, 1000)
    assert compare(scores, scores + 0.5e-4).passed
    assert not compare(scores, np.where(np.arange(1000) == 7, scores + INJECTED_ERROR, scores)).passed
    assert not compare(scores, np.where(np.arange(1000) == 7, np.nan, scores)).passed
    assert not compare(scores, scores[:-1]).passed


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_recorded_parity_and_timings(name: str, model_store: Path) -> None:
    entry = read_entry(model_store, name)
    report = json.loads((entry.path / ARTIFACT_DIR / REPORT_FILE).read_text())
    assert report["parity"]["passed"] is True
    assert report["parity"]["grade_flips"] == 0
    assert {t["rows"] for t in report["timings"]} >= {1, 1000}
    assert report["converter"]


def test_auto_serves_onnx_when_the_artifact_passes(model_store: Path) -> None:
    runtime = load_runtime("extra_trees", store=model_store)
    assert runtime.info.serving_path == "onnx"
    assert "bentoml" not in type(runtime).__module__


def _copy_model(model_store: Path, name: str, tmp_path: Path) -> Path:
    """A private store holding one model (tests must not write into the shared store)."""
    return copy_model(model_store, name, tmp_path / "store")


def _shift_reference(artifact: Path, where: Any, delta: float) -> None:
    """Move the stored framework scores of ``where`` by ``delta``: the artifact now differs by it."""
    with np.load(artifact / REFERENCE_FILE) as ref:
        rows, scores = ref["rows"], ref["scores"].copy()
    scores[where] += delta
    np.savez_compressed(artifact / REFERENCE_FILE, rows=rows, scores=scores)


def test_an_error_just_below_the_tolerance_still_serves_onnx(model_store: Path, tmp_path: Path) -> None:
    home = _copy_model(model_store, "hist_gradient_boosting", tmp_path)
    _shift_reference(read_entry(home, "hist_gradient_boosting").path / ARTIFACT_DIR, 3, 0.5e-4)
    runtime = load_runtime("hist_gradient_boosting", store=home)
    assert runtime.info.serving_path == "onnx", runtime.info.serving
    assert 0.4e-4 < runtime.info.serving["parity"]["max_abs_diff"] < 0.6e-4


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "unreadable"),
        ("delete", "is missing"),
        ("garbage", "unreadable"),
        ("off_by_a_grade", "fails parity"),
        ("just_above_tolerance", "fails parity"),
    ],
)
def test_a_damaged_artifact_falls_back_to_the_framework(
    damage: str,
    reason: str,
    model_store: Path,
    tmp_path: Path,
    wine_rows: np.ndarray,
) -> None:
    home = _copy_model(model_store, "hist_gradient_boosting", tmp_path)
    artifact = read_entry(home, "hist_gradient_boosting").path / ARTIFACT_DIR
    model_file = artifact / ONNX_FILE
    if damage == "truncate":
        model_file.write_bytes(model_file.read_bytes()[:1000])
    elif damage == "delete":
        model_file.unlink()
    elif damage == "garbage":
        model_file.write_bytes(b"\x00not an onnx model" * 100)
    elif damage == "off_by_a_grade":
        # An artifact whose scores are a whole grade off: what a float32 path near a threshold does.
        _shift_reference(artifact, np.s_[::50], 1.0)
    else:
        # One row 2e-4 off: twice the pinned tolerance, far from a grade; refused all the same.
        _shift_reference(artifact, 3, INJECTED_ERROR)

    runtime = load_runtime("hist_gradient_boosting", store=home)

    assert runtime.info.serving_path == "framework"
    assert reason in runtime.info.serving["reason"]
    # Served, and correctly: the framework answers.
    expected = load_runtime("hist_gradient_boosting", path="framework", store=model_store).predict(
        wine_rows[:300]
    )
    np.testing.assert_array_equal(runtime.predict(wine_rows[:300]), expected)
    with pytest.raises(AcceleratedUnavailable, match=reason):
        load_runtime("hist_gradient_boosting", path="onnx", store=home)


def test_crossover_is_where_the_framework_stays_faster() -> None:
    def timing(rows: int, framework: float, onnx: float) -> dict[str, float]:
        return {"rows": rows, "framework_seconds": framework, "onnx_seconds": onnx}

    assert crossover_rows([timing(1, 2.0, 1.0), timing(1000, 7.0, 10.0)]) == 1000
    assert crossover_rows([timing(1, 2.0, 1.0), timing(100, 1.0, 2.0), timing(1000, 1.0, 9.0)]) == 100
    # Faster at 100 but not at 1,000: no crossover (the largest size decides).
    assert crossover_rows([timing(100, 1.0, 2.0), timing(1000, 3.0, 2.0)]) is None
    # Within the margin is noise, not a crossover.
    assert crossover_rows([timing(1000, 9.0, 10.0)]) is None
    assert crossover_rows([]) is None


def test_size_dispatch_sends_large_batches_to_the_framework(model_store: Path, tmp_path: Path) -> None:
    home = _copy_model(model_store, "catboost", tmp_path)
    artifact = read_entry(home, "catboost").path / ARTIFACT_DIR
    report = json.loads((artifact / REPORT_FILE).read_text())
    report["timings"] = [
        {"rows": 1, "framework_seconds": 2e-4, "onnx_seconds": 2e-5},
        {"rows": 100, "framework_seconds": 5e-4, "onnx_seconds": 2e-3},
    ]
    (artifact / REPORT_FILE).write_text(json.dumps(report))

    runtime = load_runtime("catboost", store=home)

    assert runtime.info.serving["crossover_rows"] == 100
    assert runtime._framework is None  # type: ignore[attr-defined]  # loaded on the first large batch
    calls: list[str] = []
    framework = runtime.framework_runtime()  # type: ignore[attr-defined]
    onnx_predict, framework_predict = runtime._onnx_predict, framework._predict  # type: ignore[attr-defined]
    runtime._onnx_predict = lambda rows: calls.append("onnx") or onnx_predict(rows)  # type: ignore[attr-defined]
    framework._predict = lambda rows: calls.append("framework") or framework_predict(rows)
    with np.load(artifact / REFERENCE_FILE) as ref:
        rows = np.ascontiguousarray(ref["rows"][:150])
    runtime.predict(rows[:99])
    runtime.predict(rows[:100])
    assert calls == ["onnx", "framework"]
