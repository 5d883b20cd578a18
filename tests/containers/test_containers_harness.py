"""The harness's own failure paths, on real containers: a pod that never becomes ready is
reported with the probe it failed and its container's last 50 log lines, and everything the
run started is removed; a run interrupted by SIGTERM leaves nothing behind either."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.containers.conftest import ContainersSettings, render
from tests.containers.harness import LABEL, REPO_ROOT, PlayedRelease, PodNotReadyError, podman
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow]


def _leftovers(run_id: str) -> list[str]:
    found = []
    for listing in (("pod", "ps"), ("ps", "--all"), ("network", "ls")):
        out = podman(*listing, "--filter", f"label={LABEL}={run_id}", "--format", "{{.ID}}")
        found += [f"{listing[0]} {i}" for i in out.split()]
    return found


def test_a_pod_never_ready_is_reported_and_everything_removed(
    containers_settings: ContainersSettings, engine_ready: None
) -> None:
    run_id = uuid.uuid4().hex[:6]
    docs = render(
        containers_settings, f"never-{run_id}", "router.probes.readiness.httpGet.path=/no-such-route"
    )
    played = PlayedRelease(docs, run_id=run_id)
    with pytest.raises(PodNotReadyError) as failure:
        played.up(only=["router"], ready_timeout=15)
    message = str(failure.value)
    assert "container router: not ready after 15 s" in message, message
    assert "readinessProbe httpGet http://:8000/no-such-route -> HTTP 404" in message, message
    log_part = message.split("last 50 lines of its log:\n", 1)[1]
    assert 0 < len(log_part.splitlines()) <= 50 and "Uvicorn running" in log_part, log_part
    assert _leftovers(run_id) == []
    assert not played.run_dir.exists()


def test_sigterm_mid_run_leaves_nothing(containers_settings: ContainersSettings, engine_ready: None) -> None:
    run_id = uuid.uuid4().hex[:6]
    script = textwrap.dedent(f"""
        import time
        from tests.containers.conftest import ContainersSettings, render
        from tests.containers.harness import PlayedRelease, interrupt_on_sigterm
        played = PlayedRelease(render(ContainersSettings(), "term-{run_id}"), run_id="{run_id}")
        with interrupt_on_sigterm():
            try:
                played.up(only=["redis"], ready_timeout=120)
                print("ready", flush=True)
                time.sleep(600)
            finally:
                played.down()
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", line + process.stdout.read()
        assert _leftovers(run_id), "the run started nothing"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    wait_until(lambda: _leftovers(run_id) == [], 10, message=lambda: str(_leftovers(run_id)))
