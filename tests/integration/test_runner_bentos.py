"""Runner bentos: ``bentos/build.py`` builds them, and a bento serves its baked-in model alone.

The served bento is exported and imported into a fresh BentoML home that holds no model
store, then started by tag with no WINEMEUP_RUNNER_* variable: what it answers can only come
from the model and arguments baked into it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.runner.fleet import runner_home
from services.stack.processes import REPO_ROOT, ManagedProcess, free_port
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUILT = ("lightgbm", "catboost")


def bentoml_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home.parent),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    return subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


TOKEN = "bento-test-runner-token-0123456789"


@pytest.fixture(scope="module")
def built(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runner bentos built by the build script into a home sharing the session store."""
    home = runner_home(model_store, tmp_path_factory.mktemp("bento-build") / "bentoml")
    result = subprocess.run(
        [sys.executable, "bentos/build.py", "--home", str(home), "--models", ",".join(BUILT), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"home": home, "tags": json.loads(result.stdout.strip().splitlines()[-1])}


def test_build_script_bakes_model_version_and_pins(built: dict[str, Any], model_store: Path) -> None:
    home: Path = built["home"]
    assert set(built["tags"]) == set(BUILT)
    for model, tag in built["tags"].items():
        name, version = tag.split(":")
        assert name == f"winemeup-runner-{model}"
        info = yaml.safe_load((home / "bentos" / name / version / "bento.yaml").read_text())
        model_version = (model_store / "models" / model / "latest").read_text().strip()
        assert info["args"] == {"model": model, "version": model_version}
        assert [m["tag"] for m in info["models"]] == [f"{model}:{model_version}"]
        assert info["labels"]["model"] == model
        requirements = (home / "bentos" / name / version / "env" / "python" / "requirements.txt").read_text()
        assert f"{model}==" in requirements
        assert (home / "bentos" / name / version / "src" / "services" / "runner" / "service.py").is_file()
        assert not (home / "bentos" / name / version / "src" / "services" / "router").exists()


def test_bento_serves_its_own_model_from_a_fresh_home(built: dict[str, Any], tmp_path: Path) -> None:
    archive = tmp_path / "lightgbm.bento"
    bentoml_cli(built["home"], "export", built["tags"]["lightgbm"], str(archive))
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    bentoml_cli(fresh, "import", str(archive))
    assert [p.name for p in (fresh / "models").iterdir()] == ["lightgbm"]

    port = free_port()
    server = ManagedProcess(
        argv=[sys.executable, "-m", "bentoml", "serve", built["tags"]["lightgbm"], "--port", str(port)],
        log_path=tmp_path / "bento-serve.log",
        env={
            "BENTOML_HOME": str(fresh),
            "BENTOML_DO_NOT_TRACK": "True",
            "WINEMEUP_RUNNER_MODEL": "",
            "WINEMEUP_RUNNER_TOKEN": TOKEN,
            "WINEMEUP_RUNNER_METRICS_PORT": "0",
        },
        ready_url=f"http://127.0.0.1:{port}/readyz",
        ready_timeout=120,
        cwd=tmp_path,
        name="bento-lightgbm",
    )
    try:
        server.start()
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(base + "/metadata", json={}).status_code == 401  # the bento demands the token
        headers = {"X-WineMeUp-Runner-Token": TOKEN}
        meta = httpx.post(base + "/metadata", json={}, headers=headers).json()
        assert meta["name"] == "lightgbm"
        assert built["tags"]["lightgbm"].split(":")[0] == "winemeup-runner-lightgbm"
        body = httpx.post(base + "/predict_one", json={"features": SCHEMA.example()}, headers=headers).json()
        assert body["model"] == "lightgbm" and body["model_version"] == meta["version"]
        assert 3.0 < body["score"] < 8.0
    finally:
        server.stop()
