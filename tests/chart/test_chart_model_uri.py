"""models.<name>.modelUri: the model-fetch init container's exact command, as the chart renders
it, fetches a `bentoml models export` archive from a local HTTP server, checks its SHA-256 and
imports it; a runner then serves a prediction from what it imported. A wrong checksum, a 404
and a truncated download each fail it with a message naming the model and the URI.

Only what differs on this machine is changed from the pod: `python` is this interpreter, the
model store path is a temporary directory (BENTOML_HOME, as the init container's env sets it),
and import-models.sh is found on PATH as in the runner image (/usr/local/bin there).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_render import REPO_ROOT, helm_template, parse

from tests.support.binaries import require_binary
from tests.support.runners import assert_predicts, serving_runner

RUNNER_TOKEN = "model-uri-test-runner-token"

pytestmark = [pytest.mark.chart, pytest.mark.slow]

MODEL = "lightgbm"


class _ArchiveServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, archive: bytes):
        self.archive = archive
        super().__init__(("127.0.0.1", 0), _ArchiveHandler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


class _ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """/model.bentomodel: the archive; /truncated.bentomodel: announces it whole, sends half
    and closes (a dropped connection); anything else: 404."""

    server: _ArchiveServer

    def do_GET(self) -> None:
        data = self.server.archive
        if self.path == "/model.bentomodel":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/truncated.bentomodel":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "no such model")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _export_tiny_model(tmp: Path) -> bytes:
    staging = tmp / "staging"
    code = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((100, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=3)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'},\n"
        "                            metadata={'metrics': {}})\n"
    )
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(staging)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)
    archive = tmp / "lightgbm.bentomodel"
    bentoml = str(Path(sys.executable).parent / "bentoml")
    export = [bentoml, "models", "export", "lightgbm:latest", str(archive)]
    subprocess.run(export, env=env, check=True, timeout=120, capture_output=True)
    return archive.read_bytes()


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_ArchiveServer]:
    server = _ArchiveServer(_export_tiny_model(tmp_path_factory.mktemp("export")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _init_container(uri: str, sha256: str) -> dict[str, Any]:
    # The test's archive server speaks plain HTTP on loopback: allowed explicitly, as a user would.
    args = ["--set", f"models.{MODEL}.modelUri={uri}", "--set", f"models.{MODEL}.modelSha256={sha256}"]
    if uri.startswith("http://"):
        args += ["--set", f"models.{MODEL}.allowInsecureModelUri=true"]
    docs = parse(helm_template(*args))
    runner = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("winemeup.io/model") == MODEL
    )
    spec = runner["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    # The runner reads the store the init container fills: same emptyDir, models subPath.
    init_store = next(m for m in init["volumeMounts"] if m["name"] == "model-store")
    runner_store = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model-store")
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["BENTOML_HOME"] == init_store["mountPath"]
    assert runner_store["subPath"] == "models" and runner_store["readOnly"] is True
    assert runner_store["mountPath"] == "/opt/winemeup/bentoml/models"
    return init


def _run_init(init: dict[str, Any], home: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command and env, with this machine's paths."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (bin_dir / "import-models.sh").symlink_to(REPO_ROOT / "docker" / "import-models.sh")
    command = list(init["command"])
    assert command[:3] == ["python", "-m", "services.runner.fetch_model"]
    command[0] = sys.executable
    scratch = tmp / "download"
    scratch.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENTOML_", "WINEMEUP_"))},
        **{e["name"]: e["value"] for e in init["env"]},
        "BENTOML_HOME": str(home),
        "TMPDIR": str(scratch),
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fetched_model_is_verified_imported_and_served(
    archive_server: _ArchiveServer, tmp_path: Path
) -> None:
    digest = hashlib.sha256(archive_server.archive).hexdigest()
    uri = archive_server.url("/model.bentomodel")
    init = _init_container(uri, digest)
    home = tmp_path / "fetched"
    result = _run_init(init, home, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(verified)" in result.stderr
    assert not list((tmp_path / "download").iterdir()), "the downloaded archive was left behind"
    model_yaml = next((home / "models").rglob("model.yaml"))
    assert model_yaml.stat().st_mode & 0o004, "import-models.sh did not open the store to the pod's UID"
    # A pod restart runs the init container again over the same emptyDir: it must succeed.
    again = _run_init(init, home, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already imported" in again.stderr
    assert list((home / "models").rglob("model.yaml")) == [model_yaml]

    # The runner, on the store the init container filled (the pod mounts its models/ subPath).
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENTOML_", "WINEMEUP_"))},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "WINEMEUP_RUNNER_MODEL": MODEL,
        "WINEMEUP_RUNNER_TOKEN": RUNNER_TOKEN,
        "WINEMEUP_RUNNER_METRICS_PORT": "0",
    }
    bentoml = str(Path(sys.executable).parent / "bentoml")
    serve = [
        bentoml,
        "serve",
        "services.runner.service:ModelRunner",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with serving_runner(serve, env, port, tmp_path / "runner.log") as url:
        assert_predicts(url, RUNNER_TOKEN)


@pytest.mark.parametrize(
    ("path", "sha256", "reason"),
    [
        ("/model.bentomodel", "0" * 64, "SHA-256 mismatch"),
        ("/missing.bentomodel", "0" * 64, "HTTP 404"),
        ("/truncated.bentomodel", "0" * 64, "truncated download: received"),
    ],
    ids=["wrong-checksum", "not-found", "truncated"],
)
def test_fetch_failures_name_the_model_and_the_uri(
    archive_server: _ArchiveServer, tmp_path: Path, path: str, sha256: str, reason: str
) -> None:
    uri = archive_server.url(path)
    home = tmp_path / "fetched"
    result = _run_init(_init_container(uri, sha256), home, tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"model '{MODEL}' from {uri}" in last and reason in last, last
    assert not (home / "models").exists() or not list((home / "models").rglob("model.yaml"))


def test_a_truncated_archive_with_its_full_length_is_refused_by_the_import(tmp_path: Path) -> None:
    """A file cut short at its source, published with its own (matching) checksum: the import
    itself must refuse it, still naming model and URI."""
    require_binary("sh", "a POSIX shell, as the chart's init container has")
    archive = _export_tiny_model(tmp_path)
    cut = tmp_path / "cut.bentomodel"
    cut.write_bytes(archive[: len(archive) // 2])
    uri = str(cut)  # a path on a mounted volume
    digest = hashlib.sha256(cut.read_bytes()).hexdigest()
    result = _run_init(_init_container(uri, digest), tmp_path / "fetched", tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"model '{MODEL}' from {uri}" in last and "import failed" in last, last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", f"models.{MODEL}.modelUri=https://models.example/m.bentomodel"],
            # The schema says so first (helm names the key); the template's own fail says why.
            f"/models/{MODEL}/modelSha256",
        ),
        (
            [
                "--set",
                f"models.{MODEL}.modelUri=http://models.example/m.bentomodel",
                "--set",
                f"models.{MODEL}.modelSha256={'0' * 64}",
            ],
            "allowInsecureModelUri",
        ),
    ],
    ids=["no-checksum", "plain-http"],
)
def test_the_chart_refuses_an_unchecked_or_plain_http_model_uri(args: list[str], message: str) -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template(*args)
    assert message in str(refused.value)


def test_the_fetch_refuses_plain_http_unless_told(archive_server: _ArchiveServer, tmp_path: Path) -> None:
    uri = archive_server.url("/model.bentomodel")
    init = _init_container(uri, hashlib.sha256(archive_server.archive).hexdigest())
    assert "--allow-insecure-http" in init["command"]
    init["command"] = [c for c in init["command"] if c != "--allow-insecure-http"]
    result = _run_init(init, tmp_path / "fetched", tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"model '{MODEL}' from {uri}" in last and "http:// is refused" in last, last
