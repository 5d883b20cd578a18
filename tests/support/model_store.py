"""The data and the trained model store tests run against, and reference predictions from it.

Training a fast store takes about a minute and a half here, so stores are kept between
sessions under the system temp directory, keyed by a hash of everything they depend on
(training and runtime code, the lock files, the data, the Python version); any change to
those trains afresh. A store is built beside the cache and renamed into place, so concurrent
sessions never see half a store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(tempfile.gettempdir()) / "winemeup-test-model-stores"
"""Where trained stores are kept between sessions."""
PRUNE_AFTER_SECONDS = 6 * 3600.0
"""Cached stores (about 20 MB each) untouched this long are deleted."""

logger = logging.getLogger(__name__)


class TrainingFailedError(RuntimeError):
    """``python -m training train --fast`` failed; the message carries the log tail."""


def data_dir_candidates(configured: Path | None = None) -> list[Path]:
    """Where the CSV files may be: the training setting, ``WINEMEUP_TRAIN_DATA_DIR``, the
    repository's shipped ``data/wine-quality``."""
    candidates = [configured] if configured else []
    env_dir = os.environ.get("WINEMEUP_TRAIN_DATA_DIR")
    if env_dir:
        candidates.append(Path(env_dir))
    candidates.append(REPO_ROOT / "data" / "wine-quality")
    return candidates


def find_data_dir(candidates: Iterable[Path]) -> Path | None:
    """The first folder holding both CSV files."""
    for path in candidates:
        if (path / "winequality-red.csv").is_file() and (path / "winequality-white.csv").is_file():
            return path
    return None


def store_fingerprint(data_dir: Path) -> str:
    """Hash of everything a trained store depends on: training and runtime code, data, Python."""
    digest = hashlib.sha256(sys.version.encode())
    sources = sorted((REPO_ROOT / "training").rglob("*.py")) + sorted((REPO_ROOT / "winemeup").rglob("*.py"))
    locks = [REPO_ROOT / "requirements.lock", *sorted((REPO_ROOT / "requirements").glob("*.lock"))]
    for path in [*sources, *locks]:
        if path.is_file():
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    for name in ("winequality-red.csv", "winequality-white.csv"):
        digest.update((data_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def train_store(data_dir: Path, root: Path) -> Path:
    """Run ``python -m training train --fast`` into ``root/bentoml``; return that BentoML home."""
    home = root / "bentoml"
    log_path = root / "train.log"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        result = subprocess.run(
            [sys.executable, "-m", "training", "train", "--fast", "--no-progress",
             "--model-store", str(home), "--data-dir", str(data_dir), "--reports-dir", str(root / "reports")],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise TrainingFailedError(f"training failed with exit code {result.returncode}:\n{tail}")
    logger.info("trained the model store in %.1fs", time.monotonic() - started)
    return home


def cached_store(data_dir: Path, cache_root: Path = CACHE_ROOT) -> Path:
    """The BentoML home of a fast-trained store for this code and data: reused, or trained now."""
    cached = cache_root / store_fingerprint(data_dir)
    if (cached / "bentoml" / "models").is_dir() and (cached / "complete").is_file():
        logger.info("reusing the trained model store %s", cached)
        os.utime(cached)  # in use: keep it from being pruned
        return cached / "bentoml"
    cache_root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
    try:
        train_store(data_dir, building)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    (building / "complete").write_text("ok\n")
    try:
        building.rename(cached)
    except OSError:  # another session finished first: use its store, drop ours
        shutil.rmtree(building, ignore_errors=True)
    prune_stores(cache_root, keep=cached)
    return cached / "bentoml"


def prune_stores(cache_root: Path, keep: Path, max_age_seconds: float = PRUNE_AFTER_SECONDS) -> None:
    """Delete cached stores untouched for hours; a session still using one that old is unlikely,
    and it would only lose files it already loaded."""
    now = time.time()
    for path in cache_root.iterdir():
        if path != keep and path.is_dir() and now - path.stat().st_mtime > max_age_seconds:
            shutil.rmtree(path, ignore_errors=True)


def copy_model(model_store: Path, name: str, home: Path, version: str | None = None) -> Path:
    """A private BentoML home ``home`` holding one model version of ``model_store`` as its latest
    (tests that damage or rewrite a model must not write into the shared store)."""
    from winemeup.runtimes.store import read_entry

    entry = read_entry(model_store, name, version)
    target = home / "models" / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(entry.path, target / entry.version)
    (target / "latest").write_text(entry.version)
    return home


def reference_predictions(
    model_store: Path, rows: list[list[float]], models: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """``{model: {"scores": [...], "version": ...}}`` as ``load_runtime(model)`` answers, computed
    in a subprocess whose ``BENTOML_HOME`` is ``model_store`` (a test process's BentoML is
    bound to the session home)."""
    from winemeup.runtimes import MODEL_NAMES

    code = (
        "import json, sys\n"
        "from winemeup.runtimes import load_runtime\n"
        "req = json.load(sys.stdin)\n"
        "out = {}\n"
        "for m in req['models']:\n"
        "    rt = load_runtime(m)\n"
        "    out[m] = {'scores': rt.predict(req['rows']).tolist(), 'version': rt.info.version}\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(model_store), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps({"rows": rows, "models": list(models or MODEL_NAMES)}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reference predictions failed:\n{result.stderr[-3000:]}")
    answer: dict[str, dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def reference_scores(
    model_store: Path, rows: list[list[float]], models: tuple[str, ...] | None = None
) -> dict[str, list[float]]:
    """What ``load_runtime(name).predict(rows)`` answers for each model (see reference_predictions)."""
    return {m: p["scores"] for m, p in reference_predictions(model_store, rows, models).items()}
