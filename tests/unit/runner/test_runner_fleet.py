"""Per-runner BentoML homes: a private home whose models/ links to the one shared store."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runner.fleet import RunnerFleet, runner_home, runner_process


def make_store(root: Path) -> Path:
    (root / "models" / "svr" / "v1").mkdir(parents=True)
    return root


def test_runner_home_links_the_shared_models(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    home = runner_home(store, tmp_path / "run" / "svr")
    assert (home / "models").is_symlink()
    assert (home / "models" / "svr" / "v1").is_dir()
    assert runner_home(store, home) == home  # idempotent


def test_runner_home_relinks_to_a_new_store(tmp_path: Path) -> None:
    old, new = make_store(tmp_path / "old"), make_store(tmp_path / "new")
    home = runner_home(old, tmp_path / "home")
    runner_home(new, home)
    assert (home / "models").resolve() == (new / "models").resolve()


def test_runner_home_refuses_a_real_models_directory(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    (tmp_path / "home" / "models").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        runner_home(store, tmp_path / "home")


def test_runner_home_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model store"):
        runner_home(tmp_path / "empty", tmp_path / "home")


def test_runner_process_and_fleet_shape(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    proc = runner_process("svr", 3107, store, tmp_path / "run", version="v1")
    assert proc.env["WINEMEUP_RUNNER_MODEL"] == "svr"
    assert proc.env["WINEMEUP_RUNNER_VERSION"] == "v1"
    assert proc.env["BENTOML_HOME"] == str(tmp_path / "run" / "runners" / "svr")
    assert proc.ready_url == "http://127.0.0.1:3107/readyz"
    assert proc.log_path == tmp_path / "run" / "logs" / "runner-svr.log"
    fleet = RunnerFleet(store, tmp_path / "run", {"svr": 3107, "lightgbm": 3101}, host="0.0.0.0")
    assert fleet.urls == {"svr": "http://127.0.0.1:3107", "lightgbm": "http://127.0.0.1:3101"}


def test_fleet_gives_each_runner_its_metrics_port_and_the_token(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    fleet = RunnerFleet(
        store,
        tmp_path / "run",
        {"svr": 3107, "lightgbm": 3101},
        metrics_ports={"svr": 9470},
        token="fleet-token-0123456789",
    )
    svr, lightgbm = fleet.processes["svr"].env, fleet.processes["lightgbm"].env
    assert (
        svr["WINEMEUP_RUNNER_METRICS_PORT"] == "9470" and svr["WINEMEUP_RUNNER_METRICS_HOST"] == "127.0.0.1"
    )
    assert lightgbm["WINEMEUP_RUNNER_METRICS_PORT"] == "0"  # none: seven runners never share 9464
    assert svr["WINEMEUP_RUNNER_TOKEN"] == lightgbm["WINEMEUP_RUNNER_TOKEN"] == "fleet-token-0123456789"
    assert fleet.metrics_url("svr") == "http://127.0.0.1:9470/metrics"
    assert "WINEMEUP_RUNNER_TOKEN" not in runner_process("svr", 3107, store, tmp_path / "run").env
