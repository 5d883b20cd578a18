"""A runner serves as the pod runs it: as UID 10001, not root, on a model store imported the
way its Dockerfile imports it, with BENTOML_HOME and the code read-only and writable only
where the rendered Deployment mounts an emptyDir.

The model is exported, then imported as root by docker/import-models.sh (the script the
runner and router Dockerfiles run). The real `bentoml serve` then runs in a private mount
namespace (`unshare -m`, needs root) where the model store and the repository are
bind-mounted read-only and each emptyDir of the rendered runner pod under $BENTOML_HOME is a
fresh tmpfs, and drops to the pod's UID and GID with setpriv before it starts.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from chart_render import REPO_ROOT

from tests.support.binaries import require_binary, unavailable
from tests.support.runners import assert_predicts, serving_runner

RUNNER_TOKEN = "readonly-test-runner-token"

pytestmark = [pytest.mark.chart, pytest.mark.slow]

POD_HOME = "/opt/winemeup/bentoml"
POD_UID = 10001
IMPORT_SCRIPT = REPO_ROOT / "docker" / "import-models.sh"


def _world_traversable_dir() -> Path:
    """A fresh directory the pod's UID can reach (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="winemeup-pod-"))
    path.chmod(0o755)
    return path


def test_imported_model_store_is_readable_by_every_user(tmp_path: Path) -> None:
    """`bentoml models import` alone leaves a 0700 root directory; the image's import must not."""
    staging, home = tmp_path / "staging", tmp_path / "pod"
    archive = _export_small_model(staging, tmp_path)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(home)}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    subprocess.run(["sh", str(IMPORT_SCRIPT), bentoml, str(archive)], env=env, check=True, timeout=120)
    entries = [p for p in (home / "models").rglob("*")]
    assert any(p.name == "model.yaml" for p in entries)
    closed = [str(p) for p in entries if p.stat().st_mode & (0o005 if p.is_dir() else 0o004) == 0]
    assert not closed, f"not readable by other users after import: {closed}"


def _closed_ancestors(paths: list[Path]) -> list[Path]:
    """Directories above ``paths`` that other users cannot traverse (e.g. a 0700 /root holding pyenv)."""
    closed: set[Path] = set()
    for path in paths:
        for parent in path.resolve().parents:
            if parent != Path("/") and not parent.stat().st_mode & 0o001:
                closed.add(parent)
    return sorted(closed, key=lambda p: len(p.parts))


def _reopen_in_namespace(directory: Path, hold: Path) -> list[str]:
    """Shell steps, run inside the private mount namespace only, that give ``directory`` mode 0755.

    The directory is bind-mounted aside, replaced by a 0755 tmpfs, and each entry is bound back:
    on the host nothing changes, and the entries keep their own modes. The images have no such
    directory; this only lets the machine's interpreter be reached by the pod's UID.
    """
    q = shlex.quote
    steps = [f"mkdir -p {q(str(hold))}", f"mount --bind {q(str(directory))} {q(str(hold))}"]
    steps.append(f"mount -t tmpfs -o mode=0755 tmpfs {q(str(directory))}")
    for entry in sorted(directory.iterdir()):
        target, source = q(str(entry)), q(str(hold / entry.name))
        if entry.is_symlink():
            steps.append(f"ln -s {q(os.readlink(entry))} {target}")
        elif entry.is_dir():
            steps += [f"mkdir {target}", f"mount --bind {source} {target}"]
        else:
            steps += [f"touch {target}", f"mount --bind {source} {target}"]
    return steps


def _export_small_model(staging: Path, out_dir: Path) -> Path:
    """Train a tiny LightGBM into ``staging`` and export it as the build exports models."""
    train = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((100, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=3)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'})\n"
    )
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(staging)}
    subprocess.run([sys.executable, "-c", train], env=env, check=True, timeout=120)
    archive = out_dir / "lightgbm.bentomodel"
    bentoml = str(Path(sys.executable).parent / "bentoml")
    export = [bentoml, "models", "export", "lightgbm:latest", str(archive)]
    subprocess.run(export, env=env, check=True, timeout=120)
    return archive


