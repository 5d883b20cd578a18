"""Model store adapter: every family saved with its BentoML module and loaded back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import run_module

from winemeup.runtimes import MODEL_NAMES

SCRIPT = Path(__file__).with_name("roundtrip_script.py")
RUNTIME_OF_FRAMEWORK = {
    "lightgbm": "LightGBMRuntime",
    "xgboost": "XGBoostRuntime",
    "catboost": "CatBoostRuntime",
    "sklearn": "SklearnRuntime",
}


@pytest.mark.slow
def test_all_seven_round_trip_through_load_runtime(data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    result = run_module([str(SCRIPT), str(home), str(data_dir), str(tmp_path / "other")])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in (home / "models").iterdir()) == sorted(MODEL_NAMES)
    for name in MODEL_NAMES:
        entry = report[name]
        assert entry["equal"], f"{name}: loaded model differs by {entry['max_diff']}"
        framework = entry["labels"]["framework"]
        assert framework == {
            "random_forest": "sklearn",
            "extra_trees": "sklearn",
            "hist_gradient_boosting": "sklearn",
            "svr": "sklearn",
        }.get(name, name)
        assert entry["runtime"] == RUNTIME_OF_FRAMEWORK[framework]
        assert entry["labels"]["dataset"] == "0123456789ab"
        assert entry["metrics"] == {"cv": {"overall": {"rmse": 0.5}}}
        assert entry["tag"].startswith(f"{name}:")
        assert "predicts differently" in entry["mismatch_error"]
    assert "already uses the model store" in report["switch_error"]
    assert not (tmp_path / "other").joinpath("models").exists()
