"""Reports of a run: leaderboard.json/.md/.png with every model, both protocols and the paper row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.evaluation import PAPER_SVM
from training.models import EVALUATED_MODELS, UNTUNED_LIGHTGBM
from training.pipeline import TrainingRun, model_labels, model_metadata, run_training, select_models
from training.reports import leaderboard, render_markdown, rewrite_from_json, write_reports
from training.settings import TrainingSettings
from winemeup.schema import SCHEMA, SCHEMA_VERSION


@pytest.fixture(scope="module")
def small_run(wine_data) -> TrainingRun:
    settings = TrainingSettings(fast=True, trials=2, seed=11, cv_folds=3)
    return run_training(wine_data.sample(per_type=140, seed=2), settings, progress=False)


def test_select_models() -> None:
    assert select_models([]) == list(EVALUATED_MODELS)
    assert select_models(["svr", "lightgbm"]) == ["lightgbm", UNTUNED_LIGHTGBM, "svr"]
    assert select_models(["svr"]) == ["svr"]
    with pytest.raises(ValueError, match="unknown model"):
        select_models(["knn"])


def test_reports_hold_all_models_both_protocols_and_the_paper(small_run: TrainingRun, tmp_path: Path) -> None:
    paths = write_reports(small_run, tmp_path / "reports")
    board = json.loads(paths["leaderboard.json"].read_text())  # strict JSON: no NaN
    assert [m["name"] for m in board["models"]] != []
    assert {m["name"] for m in board["models"]} == set(EVALUATED_MODELS)
    assert {m["name"] for m in board["models"] if m["saved"]} == set(EVALUATED_MODELS) - {UNTUNED_LIGHTGBM}
    assert set(board["protocols"]) == {"grouped", "paper"}
    assert "grouped by the full feature+type row" in board["protocols"]["grouped"]
    assert board["paper"]["red"] == PAPER_SVM["red"] and board["paper"]["white"] == PAPER_SVM["white"]
    rmses = [m["metrics"]["cv"]["overall"]["rmse"] for m in board["models"]]
    assert rmses == sorted(rmses)
    for m in board["models"]:
        assert set(m["metrics"]) == {"cv", "test", "paper_cv"}
        for figures in m["metrics"].values():
            assert set(figures) == {"overall", "red", "white"}
            assert 0 < figures["red"]["mae"] < 2 and 0 <= figures["white"]["acc_0_5"] <= 1
        assert m["seconds"]["total"] >= m["seconds"]["final_fit"] > 0
    assert board["cpu_seconds"] >= sum(m["seconds"]["cpu"] for m in board["models"]) - 0.5
    assert board["seconds"] >= sum(m["seconds"]["total"] for m in board["models"]) - 0.5
    assert board["best_model"] == next(m["name"] for m in board["models"] if m["saved"])
    assert set(board["checks"]["best_beats_paper_svm"]) == {"paper", "grouped_test"}
    assert set(board["checks"]["tuned_lightgbm_not_worse"]) == {"cv", "test", "paper_cv"}

    markdown = paths["leaderboard.md"].read_text()
    assert "Cortez et al. 2009, SVM* | 0.460 | 62.4% | 89.0% | 0.450 | 64.6% | 86.8%" in markdown
    assert "## Grouped protocol: held-out test split" in markdown
    assert "## Paper-style protocol, per wine type, beside the paper" in markdown
    for name in EVALUATED_MODELS:
        assert f"| {name} |" in markdown
    png = paths["leaderboard.png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_markdown_states_target_outcomes_honestly(small_run: TrainingRun) -> None:
    board = leaderboard(small_run)
    board["checks"]["tuned_lightgbm_not_worse"]["test"] = False
    board["checks"]["best_beats_paper_svm"]["paper"]["red"]["mae"] = False
    text = render_markdown(board)
    assert "held-out test: WORSE" in text
    assert "red: MAD does NOT beat the paper" in text


def test_model_metadata_is_plain_json(small_run: TrainingRun) -> None:
    result = small_run.result("lightgbm")
    meta = model_metadata(result, small_run)
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta
    assert meta["feature_order"] == SCHEMA.names
    assert meta["feature_schema_version"] == SCHEMA_VERSION
    assert meta["metrics"]["cv"]["overall"]["rmse"] == pytest.approx(
        result.cv.metrics["overall"]["rmse"], abs=1e-6
    )
    assert meta["tuning"]["trials"] == 2 and meta["params"]["num_leaves"] >= 8
    labels = model_labels(small_run)
    assert all(isinstance(v, str) and len(v) <= 63 for v in labels.values())
    assert labels["dataset"] == small_run.data.dataset_sha256[:12]


def test_reports_can_be_rendered_again_from_the_json(small_run: TrainingRun, tmp_path: Path) -> None:
    first = write_reports(small_run, tmp_path / "a")
    again = rewrite_from_json(first["leaderboard.json"], tmp_path / "b")
    assert again["leaderboard.md"].read_text() == first["leaderboard.md"].read_text()
    assert again["leaderboard.json"].read_text() == first["leaderboard.json"].read_text()
    assert again["leaderboard.png"].stat().st_size > 20_000
