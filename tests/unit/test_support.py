"""The test-support package itself: waiting, required tools, the Redis server on redis-py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.waiting import WaitTimeoutError, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, {"ready": True}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.01) == {"ready": True}


def test_wait_until_fails_saying_what_it_waited_for() -> None:
    def redis_answers() -> bool:
        return False

    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"redis_answers still false after 0.2 s: log tail"):
        wait_until(redis_answers, timeout=0.2, interval=0.01, message=lambda: "log tail")
    assert 1 <= (time.monotonic() - started) / 0.2 < 10  # the timeout, not much beyond it


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(tmp_path: Path, ci: str, outcome: str) -> None:
    """A broken install must not pass CI as a row of skips."""
    test = tmp_path / "test_tool.py"
    test.write_text(
        "from tests.support.binaries import require_binary\n"
        "def test_it():\n"
        "    require_binary('no-such-tool-winemeup', 'apt-get install nothing')\n"
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(test),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert f"1 {outcome}" in result.stdout, result.stdout
    assert "no-such-tool-winemeup is not installed (apt-get install nothing)" in result.stdout + result.stderr


def test_the_redis_server_is_driven_through_redis_py(redis_server) -> None:
    server = redis_server()
    assert server.ping()
    assert server.command("SET", "k", "v") is True
    assert server.command("DBSIZE") == 1
    assert server.command("INFO", "keyspace")["db0"]["keys"] == 1
    server.kill()
    assert not server.ping()
    server.start()  # same port, empty again (no persistence)
    assert server.command("DBSIZE") == 0
