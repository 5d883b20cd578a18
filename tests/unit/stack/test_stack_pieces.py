"""Pure pieces of the local stack launcher: settings, ports, the Prometheus config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.stack.launcher import missing_models
from services.stack.prometheus import prometheus_config, render
from services.stack.settings import StackSettings
from tests.support.binaries import require_binary
from winemeup.runtimes import MODEL_NAMES

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_runner_ports_follow_model_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINEMEUP_STACK_RUNNER_BASE_PORT", "3001")
    settings = StackSettings()
    assert [settings.runner_port(m) for m in MODEL_NAMES] == list(range(3001, 3008))
    assert settings.runner_port("svr") == 3007


def test_models_setting_is_csv_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINEMEUP_STACK_MODELS", "svr, lightgbm")
    assert StackSettings().models == ["svr", "lightgbm"]
    monkeypatch.setenv("WINEMEUP_STACK_MODELS", "svr,linear")
    with pytest.raises(ValidationError, match="linear"):
        StackSettings()


def test_model_store_falls_back_to_bentoml_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WINEMEUP_STACK_MODEL_STORE", raising=False)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    assert StackSettings().model_store == tmp_path
    monkeypatch.setenv("WINEMEUP_STACK_MODEL_STORE", str(tmp_path / "other"))
    assert StackSettings().model_store == tmp_path / "other"


def test_missing_models(tmp_path: Path) -> None:
    (tmp_path / "models" / "svr" / "abc").mkdir(parents=True)
    (tmp_path / "models" / "svr" / "abc" / "model.yaml").write_text("name: svr\n")
    (tmp_path / "models" / "lightgbm").mkdir(parents=True)  # a folder without a saved version
    assert missing_models(tmp_path, ["svr", "lightgbm", "xgboost"]) == ["lightgbm", "xgboost"]


def test_prometheus_config_scrapes_router_and_each_runner(tmp_path: Path) -> None:
    config = prometheus_config("127.0.0.1:8000", {"svr": "127.0.0.1:3007", "lightgbm": "127.0.0.1:3001"})
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["winemeup-router"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    runner_targets = {
        sc["labels"]["model"]: sc["targets"][0] for sc in jobs["winemeup-runners"]["static_configs"]
    }
    assert runner_targets == {"svr": "127.0.0.1:3007", "lightgbm": "127.0.0.1:3001"}
    assert "winemeup-runners" not in {j["job_name"] for j in prometheus_config("h:1", {})["scrape_configs"]}
    assert yaml.safe_load(render(config)) == config


@pytest.mark.parametrize("source", ["generated", "documented"])
def test_promtool_accepts_the_configs(tmp_path: Path, source: str) -> None:
    require_binary("promtool", "apt-get install prometheus")
    if source == "generated":
        path = tmp_path / "prometheus.yml"
        path.write_text(render(prometheus_config("127.0.0.1:8000", {"svr": "127.0.0.1:3007"})))
    else:
        path = REPO_ROOT / "services" / "prometheus.local.yml"
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_training_progress_lines_reach_the_console_whole_and_in_order(tmp_path: Path) -> None:
    """While ``make run`` trains, the launcher echoes the progress lines of the training log."""
    import sys

    from services.stack.launcher import follow_training
    from services.stack.processes import ManagedProcess

    log_path = tmp_path / "train.log"
    log_path.write_text("2026 INFO training.progress: [1/1] old: a line of an earlier run\n")
    script = (
        "import sys, time\n"
        "w = sys.stdout.write\n"
        "w('t INFO training.data: read red.csv\\n'); sys.stdout.flush()\n"
        "w('t INFO training.progress: [1/2] svr: grouped'); sys.stdout.flush(); time.sleep(0.8)\n"
        "w(' CV, 5 folds (0 s on this model, 1 s in all)\\n'); sys.stdout.flush()\n"
        "w('t INFO training.progress: [2/2] extra_trees: done, test RMSE 0.6\\n')\n"
        "sys.exit(3)\n"
    )
    proc = ManagedProcess(argv=[sys.executable, "-c", script], log_path=log_path, name="training")
    offset = log_path.stat().st_size
    proc.launch()
    echoed: list[str] = []
    assert follow_training(proc, echoed.append, offset, poll_seconds=0.1) == 3
    assert echoed == [
        "[1/2] svr: grouped CV, 5 folds (0 s on this model, 1 s in all)",
        "[2/2] extra_trees: done, test RMSE 0.6",
    ]
