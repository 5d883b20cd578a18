"""Helpers of the training tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# Run with ``python -c`` in a fresh process: BENTOML_HOME DATA_DIR TEST_SIZE SEED. Loads every
# model through load_runtime and scores it on the run's held-out split; prints JSON.
INSPECT_STORE = """
import json, sys
from pathlib import Path
from training.store import use_model_store
use_model_store(Path(sys.argv[1]))
import numpy as np
from training.data import load_wine_data
from training.evaluation import holdout_split, metrics_by_type
from winemeup.runtimes import MODEL_NAMES, load_runtime
data = load_wine_data(Path(sys.argv[2]), verify=False)
_, test = holdout_split(data.strata(), data.groups(), float(sys.argv[3]), int(sys.argv[4]))
out = {}
for name in MODEL_NAMES:
    rt = load_runtime(name)
    pred = rt.predict(data.X[test])
    out[name] = {"labels": rt.info.labels, "metadata": rt.info.metadata,
                 "test": metrics_by_type(data.y[test], pred, data.is_red[test])}
print(json.dumps(out))
"""


def head_lines(path: Path, rows: int) -> str:
    """The header and the first ``rows`` data lines of a CSV file."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[: rows + 1])


@dataclass
class ArchiveServer:
    """A real HTTP server on 127.0.0.1 serving files from a folder; counts the requests."""

    root: Path
    port: int
    requests: list[str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def build_archive(path: Path, members: dict[str, bytes]) -> Path:
    """Write a zip archive shaped like UCI's (``winequality/`` folder inside is tolerated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    path.write_bytes(buffer.getvalue())
    return path


def run_module(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 240.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training ...`` (or ``python -c``) from the repository root."""
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
