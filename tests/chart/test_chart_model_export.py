"""How a model reaches an image: k8s/export-models.sh exports it from a model store, and the
image build's docker/import-models.sh (docker/runner.Dockerfile) restores it, loadable by the
same runtime the runner uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from chart_render import REPO_ROOT

from tests.support.binaries import require_path

pytestmark = pytest.mark.chart

BENTOML = Path(sys.executable).parent / "bentoml"


def test_exported_model_imports_into_an_image_store_and_loads(tmp_path: Path) -> None:
    require_path(BENTOML, "part of the dev venv: make setup")
    source, exports, image_home = tmp_path / "store", tmp_path / "exports", tmp_path / "image-home"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PATH": f"{BENTOML.parent}:{os.environ['PATH']}"}
    train = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((100, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=3)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'})\n"
    )
    subprocess.run(
        [sys.executable, "-c", train], env={**env, "BENTOML_HOME": str(source)}, check=True, timeout=120
    )

    result = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s" / "export-models.sh"), "lightgbm", "svr"],
        env={**env, "BENTOML_HOME": str(source), "WINEMEUP_MODEL_EXPORT_DIR": str(exports)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "model svr is not in the store" in result.stderr, (
        "a missing model must fail"
    )
    assert (exports / "lightgbm.bentomodel").is_file()

    dockerfile = (REPO_ROOT / "docker" / "runner.Dockerfile").read_text()
    # The image imports through docker/import-models.sh (it also opens the store to UID 10001).
    assert re.search(r'import-models\.sh \S+ "/tmp/\$\{MODEL\}\.bentomodel"', dockerfile)
    subprocess.run(
        [
            "sh",
            str(REPO_ROOT / "docker" / "import-models.sh"),
            str(BENTOML),
            str(exports / "lightgbm.bentomodel"),
        ],
        env={**env, "BENTOML_HOME": str(image_home)},
        check=True,
        timeout=120,
        capture_output=True,
    )
    load = (
        "from winemeup.runtimes import load_runtime\n"
        "from winemeup.schema import SCHEMA\n"
        "runtime = load_runtime('lightgbm')\n"
        "print(float(runtime.predict([SCHEMA.encode(SCHEMA.example())])[0]))\n"
    )
    scored = subprocess.run(
        [sys.executable, "-c", load],
        env={**env, "BENTOML_HOME": str(image_home)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert 0 < float(scored.stdout.strip().splitlines()[-1]) < 10
