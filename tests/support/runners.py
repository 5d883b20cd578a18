"""Runner fleets for tests: the stack's own :class:`RunnerFleet` on free ports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from services.runner.fleet import RunnerFleet
from services.stack.processes import free_port

RUNNER_READY_TIMEOUT = 180.0
"""Seven BentoML processes starting at once on two shared cores can take a while."""


def runner_fleet(
    store: Path, run_dir: Path, models: Iterable[str], env: Mapping[str, str] | None = None
) -> RunnerFleet:
    """A (not yet started) fleet of ``models`` on free ports, each runner homed under ``run_dir``."""
    return RunnerFleet(
        store=store,
        run_dir=run_dir,
        ports={m: free_port() for m in models},
        env=dict(env or {}),
        ready_timeout=RUNNER_READY_TIMEOUT,
    )
