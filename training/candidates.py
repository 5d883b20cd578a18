"""Versions to roll out: train one into a store, and a data set that makes a bad candidate.

Used by the rollout demonstration (``python -m benchmarks.rollout_demo``) and the live rollout
tests: a retrain with another seed is a candidate the gate should promote; a model trained on
the same wines with their quality labels shuffled has learnt nothing, and the gate should roll
it back.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from pathlib import Path


def train_version(model: str, home: Path, data_dir: Path, reports_dir: Path, *args: str) -> str:
    """Train ``model`` in fast mode into the store ``home``; the version it saved.

    ``args`` go to ``python -m training train`` (``--candidate``, ``--seed N``...).
    """
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", model, "--fast", "--no-progress", "--model-store",
         str(home), "--data-dir", str(data_dir), "--reports-dir", str(reports_dir), *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"training {model} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    versions = sorted((home / "models" / model).iterdir(), key=lambda p: p.stat().st_mtime)
    return [p.name for p in versions if p.is_dir()][-1]


def shuffled_labels(data_dir: Path, out: Path, seed: int = 5) -> Path:
    """A copy of the data set in ``out`` with each colour's quality labels shuffled."""
    out.mkdir(parents=True, exist_ok=True)
    for colour in ("red", "white"):
        with (data_dir / f"winequality-{colour}.csv").open(newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        labels = [r[-1] for r in rows[1:]]
        random.Random(seed).shuffle(labels)
        with (out / f"winequality-{colour}.csv").open("w", newline="") as f:
            writer = csv.writer(f, delimiter=";")
            writer.writerow(rows[0])
            writer.writerows([*r[:-1], q] for r, q in zip(rows[1:], labels, strict=True))
    return out
