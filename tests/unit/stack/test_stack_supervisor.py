"""The local stack's restart rule: back-off like CrashLoopBackOff, and what the console says."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from services.stack.processes import ManagedProcess
from services.stack.supervisor import Backoff, Supervisor
from tests.support.waiting import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_up_to_the_cap_and_start_over_after_a_long_run() -> None:
    backoff = Backoff(initial=1.0, cap=10.0, reset_after=60.0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.ran_for(59.0)
    assert backoff.next_delay() == 10
    backoff.ran_for(60.0)
    assert backoff.next_delay() == 1


def crash(proc: ManagedProcess) -> None:
    """SIGKILL from outside, as a crash or the OOM killer would (the exit code stays -9)."""
    assert proc.pid is not None
    os.killpg(proc.pid, signal.SIGKILL)
    wait_until(lambda: not proc.alive, timeout=10)


def _sleeper(tmp_path: Path, name: str = "runner-svr") -> ManagedProcess:
    return ManagedProcess(
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / f"{name}.log",
        name=name,
    ).launch()


def test_a_dead_component_comes_back_after_its_delay_and_the_console_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.stack.supervisor")
    clock = FakeClock()
    proc = _sleeper(tmp_path)
    changes: list[int | None] = []
    supervisor = Supervisor(
        {"runner-svr": proc}, initial=1.0, cap=4.0, clock=clock, on_change=lambda: changes.append(proc.pid)
    )
    try:
        first_pid = proc.pid
        for delay in (1, 2, 4, 4):
            crash(proc)
            supervisor.tick()  # notices the exit
            assert not proc.alive
            clock.now += delay - 0.1
            supervisor.tick()
            assert not proc.alive, f"restarted before its {delay} s back-off"
            clock.now += 0.1
            supervisor.tick()
            assert proc.alive
            supervisor.tick()  # no readiness probe: ready as soon as it runs
        assert proc.pid != first_pid and supervisor.restarts("runner-svr") == 4
        assert len(changes) == 4 and changes[-1] == proc.pid
        messages = [r.getMessage() for r in caplog.records]
        assert "runner-svr exited (killed by SIGKILL); restarting in 1 s" in messages[0]
        assert any(m.startswith("runner-svr restarted (restart 1, pid ") for m in messages)
        assert any(m.startswith("runner-svr is back: ready") for m in messages)
        assert sum("restarting in 4 s" in m for m in messages) == 2
    finally:
        proc.stop()


def test_a_component_that_runs_long_enough_starts_over_at_the_first_delay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.stack.supervisor")
    clock = FakeClock()
    proc = _sleeper(tmp_path)
    supervisor = Supervisor({"ui": proc}, initial=1.0, cap=30.0, reset_after=60.0, clock=clock)
    try:
        for _ in range(3):  # delays 1, 2, 4
            crash(proc)
            supervisor.tick()
            clock.now += 5
            supervisor.tick()
        clock.now += 61
        supervisor.tick()  # ran for a minute: forgiven
        crash(proc)
        supervisor.tick()
        assert "ui exited (killed by SIGKILL); restarting in 1 s" in caplog.records[-1].getMessage()
    finally:
        proc.stop()


def test_leftover_workers_of_a_dead_component_are_killed_before_it_restarts(tmp_path: Path) -> None:
    """Like circus behind ``bentoml serve``: a worker in a session of its own outlives its parent."""
    import psutil

    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess(
        argv=[sys.executable, "-c", script], log_path=tmp_path / "arbiter.log", name="arbiter"
    )
    proc.launch()
    wait_until(lambda: len(proc.descendants()) == 2, timeout=10)
    worker = proc.descendants()[1]
    supervisor = Supervisor({"arbiter": proc}, clock=FakeClock())
    try:
        assert proc.process is not None
        proc.process.kill()  # only the parent dies
        proc.process.wait(timeout=10)
        assert worker.is_running()
        supervisor.tick()
        psutil.wait_procs([worker], timeout=5)
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    finally:
        proc.stop()
        if worker.is_running():
            worker.kill()
