"""models.<name>.modelUri + modelSha256: the runner pod's model-fetch init container, as the
chart renders it, downloads a `bentoml models export` archive over local HTTP, checks its
SHA-256 and imports it; the runner container then serves that model, not the one baked into
its image. With a wrong SHA-256 the init container fails, naming the model and the URI, and
the runner never starts.

The archive is a tiny LightGBM model saved here (another version than the image's), served by
a file server container on the release's own podman network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.containers.conftest import ContainersSettings, render
from tests.containers.harness import PlayedRelease, PlayFailedError, PodNotReadyError, remove_run
from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.containers, pytest.mark.slow]

MODEL = "lightgbm"
TOKEN_HEADER = "X-WineMeUp-Runner-Token"


def _export_tiny_model(tmp: Path) -> tuple[bytes, str]:
    """A 3-tree LightGBM model saved as `lightgbm` in a fresh store and exported: (archive, version)."""
    code = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((100, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=3)\n"
        "m = bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'},\n"
        "                                metadata={'metrics': {}})\n"
        "print(m.tag.version)\n"
    )
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(tmp / "store")}
    saved = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True, text=True
    )
    archive = tmp / "lightgbm.bentomodel"
    bentoml = str(Path(sys.executable).parent / "bentoml")
    subprocess.run(
        [bentoml, "models", "export", "lightgbm:latest", str(archive)],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    return archive.read_bytes(), saved.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    return _export_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def runner_release(
    containers_settings: ContainersSettings,
    engine_ready: None,
    archive: tuple[bytes, str],
    tmp_path: Path,
) -> Iterator[tuple[PlayedRelease, str]]:
    """A release of its own (own network) and, on that network, a file server (Python's
    http.server in the lightgbm runner image, read-only) holding the archive; the test
    renders the release with the archive's URI and plays its lightgbm runner alone."""
    remove_run()
    run_id = uuid.uuid4().hex[:6]
    played = PlayedRelease(render(containers_settings, f"uri-{run_id}"), run_id=run_id)
    served = tmp_path / "served"
    served.mkdir()
    (served / "lightgbm.bentomodel").write_bytes(archive[0])
    served.chmod(0o755)
    (served / "lightgbm.bentomodel").chmod(0o644)
    try:
        played.prepare()
        image = played.workload(f"runner-{MODEL}").container("runner")["image"]
        address = played.run_container(
            "models",
            image,
            ["python", "-m", "http.server", "8080", "--directory", "/srv"],
            volumes=[f"{served}:/srv:ro"],
        )
        url = f"http://{address}:8080"
        wait_until(
            lambda: _answers(url + "/lightgbm.bentomodel"),
            60,
            interval=0.2,
            message="the file server container does not answer",
        )
        yield played, url
    finally:
        played.down()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _replay_with_uri(
    played: PlayedRelease, settings: ContainersSettings, server: str, sha256: str
) -> tuple[PlayedRelease, str]:
    uri = f"{server}/lightgbm.bentomodel"
    played.reset_docs(
        render(
            settings,
            f"uri-{played.run_id}",
            f"models.{MODEL}.modelUri={uri}",
            f"models.{MODEL}.modelSha256={sha256}",
            f"models.{MODEL}.allowInsecureModelUri=true",
        )
    )
    return played, uri


def test_model_from_uri_with_its_sha_is_served(
    runner_release: tuple[PlayedRelease, str],
    containers_settings: ContainersSettings,
    archive: tuple[bytes, str],
) -> None:
    played, server = runner_release
    played, _uri = _replay_with_uri(
        played, containers_settings, server, hashlib.sha256(archive[0]).hexdigest()
    )
    runner = played.workload(f"runner-{MODEL}")
    assert [c["name"] for c in runner.pod_spec["initContainers"]] == ["model-fetch"]
    played.start([runner.name], ready_timeout=150)

    headers = {TOKEN_HEADER: played.secret_data().get("runner-token", "")}
    with httpx.Client(base_url=runner.url("runner"), headers=headers, timeout=30) as client:
        meta = client.post("/metadata", json={})
        assert meta.status_code == 200, meta.text
        assert meta.json()["version"] == archive[1], (meta.json()["version"], archive[1])
        row = SCHEMA.encode(SCHEMA.example())
        answer = client.post("/predict", json={"rows": [row]})
        assert answer.status_code == 200, answer.text


def test_wrong_sha_fails_naming_the_model_and_the_uri(
    runner_release: tuple[PlayedRelease, str],
    containers_settings: ContainersSettings,
) -> None:
    played, server = runner_release
    played, uri = _replay_with_uri(played, containers_settings, server, "0" * 64)
    runner = played.workload(f"runner-{MODEL}")
    with pytest.raises((PlayFailedError, PodNotReadyError)) as failure:
        played.start([runner.name], ready_timeout=60)
    message = str(failure.value)
    assert "SHA-256 mismatch" in message and MODEL in message and uri in message, message
    state = played.state(runner.container_name("runner")) or {}
    assert state.get("Status") != "running", json.dumps(state)[:500]
