"""``python -m services.stack`` as a user runs it: start, predict through the router, stop.

The launcher runs as a real subprocess on free, non-default ports against the session's
fast-trained model store; shutdown must leave no process behind (BentoML workers, which
circus starts in sessions of their own, included).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from services.stack.processes import free_port, http_status, port_is_free
from tests.support.stack import RunningStack, consecutive_free_ports
from winemeup.runtimes import MODEL_NAMES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def client() -> Any:
    with httpx.Client(timeout=30) as c:
        yield c


def test_runner_mode_predicts_through_runners_caches_and_stops_clean(
    tmp_path: Path, model_store: Path, client: httpx.Client
) -> None:
    base = consecutive_free_ports(len(MODEL_NAMES))
    metrics_base = consecutive_free_ports(len(MODEL_NAMES))
    stack = RunningStack(
        tmp_path,
        model_store,
        placement="runner",
        runner_base_port=str(base),
        runner_metrics_base_port=str(metrics_base),
        cache="redis",
        reuse_redis="false",
        redis_port=str(free_port()),
        prometheus_port=str(free_port()),
        ui_port=str(free_port()),
    )
    try:
        stack.start()
        state = stack.state
        assert state["runner_urls"] == {m: f"http://127.0.0.1:{base + i}" for i, m in enumerate(MODEL_NAMES)}
        assert "own redis-server" in state["redis"]
        for url in state["runner_urls"].values():
            assert http_status(url + "/readyz") == 200

        first, second = stack.predict(client), stack.predict(client)
        assert first["cached"] is False and second["cached"] is True
        assert first["score"] == second["score"] and first["model"] == "lightgbm"

        # The score came from the lightgbm runner process, not from a model inside the router.
        metrics = client.get(state["runner_urls"]["lightgbm"] + "/metrics").text
        assert any(
            line.startswith('winemeup_runner_binary_requests_total{http_response_code="200"}')
            and not line.endswith(" 0.0")
            for line in metrics.splitlines()
        ), "the lightgbm runner counted no /binary/predict (the router's route for misses)"

        if state["prometheus_url"]:
            assert http_status(state["prometheus_url"] + "/-/ready") == 200
            config = (stack.run_dir / "prometheus" / "prometheus.yml").read_text()
            # Runners are scraped on their metrics ports; their API ports answer only the router.
            assert f"127.0.0.1:{metrics_base}" in config and f"127.0.0.1:{base}" not in config
            assert state["router_url"].removeprefix("http://") in config
            scraped = client.get(f"http://127.0.0.1:{metrics_base}/metrics")
            assert scraped.status_code == 200 and "bentoml_service_request_total" in scraped.text
        if state["ui_url"]:
            assert http_status(state["ui_url"] + "/_stcore/health") == 200
        assert (stack.run_dir / "logs" / "router.log").is_file()
        assert (stack.run_dir / "logs" / "runner-svr.log").is_file()

        assert stack.shutdown(signal.SIGTERM) == 0
        assert stack.leftovers() == []
        assert not (stack.run_dir / "stack.json").exists()
        assert all(port_is_free(base + i) for i in range(len(MODEL_NAMES)))
    finally:
        stack.stop()


def test_inline_mode_starts_no_runners_and_stops_on_ctrl_c(
    tmp_path: Path, model_store: Path, client: httpx.Client
) -> None:
    stack = RunningStack(
        tmp_path, model_store, placement="inline", cache="memory", ui="false", prometheus="false"
    )
    try:
        stack.start()
        assert stack.state["runner_urls"] == {}
        assert not any(name.startswith("runner-") for name in stack.state["pids"])
        assert not any("bentoml" in " ".join(p.cmdline()) for p in stack.tree if p.is_running())
        first, second = stack.predict(client), stack.predict(client)
        assert (first["cached"], second["cached"]) == (False, True)
        assert stack.shutdown(signal.SIGINT) == 0
        assert stack.leftovers() == []
    finally:
        stack.stop()


def test_taken_port_fails_fast_and_names_it(tmp_path: Path, model_store: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        stack = RunningStack(tmp_path, model_store, placement="inline", router_port=str(taken))
        stack.process.launch()
        assert stack.process.process is not None
        started = time.monotonic()
        code = stack.process.process.wait(timeout=60)
        assert code == 1
        assert time.monotonic() - started < 30
        log = stack.process.log_path.read_text()
        assert f"{taken} for router (WINEMEUP_STACK_ROUTER_PORT)" in log


def test_next_start_stops_what_a_killed_launcher_left(tmp_path: Path, model_store: Path) -> None:
    settings = {"placement": "inline", "cache": "memory", "ui": "false", "prometheus": "false"}
    first = RunningStack(tmp_path, model_store, **settings)
    second = RunningStack(tmp_path, model_store, **settings)
    third = RunningStack(tmp_path, model_store, **settings)
    third.process.log_path = tmp_path / "third.log"
    try:
        first.start()
        assert first.process.process is not None
        first.process.process.kill()  # SIGKILL: no chance to clean up
        first.process.process.wait(timeout=10)
        orphans = [p for p in first.tree[1:] if p.is_running()]
        assert orphans, "the router should outlive a SIGKILLed launcher"

        second.start()
        psutil.wait_procs(orphans, timeout=15)
        assert first.leftovers() == []

        # A third launcher on the same run dir refuses to start while the second one lives.
        third.process.launch()
        assert third.process.process is not None and third.process.process.wait(timeout=60) == 1
        assert "another stack" in third.process.log_path.read_text()
        assert (second.run_dir / "stack.json").is_file()

        assert second.shutdown() == 0
        assert second.leftovers() == []
    finally:
        for stack in (third, second, first):
            stack.stop()


def test_an_empty_store_is_trained_first(tmp_path: Path, data_dir: Path, client: httpx.Client) -> None:
    """Only the missing model is trained (svr, fast mode: seconds), then served by its runner."""
    store = tmp_path / "empty-store"
    stack = RunningStack(
        tmp_path,
        store,
        models="svr",
        fast="true",
        data_dir=str(data_dir),
        reports_dir=str(tmp_path / "reports"),
        placement="runner",
        runner_base_port=str(consecutive_free_ports(len(MODEL_NAMES))),
        runner_metrics_base_port=str(consecutive_free_ports(len(MODEL_NAMES))),
        cache="memory",
        ui="false",
        prometheus="false",
    )
    try:
        stack.start()
        assert [p.name for p in (store / "models").iterdir()] == ["svr"]
        assert list(stack.state["runner_urls"]) == ["svr"]
        assert stack.predict(client, model="svr")["model"] == "svr"
        assert any((tmp_path / "reports").iterdir()), "training ignored WINEMEUP_STACK_REPORTS_DIR"
        assert stack.shutdown() == 0
        assert stack.leftovers() == []
    finally:
        stack.stop()
