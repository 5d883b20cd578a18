"""``python -m services.stack`` as a user runs it, in a subprocess on free ports (see RunningStack)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.stack.processes import ManagedProcess, free_port, port_is_free
from winemeup.schema import SCHEMA


def consecutive_free_ports(count: int) -> int:
    """A base port such that base .. base+count-1 are all free now."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


class RunningStack:
    """A launcher subprocess, the state it wrote, and every process it started.

    ``settings`` are StackSettings fields as strings (``placement="inline"``); the run dir,
    router port, API key and a generous ready timeout are set here.
    """

    def __init__(self, tmp_path: Path, model_store: Path, **settings: str) -> None:
        self.run_dir = tmp_path / "run"
        self.api_key = "wmu-test-key"
        env = {
            "WINEMEUP_STACK_MODEL_STORE": str(model_store),
            "WINEMEUP_STACK_RUN_DIR": str(self.run_dir),
            "WINEMEUP_STACK_ROUTER_PORT": str(free_port()),
            "WINEMEUP_STACK_API_KEY": self.api_key,
            "WINEMEUP_STACK_READY_TIMEOUT_SECONDS": "150",
            **{f"WINEMEUP_STACK_{k.upper()}": v for k, v in settings.items()},
        }
        self.process = ManagedProcess(
            argv=[sys.executable, "-m", "services.stack"],
            log_path=tmp_path / "stack.log",
            env=env,
            ready_check=self._state_written,
            ready_timeout=240,
            name="stack",
        )
        self.state: dict[str, Any] = {}
        self.tree: list[psutil.Process] = []

    def _state_written(self) -> bool:
        """Whether this launcher (not an earlier one of the same run dir) wrote stack.json."""
        try:
            state = json.loads((self.run_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(state.get("launcher_pid") == self.process.pid)

    def start(self) -> RunningStack:
        self.process.start()
        self.reload_state()
        self.tree = self.process.descendants()
        return self

    def reload_state(self) -> dict[str, Any]:
        """Read ``stack.json`` again (the launcher rewrites it when it restarts a component)."""
        self.state = json.loads((self.run_dir / "stack.json").read_text())
        return self.state

    def log(self) -> str:
        """What the launcher printed so far (its console)."""
        return self.process.log_path.read_text(errors="replace")

    def predict(self, client: httpx.Client, model: str = "lightgbm") -> dict[str, Any]:
        response = client.post(
            self.state["router_url"] + "/v1/predict",
            headers={"X-API-Key": self.api_key},
            json={"features": SCHEMA.example(), "model": model},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def shutdown(self, sig: int = signal.SIGTERM) -> int:
        """Signal the launcher like a user would and return its exit code."""
        assert self.process.process is not None
        self.process.process.send_signal(sig)
        return self.process.process.wait(timeout=60)

    def leftovers(self) -> list[str]:
        return [
            f"{p.pid} {p.name()}" for p in self.tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]

    def stop(self) -> None:
        self.process.stop(tree=self.tree or None)
