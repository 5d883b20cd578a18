"""The real fast run (the session's shared ``model_store`` fixture: ``train --fast`` on the UCI data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import INSPECT_STORE, run_module

from training.data import SHA256, dataset_sha256
from training.evaluation import PAPER_SVM
from training.models import EVALUATED_MODELS
from winemeup.runtimes import FRAMEWORK_OF_MODEL, MODEL_NAMES

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
    if not (reports / "leaderboard.json").is_file():
        pytest.skip(f"no reports beside the reused model store {model_store}")
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
