"""A runner serves with the filesystem the chart gives it: BENTOML_HOME and the code
read-only, writable only where the rendered Deployment mounts an emptyDir.

The real `bentoml serve` runs in a private mount namespace (`unshare -m`, needs root) where
the model store and the repository are bind-mounted read-only and each emptyDir of the
rendered runner pod under $BENTOML_HOME is a fresh tmpfs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chart_render import REPO_ROOT

pytestmark = [pytest.mark.chart, pytest.mark.slow]

POD_HOME = "/opt/winemeup/bentoml"


def test_runner_serves_with_a_read_only_home_and_the_charts_emptydirs(renders, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to build a private read-only mount namespace")
    runner = next(
        d
        for d in renders["default"].of_kind("Deployment")
        if d["metadata"]["labels"].get("winemeup.io/model") == "lightgbm"
    )
    container = runner["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/tmp" in writable
    home = tmp_path / "bentoml"
    train = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((100, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=3)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'})\n"
    )
    base_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(home)}
    subprocess.run([sys.executable, "-c", train], env=base_env, check=True, timeout=120)
    for sub in writable:  # the image creates these directories; the pod mounts emptyDirs on them
        if sub.startswith(POD_HOME + "/"):
            (home / sub.removeprefix(POD_HOME + "/")).mkdir(exist_ok=True)
    scratch = tmp_path / "scratch"  # stands in for /tmp (HOME=/tmp in the image)
    scratch.mkdir()

    mounts = [
        f"mount --bind {shlex.quote(str(home))} {shlex.quote(str(home))}",
        f"mount -o remount,bind,ro {shlex.quote(str(home))}",
        f"mount --bind {shlex.quote(str(REPO_ROOT))} {shlex.quote(str(REPO_ROOT))}",
        f"mount -o remount,bind,ro {shlex.quote(str(REPO_ROOT))}",
    ]
    for path in writable:
        if path.startswith(POD_HOME + "/"):
            target = home / path.removeprefix(POD_HOME + "/")
            mounts.append(f"mount -t tmpfs -o mode=1777 tmpfs {shlex.quote(str(target))}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = [
        str(Path(sys.executable).parent / "bentoml"),
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
    }
    log = tmp_path / "runner.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "bash", "-c", script],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"runner exited:\n{log.read_text()[-3000:]}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response,
            ):
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, f"runner not ready in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=b'{"rows": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4, 1]]}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b'"scores"' in response.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"bentoml_service_request" in response.read()
        # BentoML falls back to a temporary directory when it cannot use
        # $BENTOML_HOME/prometheus_multiproc_dir: the chart's emptyDir must make that unneeded.
        fallback = [p for p in scratch.rglob("*.db")]
        assert not fallback, f"metrics went to a fallback directory, not the chart's emptyDir: {fallback}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
