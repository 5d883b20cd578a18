"""The chart's redis.conf is accepted by a real redis-server and sets a cache's policy."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.chart


def test_rendered_redis_conf_runs_as_an_lru_cache_without_persistence(renders, tmp_path: Path) -> None:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        pytest.skip("redis-server/redis-cli not installed (Debian package redis-server)")
    config = next(c for c in renders["default"].of_kind("ConfigMap") if "redis.conf" in c.get("data", {}))
    conf = tmp_path / "redis.conf"
    text = config["data"]["redis.conf"]
    assert "\ndir /data\n" in text  # the pod's emptyDir; redis chdirs there while reading
    conf.write_text(text.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # As in the pod, plus what differs on a shared machine: loopback, a free port, a tmp dir.
    process = subprocess.Popen(
        [server, str(conf), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def ask(*args: str) -> str:
            return subprocess.run(
                [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=5
            ).stdout.strip()

        deadline = time.monotonic() + 10
        while ask("ping") != "PONG":
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.1)
        assert ask("config", "get", "maxmemory-policy").splitlines()[1] == "allkeys-lru"
        assert int(ask("config", "get", "maxmemory").splitlines()[1]) == 200 * 1024 * 1024
        assert ask("config", "get", "save").splitlines() == ["save"]  # no snapshots
        assert ask("config", "get", "appendonly").splitlines()[1] == "no"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process.poll() is None:
            process.kill()
