"""The chart's router configuration runs the real router, and the chart's `helm test` script
passes against it (and fails with a wrong key).

The router is started as a process from the environment the chart renders (router ConfigMap +
the Secret's keys), with an inline LightGBM model saved to a model store in tmp_path; only the
listen address and the model store path are changed from what the pod gets. As root, it runs
in a private mount namespace where the model store and the code are read-only and only the
router pod's emptyDirs under $BENTOML_HOME are writable, as with readOnlyRootFilesystem.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_render import REPO_ROOT, VALUES_FILES, helm_template, parse

from services.stack.processes import http_status
from tests.support.binaries import require_path
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chart


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tiny_model_store(home: Path) -> None:
    """A BentoML home holding a small LightGBM model named lightgbm (a few trees, no data)."""
    code = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "rng = np.random.default_rng(0); X = rng.random((200, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=5)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'},\n"
        "                            metadata={'metrics': {}})\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)


@pytest.fixture(scope="module")
def chart_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(base URL, rendered docs' router env) of a router started from the chart's config."""
    require_path(REPO_ROOT / "services" / "router" / "__main__.py", "the router's entry point")
    home = tmp_path_factory.mktemp("chart-router-store")
    work = tmp_path_factory.mktemp("chart-router-work")
    _tiny_model_store(home)
    docs = parse(
        helm_template(
            "-f",
            str(VALUES_FILES["minimal"]),
            "--set",
            "models.lightgbm.placement=inline",
            "--set",
            "auth.apiKeys=chart-key-1\\,chart-key-2",
        )
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-router"))
    env = dict(config["data"])
    assert env["WINEMEUP_ROUTER_PLACEMENTS"] == '{"lightgbm":"inline"}'
    assert env["WINEMEUP_ROUTER_MODEL_STORE"] == "/opt/winemeup/bentoml"
    port = _free_port()
    env |= {
        "WINEMEUP_ROUTER_HOST": "127.0.0.1",
        "WINEMEUP_ROUTER_PORT": str(port),
        "WINEMEUP_ROUTER_MODEL_STORE": str(home),
        "WINEMEUP_ROUTER_API_KEYS": "chart-key-1,chart-key-2",
        "WINEMEUP_ROUTER_ADMIN_API_KEYS": "chart-admin",
    }
    test_script = next(d for d in docs if d["kind"] == "ConfigMap" and "helm-test.py" in d.get("data", {}))
    script = work / "helm-test.py"
    script.write_text(test_script["data"]["helm-test.py"])
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WINEMEUP_")},
        **env,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    argv = [sys.executable, "-m", "services.router"]
    if os.geteuid() == 0 and shutil.which("unshare"):
        router = next(
            d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-router")
        )
        container = router["spec"]["template"]["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = []
        for path in (home, REPO_ROOT):
            mounts += [f"mount --bind {shlex.quote(str(path))} {shlex.quote(str(path))}"]
            mounts += [f"mount -o remount,bind,ro {shlex.quote(str(path))}"]
        for mount in container["volumeMounts"]:
            if mount["mountPath"].startswith("/opt/winemeup/bentoml/"):
                target = home / mount["mountPath"].removeprefix("/opt/winemeup/bentoml/")
                mounts.append(f"mount -t tmpfs tmpfs {shlex.quote(str(target))}")
        script_line = " && ".join([*mounts, f"cd {shlex.quote(str(REPO_ROOT))}", "exec " + shlex.join(argv)])
        argv = ["unshare", "-m", "--propagation", "private", "bash", "-c", script_line]
        full_env |= {"HOME": str(work), "TMPDIR": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    log = work / "router.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def router_ready() -> bool:
            assert process.poll() is None, f"router exited:\n{log.read_text()[-3000:]}"
            return http_status(base + "/readyz") == 200

        wait_until(router_ready, 60, interval=0.2, message=lambda: log.read_text()[-3000:])
        # The environment of a second replica (another port): see the replica test below.
        replica_env = {k: v for k, v in full_env.items() if k not in ("HOME", "TMPDIR")}
        yield base, {"script": str(script), "python_path": str(REPO_ROOT), "env": json.dumps(replica_env)}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _run_helm_test(base: str, paths: dict[str, str], key: str) -> subprocess.CompletedProcess[str]:
    env = {
        "ROUTER_URL": base,
        "API_KEY": key,
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": paths["python_path"],
    }
    return subprocess.run(
        [sys.executable, paths["script"]], env=env, capture_output=True, text=True, timeout=90, cwd=REPO_ROOT
    )


def test_helm_test_script_passes_against_a_router_configured_by_the_chart(chart_router) -> None:
    base, paths = chart_router
    # The pod gets the whole api-keys value; the script uses the first key.
    result = _run_helm_test(base, paths, "chart-key-1,chart-key-2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cache hit" in result.stdout and "helm test passed" in result.stdout


def test_helm_test_script_fails_with_a_wrong_key(chart_router) -> None:
    base, paths = chart_router
    result = _run_helm_test(base, paths, "not-a-key")
    assert result.returncode != 0
    assert "401" in result.stderr


class _TwoReplicas(http.server.ThreadingHTTPServer):
    """A stand-in for the router Service in front of two replicas: GET /metrics goes to a
    replica that has served no prediction, everything else to the one that has."""

    daemon_threads = True

    def __init__(self, served: str, fresh: str):
        self.served, self.fresh = served, fresh
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _TwoReplicas

    def _forward(self) -> None:
        base = self.server.fresh if self.path.startswith("/metrics") else self.server.served
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("x-api-key", "content-type")}
        request = urllib.request.Request(base + self.path, data=body, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def test_helm_test_passes_whichever_replica_answers(chart_router, tmp_path: Path) -> None:
    """Two router replicas behind one Service: the replica that answers /metrics may have
    served no prediction yet (no histogram samples). `helm test` must pass anyway."""
    base, paths = chart_router
    port = _free_port()
    env = {**json.loads(paths["env"]), "WINEMEUP_ROUTER_PORT": str(port)}
    log = tmp_path / "replica.log"
    with open(log, "wb") as out:
        fresh = subprocess.Popen(
            [sys.executable, "-m", "services.router"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = _TwoReplicas(base, f"http://127.0.0.1:{port}")
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:

        def replica_up() -> bool:
            assert fresh.poll() is None, f"replica exited:\n{log.read_text()[-3000:]}"
            return http_status(f"http://127.0.0.1:{port}/healthz") == 200

        wait_until(replica_up, 60, interval=0.2, message=lambda: log.read_text()[-3000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"winemeup_router_request_duration_seconds_bucket" not in response.read()
        result = _run_helm_test(f"http://127.0.0.1:{proxy.server_port}", paths, "chart-key-1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "helm test passed" in result.stdout
    finally:
        proxy.shutdown()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fresh.pid, signal.SIGTERM)
        try:
            fresh.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(fresh.pid, signal.SIGKILL)
