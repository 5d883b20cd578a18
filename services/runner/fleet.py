"""Starting runner processes: one ``bentoml serve`` per model, each with its own BentoML home.

BentoML derives both the model store (``$BENTOML_HOME/models``) and its Prometheus
multiprocess directory (``$BENTOML_HOME/prometheus_multiproc_dir``, wiped by every
``bentoml serve`` at start) from ``BENTOML_HOME``, with no separate override. Two runners
sharing one home corrupt each other's ``/metrics``. So each runner gets a private home whose
``models`` is a symlink to the shared store: one copy of the models, one metrics directory
per process. Used by the local stack and by the integration fixtures.

Each runner also gets its metrics port (``WINEMEUP_RUNNER_METRICS_PORT``; 0 when the fleet
names none, so seven runners never fight over the default) and the shared secret the router
sends (``WINEMEUP_RUNNER_TOKEN``) when the fleet has one.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.stack.processes import ManagedProcess, start_all, stop_all

logger = logging.getLogger(__name__)

SERVICE = "services.runner.service:ModelRunner"
"""The import string ``bentoml serve`` is given."""


def runner_home(store: Path, home: Path) -> Path:
    """Make ``home`` a BentoML home whose ``models`` is the shared store's ``models``.

    ``store`` is the BentoML home holding the model store. An existing ``models`` symlink
    pointing elsewhere is replaced; a real ``models`` directory is never touched (error).
    """
    target = (Path(store) / "models").resolve()
    if not target.is_dir():
        raise FileNotFoundError(f"{store} holds no model store (no models/ directory)")
    home.mkdir(parents=True, exist_ok=True)
    link = home / "models"
    if link.is_symlink():
        if link.resolve() == target:
            return home
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} is a real directory, not a link to a shared store")
    link.symlink_to(target, target_is_directory=True)
    return home


def runner_process(
    model: str,
    port: int,
    store: Path,
    run_dir: Path,
    *,
    host: str = "127.0.0.1",
    version: str | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 120.0,
    metrics_port: int = 0,
    token: str | None = None,
) -> ManagedProcess:
    """A (not yet started) ``bentoml serve`` of ``model`` on ``port``, ready when /readyz is 200.

    Its home is ``run_dir/runners/<model>``, its log ``run_dir/logs/runner-<model>.log``. It
    serves its metrics on ``metrics_port`` too (0: only on ``port``) and requires ``token``
    (without one, ``env`` must allow an unauthenticated runner or it refuses to start).
    """
    home = runner_home(store, run_dir / "runners" / model)
    child_env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "WINEMEUP_RUNNER_MODEL": model,
        "WINEMEUP_RUNNER_METRICS_PORT": str(metrics_port),
        **({"WINEMEUP_RUNNER_METRICS_HOST": host} if metrics_port else {}),
        **({"WINEMEUP_RUNNER_VERSION": version} if version else {}),
        **({"WINEMEUP_RUNNER_TOKEN": token} if token else {}),
        **(env or {}),
    }
    return ManagedProcess(
        argv=[sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)],
        log_path=run_dir / "logs" / f"runner-{model}.log",
        env=child_env,
        ready_url=f"http://{_client_host(host)}:{port}/readyz",
        ready_timeout=ready_timeout,
        name=f"runner-{model}",
    )


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


@dataclass
class RunnerFleet:
    """Runner processes by model name: start them in parallel, kill, restart, stop.

    ``ports`` maps each model to its port; ``urls`` gives the base URL of each runner (the
    shape RouterSettings.runner_urls takes). ``metrics_ports`` maps models to their metrics
    port (absent: none); ``token`` is the shared secret every runner requires (the router's
    ``runner_token``).
    """

    store: Path
    run_dir: Path
    ports: dict[str, int]
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0
    metrics_ports: dict[str, int] = field(default_factory=dict)
    token: str | None = None
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for model, port in self.ports.items():
            self.processes[model] = runner_process(
                model,
                port,
                self.store,
                self.run_dir,
                host=self.host,
                env=self.env,
                ready_timeout=self.ready_timeout,
                metrics_port=self.metrics_ports.get(model, 0),
                token=self.token,
            )

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each model's runner."""
        return {m: f"http://{_client_host(self.host)}:{p}" for m, p in self.ports.items()}

    def url(self, model: str) -> str:
        """Base URL of one model's runner."""
        return self.urls[model]

    def metrics_url(self, model: str) -> str:
        """URL of one model's metrics listener (KeyError when it has none)."""
        return f"http://{_client_host(self.host)}:{self.metrics_ports[model]}/metrics"

    def start(self, models: Iterable[str] | None = None) -> RunnerFleet:
        """Start the given runners (default: all) at once and wait until every one is ready."""
        start_all([self.processes[m] for m in (models or self.ports)], self.ready_timeout)
        return self

    def kill(self, model: str) -> None:
        """SIGKILL one runner (a crash): its port stops answering at once."""
        self.processes[model].kill()

    def stop_one(self, model: str) -> None:
        """Stop one runner gracefully."""
        self.processes[model].stop()

    def restart(self, model: str, wait: bool = True) -> None:
        """Start one runner again on the same port (after kill or stop); wait for /readyz by default."""
        proc = self.processes[model]
        if proc.alive:
            proc.stop()
        proc.launch()
        if wait:
            proc.wait_ready()

    def alive(self, model: str) -> bool:
        """Whether a runner's process is running."""
        return self.processes[model].alive

    def stop(self) -> None:
        """Stop every runner (SIGTERM, then SIGKILL after the grace period)."""
        stop_all(self.processes.values())

    def remove_homes(self) -> None:
        """Delete the per-runner homes (the shared store behind the links is left alone)."""
        shutil.rmtree(self.run_dir / "runners", ignore_errors=True)

    def __enter__(self) -> RunnerFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
