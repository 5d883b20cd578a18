"""The chart's Redis runs as the pod runs it: its rendered redis.conf and the container's own
command, with the password from the rendered Secret. A real redis-server must act as an LRU
cache without persistence, refuse clients without the password, and never carry the password
on its command line."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chart


def test_rendered_redis_runs_as_a_password_protected_lru_cache(renders, tmp_path: Path) -> None:
    require_binary("redis-server", "Debian package redis-server")  # the container's command runs it
    cli = require_binary("redis-cli", "Debian package redis-server")
    render = renders["default"]
    config = next(c for c in render.of_kind("ConfigMap") if "redis.conf" in c.get("data", {}))
    statefulset = render.of_kind("StatefulSet")[0]
    container = next(c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "redis")
    ref = next(e for e in container["env"] if e["name"] == "REDISCLI_AUTH")["valueFrom"]["secretKeyRef"]
    secret = render.get("Secret", ref["name"])
    password = base64.b64decode(secret["data"][ref["key"]]).decode()
    assert len(password) >= 32

    conf = tmp_path / "redis.conf"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    text = config["data"]["redis.conf"]
    assert "\ndir /data\n" in text  # the pod's emptyDir; redis chdirs there while reading
    assert password not in text
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # As in the pod, plus what differs on a shared machine: loopback, a free port, tmp dirs.
    text = text.replace("\ndir /data\n", f"\ndir {tmp_path}\n").replace("/run/redis/", f"{run_dir}/")
    conf.write_text(text + f"port {port}\nbind 127.0.0.1\n")
    command = [
        part.replace("/etc/redis/redis.conf", str(conf)).replace("/run/redis/", f"{run_dir}/")
        for part in container["command"]
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, "REDISCLI_AUTH": password},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def ask(*args: str, auth: str | None = password) -> str:
            env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
            if auth is not None:
                env["REDISCLI_AUTH"] = auth
            return subprocess.run(
                [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=5, env=env
            ).stdout.strip()

        def answers() -> bool:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            return ask("ping") == "PONG"

        wait_until(answers, 10, interval=0.1, message="redis-server did not answer")
        assert "NOAUTH" in ask("ping", auth=None)
        assert ask("ping", auth="not-the-password") != "PONG"
        assert ask("config", "get", "maxmemory-policy").splitlines()[1] == "allkeys-lru"
        assert int(ask("config", "get", "maxmemory").splitlines()[1]) == 200 * 1024 * 1024
        assert ask("config", "get", "save").splitlines() == ["save"]  # no snapshots
        assert ask("config", "get", "appendonly").splitlines()[1] == "no"
        (auth_file,) = run_dir.iterdir()
        assert auth_file.stat().st_mode & 0o077 == 0, "the password file is readable by others"
        cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert password not in cmdlines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process.poll() is None:
            os.killpg(process.pid, 9)
