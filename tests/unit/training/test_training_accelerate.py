"""Training's export of the accelerated path refuses a converter that gets the model wrong.

``export_accelerated`` converts a fitted model, writes the artifact into the model's version
directory and checks parity through the serving code. Here the real LightGBM converter is
replaced by one whose model is off by 2e-4 (twice the pinned 1e-4 tolerance) or by a whole grade, or
that fails: the export reports a failed parity, ``parity.json`` records it, and the runtime
serves the framework, saying why.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import training.accelerate
from tests.support.model_store import copy_model
from training.accelerate import export_accelerated
from training.data import load_wine_data
from winemeup.runtimes import load_framework, load_runtime, read_entry
from winemeup.runtimes.accelerated import ARTIFACT_DIR, ONNX_FILE, REPORT_FILE

pytestmark = pytest.mark.slow

MODEL = "lightgbm"


def shifted(model_bytes: bytes, delta: float) -> bytes:
    """The ONNX model with ``delta`` added to its output: a converter that is slightly wrong."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    output = graph.output[0]
    raw = output.name + "_unshifted"
    for node in graph.node:
        node.output[:] = [raw if o == output.name else o for o in node.output]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(output.type.tensor_type.elem_type)
    graph.initializer.append(numpy_helper.from_array(np.asarray([delta], dtype=dtype), "injected_error"))
    graph.node.append(helper.make_node("Add", [raw, "injected_error"], [output.name]))
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def wine_rows(data_dir: Path) -> np.ndarray:
    return np.ascontiguousarray(load_wine_data(data_dir, "", timeout=1.0, verify=True).X, dtype=np.float64)


@pytest.fixture
def fresh_entry(model_store: Path, tmp_path: Path) -> Any:
    """A private copy of the model without its accelerated artifact, as training has it."""
    home = copy_model(model_store, MODEL, tmp_path / "store")
    entry = read_entry(home, MODEL)
    shutil.rmtree(entry.path / ARTIFACT_DIR)
    return entry


def _export(entry: Any, wine_rows: np.ndarray) -> Any:
    runtime = load_framework(entry, MODEL)
    return export_accelerated(entry, MODEL, runtime.model, wine_rows, runtime.predict)


def test_the_real_converter_passes(fresh_entry: Any, wine_rows: np.ndarray) -> None:
    report = _export(fresh_entry, wine_rows)
    assert report.passed and report.rows == 6497 and report.grade_flips == 0, report
    assert load_runtime(MODEL, store=fresh_entry.path.parents[2]).info.serving_path == "onnx"


@pytest.mark.parametrize("delta", [2e-4, 1.0], ids=["2e-4", "a grade"])
def test_a_converter_off_by_more_than_the_tolerance_is_refused(
    fresh_entry: Any, wine_rows: np.ndarray, monkeypatch: pytest.MonkeyPatch, delta: float
) -> None:
    real: Callable[..., tuple[bytes, str]] = training.accelerate.convert

    def wrong(name: str, estimator: Any, scratch: Path) -> tuple[bytes, str]:
        model_bytes, converter = real(name, estimator, scratch)
        return shifted(model_bytes, delta), converter + " (off by design)"

    monkeypatch.setattr(training.accelerate, "convert", wrong)
    report = _export(fresh_entry, wine_rows)

    assert not report.passed
    assert report.max_abs_diff == pytest.approx(delta, rel=1e-3)
    recorded = json.loads((fresh_entry.path / ARTIFACT_DIR / REPORT_FILE).read_text())
    assert recorded["parity"]["passed"] is False
    runtime = load_runtime(MODEL, store=fresh_entry.path.parents[2])
    assert runtime.info.serving_path == "framework"
    assert "fails parity" in runtime.info.serving["reason"]
    np.testing.assert_array_equal(
        runtime.predict(wine_rows[:200]), load_framework(fresh_entry, MODEL).predict(wine_rows[:200])
    )


def test_a_converter_that_fails_leaves_the_framework_serving(
    fresh_entry: Any, wine_rows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str, estimator: Any, scratch: Path) -> tuple[bytes, str]:
        raise ValueError("this converter cannot convert")

    monkeypatch.setattr(training.accelerate, "convert", broken)
    report = _export(fresh_entry, wine_rows)

    assert not report.passed
    recorded = json.loads((fresh_entry.path / ARTIFACT_DIR / REPORT_FILE).read_text())
    assert "cannot convert" in recorded["error"] and recorded["parity"]["passed"] is False
    assert not (fresh_entry.path / ARTIFACT_DIR / ONNX_FILE).exists()
    runtime = load_runtime(MODEL, store=fresh_entry.path.parents[2])
    assert runtime.info.serving_path == "framework"
