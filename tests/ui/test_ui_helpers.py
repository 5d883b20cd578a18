"""Pure helpers of the app: leaderboard ranking, form formats, chunking and the result CSV."""

from __future__ import annotations

import csv
import io

import pytest

from ui.batch import BatchOutcome, ScoredRow, chunked, results_csv
from ui.client import ModelEntry, parse_models
from ui.inputs import input_decimals, input_help, input_label, input_step
from ui.leaderboard import build_leaderboard, choose_rank_metric, flatten_metrics, metric_direction
from ui.wine_csv import parse_wine_csv
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.ui


def entry(name: str, rmse: float, r2: float, status: str = "ready") -> ModelEntry:
    scope = {"rmse": rmse, "rmse_std": 0.01, "r2": r2, "acc_0_5": 0.6, "n": 1000}
    return ModelEntry(
        name,
        "sklearn",
        "v1",
        "inline",
        status,
        {"test": {"overall": scope, "red": scope}, "cv": {"overall": scope}},
    )


def test_flatten_and_directions() -> None:
    flat = flatten_metrics({"test": {"overall": {"rmse": 0.6, "n": 10, "note": "x", "ok": True}}})
    assert flat == {"test.overall.rmse": 0.6, "test.overall.n": 10.0}
    assert metric_direction("test.overall.rmse") == "lower"
    assert metric_direction("cv.red.mae") == "lower"
    assert metric_direction("test.overall.r2") == "higher"
    assert metric_direction("test.overall.acc_0_5") == "higher"
    assert metric_direction("test.overall.rmse_std") is None
    assert metric_direction("test.overall.n") is None


def test_rank_metric_prefers_held_out_overall_rmse() -> None:
    names = ["cv.overall.rmse", "test.red.rmse", "test.overall.r2", "test.overall.rmse", "test.overall.n"]
    assert choose_rank_metric(names) == "test.overall.rmse"
    assert choose_rank_metric(["a.r2", "b.mae"]) == "b.mae"
    assert choose_rank_metric(["n"]) is None


def test_leaderboard_ranks_best_first_both_ways() -> None:
    models = [
        entry("svr", 0.70, 0.30),
        entry("catboost", 0.60, 0.45),
        entry("lightgbm", 0.62, 0.40, "loading"),
    ]
    board = build_leaderboard(models, "lightgbm")
    assert board.rank_by == "test.overall.rmse"
    assert [r["model"] for r in board.rows] == ["catboost", "lightgbm", "svr"]
    assert [r["rank"] for r in board.rows] == [1, 2, 3]
    assert [r["default"] for r in board.rows] == [False, True, False]
    assert board.headline == ["test.overall.acc_0_5", "test.overall.r2", "test.overall.rmse"]
    by_r2 = build_leaderboard(models, "lightgbm", rank_by="test.overall.r2")
    assert by_r2.direction == "higher"
    assert [r["model"] for r in by_r2.rows] == ["catboost", "lightgbm", "svr"]


def test_leaderboard_without_metrics() -> None:
    board = build_leaderboard([ModelEntry("svr", "sklearn", None, "runner", "unavailable")], None)
    assert board.rank_by is None and board.metrics == [] and board.rows[0]["status"] == "unavailable"


def test_parse_models_body() -> None:
    overview = parse_models(
        {
            "default_model": "xgboost",
            "models": [
                {
                    "name": "xgboost",
                    "framework": "xgboost",
                    "version": "abc",
                    "placement": "inline",
                    "status": "ready",
                    "metrics": {},
                },
                {
                    "name": "svr",
                    "framework": None,
                    "version": None,
                    "placement": "runner",
                    "status": "loading",
                },
            ],
        }
    )
    assert overview.default_model == "xgboost"
    assert overview.names == ["xgboost", "svr"]
    assert overview.get("svr") is not None and not overview.get("svr").ready  # type: ignore[union-attr]


def test_form_formats_cover_the_data_precision() -> None:
    assert input_decimals(SCHEMA["density"]) == 5
    assert input_step(SCHEMA["density"]) == pytest.approx(1e-5)
    assert input_decimals(SCHEMA["chlorides"]) == 3
    assert input_decimals(SCHEMA["total_sulfur_dioxide"]) == 2
    assert input_label(SCHEMA["ph"]) == "pH"
    assert input_label(SCHEMA["alcohol"]) == "alcohol (% vol)"
    assert "2.5 to 4.5" in input_help(SCHEMA["ph"])


def test_chunked() -> None:
    assert [list(c) for c in chunked(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError, match="chunk size must be positive"):
        list(chunked([1], 0))


def test_results_csv_keeps_the_files_columns_and_adds_the_prediction() -> None:
    header = ",".join([*SCHEMA.names[:-1], "batch"])
    values = ",".join([*(str(SCHEMA.example()[n]) for n in SCHEMA.names[:-1]), "B-1"])
    parsed = parse_wine_csv(f"{header}\n{values}\n", wine_type="white")
    outcome = BatchOutcome(parsed, [ScoredRow(parsed.rows[0], 5.6789, 6, False)], "svr", "v9", 0.1, 1)
    [row] = list(csv.DictReader(io.StringIO(results_csv(outcome).decode())))
    assert row["row"] == "1" and row["batch"] == "B-1" and row["wine_type"] == "white"
    assert (row["predicted_score"], row["predicted_quality"], row["model"]) == ("5.6789", "6", "svr")
