"""Progress lines of a training run: one per model and step, with elapsed time, no bars."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import run_module

from training.progress import PROGRESS_LOGGER, ModelProgress, duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]


def test_a_step_names_model_position_and_both_elapsed_times(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    clock = FakeClock()
    reporter = ModelProgress("xgboost", 3, 8, run_started=clock.now - 95, clock=clock)
    clock.now += 12
    reporter.step("grouped CV, 15 folds")
    assert _messages(caplog) == [
        "[3/8] xgboost: grouped CV, 15 folds (12 s on this model, 1 min 47 s in all)"
    ]


def test_counted_items_report_after_each_is_done_at_most_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    clock = FakeClock()
    reporter = ModelProgress("svr", 1, 1, run_started=clock.now, every_seconds=10, clock=clock)
    seen = []
    for fold in reporter.counted("paper CV", "fold")(range(5)):
        assert len(_messages(caplog)) == (1 if fold >= 3 else 0), "a fold is reported before it is done"
        clock.now += 4  # the work on this fold
        seen.append(fold)
    assert seen == [0, 1, 2, 3, 4]
    # 12 s after the start at fold 3, then the last one always.
    assert _messages(caplog) == [
        "[1/1] svr: paper CV, fold 3/5 (12 s on this model, 12 s in all)",
        "[1/1] svr: paper CV, fold 5/5 (20 s on this model, 20 s in all)",
    ]


def test_duration_reads_like_a_person_says_it() -> None:
    assert [duration(s) for s in (0.4, 42, 60, 185.2)] == ["0 s", "42 s", "1 min 00 s", "3 min 05 s"]


def test_a_run_logs_each_step_of_each_model_without_bars(
    small_csv_dir: Callable[..., Path], tmp_path: Path
) -> None:
    """What the stack shows while it trains: ``--no-progress`` hides the bars, never these lines."""
    folder = small_csv_dir(rows=120)
    result = run_module(
        ["-m", "training", "train", "svr", "extra_trees", "--fast", "--no-progress", "--no-verify",
         "--data-dir", str(folder), "--model-store", str(tmp_path / "store"),
         "--reports-dir", str(tmp_path / "reports")],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [
        line.split(f" {PROGRESS_LOGGER}: ", 1)[1]
        for line in result.stderr.splitlines()
        if PROGRESS_LOGGER in line
    ]
    steps = [re.sub(r" \(.*\)$", "", line) for line in lines]
    for index, name in enumerate(("extra_trees", "svr"), start=1):
        mine = [s for s in steps if s.startswith(f"[{index}/2] {name}: ")]
        assert mine[0] == f"[{index}/2] {name}: grouped CV, 5 folds"
        assert f"[{index}/2] {name}: grouped CV, fold 5/5" in mine
        assert f"[{index}/2] {name}: paper CV, 5 folds" in mine
        assert f"[{index}/2] {name}: final fit on the training part" in mine
        assert mine[-1].startswith(f"[{index}/2] {name}: done, test RMSE ")
    assert all(re.search(r"\(\d+ s on this model, \d+ s in all\)$", line) for line in lines)
    assert "\r" not in result.stderr and "fold/s" not in result.stderr and "it/s" not in result.stderr
