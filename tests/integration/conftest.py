"""Fixtures starting real model runners (``bentoml serve`` processes) on free ports.

- ``runner_fleet`` (session): all seven runners against the session ``model_store``, started
  in parallel once; ``runner_fleet.urls`` maps model -> base URL. A test that kills a runner
  of this fleet must ``restart`` it before it ends (see ``start_runners`` otherwise).
- ``start_runners`` (function): factory ``start_runners(["lightgbm", "svr"], env={...})`` for a
  private fleet, stopped at teardown; ``fleet.kill(model)`` crashes one runner,
  ``fleet.restart(model)`` brings it back on the same port and waits for ``/readyz``.

Both return a :class:`services.runner.fleet.RunnerFleet`: the same code the local stack
uses to start runners, so tests exercise the launcher's process handling too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from services.runner.fleet import RunnerFleet
from tests.support.runners import RUNNER_READY_TIMEOUT
from tests.support.runners import runner_fleet as _fleet
from winemeup.runtimes import MODEL_NAMES

logger = logging.getLogger(__name__)

__all__ = ["RUNNER_READY_TIMEOUT"]


@pytest.fixture(scope="session")
def runner_fleet(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFleet]:
    """All seven runners, started in parallel once per session; stopped at the end."""
    fleet = _fleet(model_store, tmp_path_factory.mktemp("runner-fleet"), MODEL_NAMES)
    started = time.monotonic()
    fleet.start()
    logger.info("seven runners ready in %.1f s", time.monotonic() - started)
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def start_runners(model_store: Path, tmp_path: Path) -> Iterator[Callable[..., RunnerFleet]]:
    """Factory: ``start_runners(models, env=None, wait=True)`` -> a started private RunnerFleet.

    ``env`` adds variables (e.g. ``WINEMEUP_RUNNER_BATCH_MAX_ROWS``) to every runner of the
    fleet. With ``wait=False`` the processes are launched but not waited for. Every fleet is
    stopped at teardown, whatever the test did to it.
    """
    fleets: list[RunnerFleet] = []

    def start(
        models: Iterable[str] = MODEL_NAMES, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> RunnerFleet:
        fleet = _fleet(model_store, tmp_path / f"fleet-{len(fleets)}", list(models), env)
        fleets.append(fleet)
        if wait:
            fleet.start()
        else:
            for proc in fleet.processes.values():
                proc.launch()
        return fleet

    yield start
    for fleet in reversed(fleets):
        fleet.stop()
