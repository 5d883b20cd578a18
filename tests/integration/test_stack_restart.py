"""``make run`` brings a crashed runner back, with back-off, and says so on its console."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from services.stack.processes import http_status
from tests.support.stack import RunningStack, consecutive_free_ports
from tests.support.waiting import wait_until
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _score(stack: RunningStack, client: httpx.Client, alcohol: float) -> httpx.Response:
    features = {**SCHEMA.example(), "alcohol": alcohol}  # a new row each time: no cache hit
    return client.post(
        stack.state["router_url"] + "/v1/predict",
        headers={"X-API-Key": stack.api_key},
        json={"features": features, "model": "lightgbm"},
    )


def _scored(stack: RunningStack, client: httpx.Client, alcohol: float) -> dict[str, Any] | None:
    response = _score(stack, client, alcohol)
    return dict(response.json()) if response.status_code == 200 else None


def test_a_killed_runner_is_restarted_with_back_off_and_serves_again(
    tmp_path: Path, model_store: Path
) -> None:
    stack = RunningStack(
        tmp_path,
        model_store,
        placement="runner",
        models="lightgbm,svr",
        runner_base_port=str(consecutive_free_ports(len(MODEL_NAMES))),
        cache="memory",
        ui="false",
        prometheus="false",
        restart_backoff_seconds="1",
    )
    with httpx.Client(timeout=30) as client:
        try:
            stack.start()
            assert _score(stack, client, 10.1).status_code == 200
            runner_url = stack.state["runner_urls"]["lightgbm"]
            first = psutil.Process(stack.state["pids"]["runner-lightgbm"])
            workers = first.children(recursive=True)
            assert workers, "bentoml serve should have forked its worker"

            os.kill(first.pid, signal.SIGKILL)  # the runner's main process crashes

            wait_until(lambda: "runner-lightgbm is back" in stack.log(), timeout=120, message=stack.log)
            console = stack.log()
            assert "runner-lightgbm exited (killed by SIGKILL); restarting in 1 s" in console
            assert "runner-lightgbm restarted (restart 1, pid " in console
            # Its orphaned worker was stopped too: the port now belongs to the new runner only.
            _gone, orphans = psutil.wait_procs(workers, timeout=5)
            assert orphans == []
            second = stack.reload_state()["pids"]["runner-lightgbm"]
            assert second != first.pid and psutil.pid_exists(second)
            second_workers = wait_until(lambda: psutil.Process(second).children(recursive=True), timeout=10)
            assert http_status(runner_url + "/readyz") == 200
            # The router reaches the new runner: a row it has never seen is scored again.
            answer = wait_until(lambda: _scored(stack, client, 10.2), timeout=30)
            assert answer["model"] == "lightgbm"
            assert answer["cached"] is False

            # A second crash in a row waits twice as long.
            os.kill(second, signal.SIGKILL)
            wait_until(
                lambda: "runner-lightgbm exited (killed by SIGKILL); restarting in 2 s" in stack.log(),
                timeout=30,
                message=stack.log,
            )
            wait_until(
                lambda: stack.log().count("runner-lightgbm is back") == 2, timeout=120, message=stack.log
            )
            _gone, orphans = psutil.wait_procs(second_workers, timeout=5)
            assert orphans == [], "a worker of the second runner outlived it and answered in its place"

            tree = stack.process.descendants()
            assert stack.shutdown() == 0
            _gone, alive = psutil.wait_procs(tree[1:], timeout=10)
            assert alive == [], f"left running after shutdown: {alive}"
        finally:
            stack.stop()