def test_runner_serves_with_a_read_only_home_and_the_charts_emptydirs(renders, tmp_path: Path) -> None:
    require_binary("unshare", "util-linux")
    if os.geteuid() != 0:
        unavailable("needs root to build a private read-only mount namespace with unshare(1)")
    runner = next(
        d
        for d in renders["default"].of_kind("Deployment")
        if d["metadata"]["labels"].get("winemeup.io/model") == "lightgbm"
    )
    container = runner["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/tmp" in writable
    if not shutil.which("setpriv"):
        pytest.fail("setpriv(1) (util-linux) is needed to run the runner as the pod's UID")
    pod_root = _world_traversable_dir()
    home = pod_root / "bentoml"
    archive = _export_small_model(tmp_path / "staging", tmp_path)
    base_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(home)}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    # As root, exactly as the image build does.
    subprocess.run(["sh", str(IMPORT_SCRIPT), bentoml, str(archive)], env=base_env, check=True, timeout=120)
    for sub in writable:  # the image creates these directories; the pod mounts emptyDirs on them
        if sub.startswith(POD_HOME + "/"):
            (home / sub.removeprefix(POD_HOME + "/")).mkdir(exist_ok=True)
    scratch = pod_root / "scratch"  # stands in for /tmp (HOME=/tmp in the image)
    scratch.mkdir(mode=0o1777)
    scratch.chmod(0o1777)

    interpreter = [Path(sys.executable), Path(sys.prefix), REPO_ROOT]
    mounts: list[str] = []
    for i, directory in enumerate(_closed_ancestors(interpreter)):
        mounts += _reopen_in_namespace(directory, pod_root / f"hold-{i}")
    mounts += [
        f"mount --bind {shlex.quote(str(home))} {shlex.quote(str(home))}",
        f"mount -o remount,bind,ro {shlex.quote(str(home))}",
        f"mount --bind {shlex.quote(str(REPO_ROOT))} {shlex.quote(str(REPO_ROOT))}",
        f"mount -o remount,bind,ro {shlex.quote(str(REPO_ROOT))}",
    ]
    for path in writable:
        if path.startswith(POD_HOME + "/"):
            target = home / path.removeprefix(POD_HOME + "/")
            mounts.append(f"mount -t tmpfs -o mode=1777 tmpfs {shlex.quote(str(target))}")
    with socket.socket() as sock, socket.socket() as metrics_sock:
        sock.bind(("127.0.0.1", 0))
        metrics_sock.bind(("127.0.0.1", 0))
        port, metrics_port = sock.getsockname()[1], metrics_sock.getsockname()[1]
    serve = [
        "setpriv",
        f"--reuid={POD_UID}",
        f"--regid={POD_UID}",
        "--clear-groups",
        bentoml,
        "serve",
        "services.runner.service:ModelRunner",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    script = " && ".join([*mounts, f"cd {shlex.quote(str(REPO_ROOT))}", "exec " + shlex.join(serve)])
    env = {
        **base_env,
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",
        "WINEMEUP_RUNNER_MODEL": "lightgbm",
        "WINEMEUP_RUNNER_TOKEN": RUNNER_TOKEN,
        "WINEMEUP_RUNNER_METRICS_HOST": "127.0.0.1",
        "WINEMEUP_RUNNER_METRICS_PORT": str(metrics_port),
    }
    command = ["unshare", "-m", "--propagation", "private", "bash", "-c", script]
    try:
        with serving_runner(command, env, port, tmp_path / "runner.log") as url:
            assert_predicts(url, RUNNER_TOKEN)
            # The metrics port Prometheus scrapes, as the pod's UID on a read-only root.
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(metrics, timeout=5) as response:
                assert b"bentoml_service_request" in response.read()
        # BentoML falls back to a temporary directory when it cannot use
        # $BENTOML_HOME/prometheus_multiproc_dir: the chart's emptyDir must make that unneeded.
        fallback = [p for p in scratch.rglob("*.db")]
        assert not fallback, f"metrics went to a fallback directory, not the chart's emptyDir: {fallback}"
    finally:
        shutil.rmtree(pod_root, ignore_errors=True)
