"""The real fast run (the session's shared ``model_store`` fixture: ``train --fast`` on the UCI data)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from training_helpers import INSPECT_STORE, run_module

from tests.support.binaries import require_path
from training.data import SHA256, dataset_sha256, load_wine_data
from training.evaluation import PAPER_SVM, holdout_split
from training.models import EVALUATED_MODELS
from winemeup.insight import Intervals, read_drift_reference, read_intervals
from winemeup.runtimes import FRAMEWORK_OF_MODEL, MODEL_NAMES
from winemeup.runtimes.store import read_entry

pytestmark = pytest.mark.slow


def test_fast_run_on_real_data(model_store: Path, data_dir: Path) -> None:
    inspected = run_module(["-c", INSPECT_STORE, str(model_store), str(data_dir), "0.2", "42"])
    assert inspected.returncode == 0, inspected.stderr[-3000:]
    models = json.loads(inspected.stdout.strip().splitlines()[-1])
    for name in MODEL_NAMES:
        labels, meta = models[name]["labels"], models[name]["metadata"]
        assert labels["framework"] == FRAMEWORK_OF_MODEL[name]
        assert labels["dataset"] == dataset_sha256(SHA256)[:12]
        assert meta["data"]["sha256"] == dict(SHA256)
        assert meta["data"]["rows"] == {"red": 1599, "white": 4898}
        assert meta["data"]["unique_rows"] == {"red": 1359, "white": 3961}
        for metric in ("rmse", "mae", "acc_0_5"):
            assert meta["metrics"]["test"]["overall"][metric] == pytest.approx(
                models[name]["test"]["overall"][metric], abs=1e-6
            )
        # Every family is a real model: well ahead of always answering the mean (RMSE ~0.87).
        assert meta["metrics"]["test"]["overall"]["rmse"] < 0.78

    reports = model_store.parent / "reports"
    require_path(reports / "leaderboard.json", f"no reports beside the reused model store {model_store}")
    board = json.loads((reports / "leaderboard.json").read_text())
    assert [m["name"] for m in board["models"]] and {m["name"] for m in board["models"]} == set(
        EVALUATED_MODELS
    )
    # Like for like (paper-style protocol), the best model beats the paper's SVM on MAD and
    # accuracy at T=0.5 for both wine types, even in fast mode.
    best = next(m for m in board["models"] if m["name"] == board["best_model"])
    for wine_type, ref in PAPER_SVM.items():
        assert best["metrics"]["paper_cv"][wine_type]["mae"] < ref["mae"]
        assert best["metrics"]["paper_cv"][wine_type]["acc_0_5"] > ref["acc_0_5"]


def test_fast_run_stores_intervals_that_cover_the_held_out_test(
    model_store: Path, data_dir: Path, reference_scorer: Callable[..., dict]
) -> None:
    data = load_wine_data(data_dir, verify=False)
    _, test = holdout_split(data.strata(), data.groups(), 0.2, 42)
    scores = reference_scorer(model_store, data.X[test].tolist())
    is_red = data.is_red[test]
    y = data.y[test]
    for name in MODEL_NAMES:
        entry = read_entry(model_store, name)
        intervals = read_intervals(entry)
        assert intervals.levels == (0.8, 0.9)
        reference = read_drift_reference(entry)
        assert set(reference.by_type) == {"red", "white"}
        assert sum(reference.rows.values()) == len(data) - test.size
        pred = np.asarray(scores[name])
        for level in intervals.levels:
            low, high = intervals.interval(pred, data.wine_types[test], level)
            inside = (y >= low) & (y <= high)
            # Both types pooled (1,300 rows, ±1.1 points of sampling noise at 80 %) near
            # nominal; per type looser (321 red rows: ±2.2 points at one standard deviation).
            assert abs(inside.mean() - level) < 0.03, (name, level, inside.mean())
            for mask in (is_red, ~is_red):
                assert abs(inside[mask].mean() - level) < 0.05, (name, level, inside[mask].mean())


def test_fast_run_leaderboard_holds_ensembles_and_interval_coverage(model_store: Path) -> None:
    reports = model_store.parent / "reports"
    require_path(reports / "leaderboard.json", f"no reports beside the reused model store {model_store}")
    board = json.loads((reports / "leaderboard.json").read_text())
    ensembles = board["ensembles"]
    assert ensembles["blends"] and ensembles["best"] in {b["name"] for b in ensembles["blends"]}
    for blend in ensembles["blends"]:
        assert set(blend["members"]) <= set(MODEL_NAMES) and min(blend["members"].values()) > 0
        assert sum(blend["members"].values()) == pytest.approx(1.0)
        assert set(blend["metrics"]) == {"cv", "test"}
    best = next(b for b in ensembles["blends"] if b["name"] == ensembles["best"])
    blend_intervals = Intervals.from_dict(best["calibration"])
    low, high = blend_intervals.interval([5.5, 6.5], ["red", "white"], 0.9)
    assert np.all(high - low > 1.0)
    declare = board["declare_ensemble"]
    assert set(declare) == {"name", "members", "on_member_down"}
    assert declare["on_member_down"] in ("fail", "renormalize")
    assert ensembles["goal"]["statement"].startswith(("Goal met", "Goal NOT met"))
    for model in board["models"]:
        if model["saved"]:
            for wine_type in ("red", "white"):
                figures = model["intervals"]["held_out_test"][wine_type]
                assert set(figures["absolute"]) == set(figures["normalised"]) == {"0.8", "0.9"}
    markdown = (reports / "leaderboard.md").read_text()
    assert "## Ensembles (grouped protocol)" in markdown
    assert "## Prediction intervals (split-conformal, grouped held-out test)" in markdown
