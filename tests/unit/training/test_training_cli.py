"""The command line, run as a user runs it: ``python -m training ...`` in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import INSPECT_STORE, ArchiveServer, build_archive, run_module

from training.data import CSV_FILES, SHA256
from winemeup.runtimes import MODEL_NAMES


def _assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_help_explains_every_flag() -> None:
    top = run_module(["-m", "training", "--help"])
    assert top.returncode == 0 and "train" in top.stdout and "download" in top.stdout
    result = run_module(["-m", "training", "train", "--help"])
    assert result.returncode == 0
    for flag in ("--trials", "--data-dir", "--model-store", "--reports-dir", "--fast", "--seed", "MODEL"):
        assert flag in result.stdout
    for name in MODEL_NAMES:
        assert name in result.stdout
    download = run_module(["-m", "training", "download", "--help"])
    assert download.returncode == 0 and "SHA-256" in download.stdout


def test_bad_data_dir_is_one_line_without_traceback(tmp_path: Path, archive_server: ArchiveServer) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_module(
        [
            "-m",
            "training",
            "train",
            "--fast",
            "--data-dir",
            str(missing),
            "--model-store",
            str(tmp_path / "s"),
            "--reports-dir",
            str(tmp_path / "r"),
        ],
        env={"WINEMEUP_TRAIN_DOWNLOAD_URL": archive_server.url("wine+quality.zip")},
    )
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, str(missing), "winequality-red.csv", "HTTP 404")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_malformed_file_and_checksum_errors_exit_2(small_csv_dir, tmp_path: Path) -> None:
    def spoil(wine_type: str, text: str) -> str:
        return text.replace("0.076", "n/a", 1) if wine_type == "red" else text

    folder = small_csv_dir(edit=spoil)
    common = ["--model-store", str(tmp_path / "s"), "--reports-dir", str(tmp_path / "r")]
    result = run_module(
        ["-m", "training", "train", "--fast", "--no-verify", "--data-dir", str(folder), *common]
    )
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, "winequality-red.csv, line 2, column 'chlorides'", "'n/a'")

    result = run_module(["-m", "training", "train", "--fast", "--data-dir", str(folder), *common])
    assert result.returncode == 2
    _assert_one_line_error(
        result.stderr, "winequality-red.csv: SHA-256 mismatch", SHA256["winequality-red.csv"]
    )


def test_unknown_model_and_invalid_setting(tmp_path: Path) -> None:
    result = run_module(["-m", "training", "train", "knn"])
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, "unknown model(s) knn")
    result = run_module(["-m", "training", "train", "--fast"], env={"WINEMEUP_TRAIN_TEST_SIZE": "0.9"})
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, "invalid setting", "test_size")


def test_download_command_fetches_and_verifies(
    data_dir: Path, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    build_archive(
        archive_server.root / "wine+quality.zip",
        {name: (data_dir / name).read_bytes() for name in CSV_FILES.values()},
    )
    target = tmp_path / "data" / "wine-quality"
    result = run_module(
        ["-m", "training", "download", "--data-dir", str(target)],
        env={"WINEMEUP_TRAIN_DOWNLOAD_URL": archive_server.url("wine+quality.zip")},
    )
    assert result.returncode == 0, result.stderr
    for name, digest in SHA256.items():
        assert (target / name).is_file()
        assert f"sha256 {digest}  ok" in result.stdout


def test_download_force_refreshes_files_already_there(
    data_dir: Path, archive_server: ArchiveServer, small_csv_dir
) -> None:
    build_archive(
        archive_server.root / "wine+quality.zip",
        {name: (data_dir / name).read_bytes() for name in CSV_FILES.values()},
    )
    target = small_csv_dir(rows=5)
    env = {"WINEMEUP_TRAIN_DOWNLOAD_URL": archive_server.url("wine+quality.zip")}
    stale = run_module(["-m", "training", "download", "--data-dir", str(target)], env=env)
    assert stale.returncode == 2 and "SHA-256 mismatch" in stale.stderr
    result = run_module(["-m", "training", "download", "--force", "--data-dir", str(target)], env=env)
    assert result.returncode == 0, result.stderr
    for name, digest in SHA256.items():
        assert (target / name).read_bytes() == (data_dir / name).read_bytes()
        assert f"sha256 {digest}  ok" in result.stdout


@pytest.mark.slow
def test_train_writes_store_and_reports_that_agree(small_csv_dir, tmp_path: Path) -> None:
    """A whole fast run on a small copy of the data; every saved model is inspected afterwards."""
    folder = small_csv_dir(rows=160)
    store, reports = tmp_path / "store", tmp_path / "reports"
    result = run_module(
        [
            "-m",
            "training",
            "train",
            "--fast",
            "--no-progress",
            "--no-verify",
            "--trials",
            "2",
            "--seed",
            "3",
            "--data-dir",
            str(folder),
            "--model-store",
            str(store),
            "--reports-dir",
            str(reports),
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in MODEL_NAMES:
        assert f"{name}:" in result.stdout
    assert "lightgbm_untuned        (reference, not saved)" in result.stdout
    assert sorted(p.name for p in (store / "models").iterdir()) == sorted(MODEL_NAMES)
    board = json.loads((reports / "leaderboard.json").read_text())
    assert board["mode"] == "fast" and board["seed"] == 3 and board["lightgbm_trials"] == 2

    inspected = run_module(["-c", INSPECT_STORE, str(store), str(folder), "0.2", "3"])
    assert inspected.returncode == 0, inspected.stderr[-3000:]
    models = json.loads(inspected.stdout.strip().splitlines()[-1])
    by_name = {m["name"]: m for m in board["models"]}
    for name in MODEL_NAMES:
        meta, labels = models[name]["metadata"], models[name]["labels"]
        assert labels["dataset"] == board["data"]["dataset_sha256"][:12]
        assert labels["mode"] == "fast"
        assert meta["feature_order"][-1] == "wine_type" and len(meta["feature_order"]) == 12
        assert meta["training_seconds"] > 0
        assert set(meta["library_versions"]) >= {"python", "numpy", "scikit-learn", "bentoml"}
        assert meta["data"]["sha256"].keys() == set(CSV_FILES.values())
        # The stored test figures are what the loaded model scores on the held-out split.
        recomputed = models[name]["test"]
        for scope in ("overall", "red", "white"):
            for metric in ("rmse", "mae", "acc_0_5"):
                assert meta["metrics"]["test"][scope][metric] == pytest.approx(
                    recomputed[scope][metric], abs=1e-6
                )
        assert meta["metrics"] == by_name[name]["metrics"]
    assert models["lightgbm"]["metadata"]["tuning"]["trials"] == 2
    assert {labels["framework"] for labels in (models[n]["labels"] for n in MODEL_NAMES)} == {
        "lightgbm",
        "xgboost",
        "catboost",
        "sklearn",
    }
