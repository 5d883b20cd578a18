"""Runner fleets for tests: the stack's own :class:`RunnerFleet` on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from services.runner.fleet import RunnerFleet
from services.runner.middleware import TOKEN_HEADER
from services.stack.processes import REPO_ROOT, free_port, http_status
from tests.support.waiting import wait_until

EXAMPLE_ROWS_BODY = b'{"rows": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4, 1]]}'
"""One model-input row for a runner's JSON /predict."""

RUNNER_READY_TIMEOUT = 180.0
"""Seven BentoML processes starting at once on two shared cores can take a while."""

OPEN_RUNNER_ENV = {"WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED": "true"}
"""What a runner without a token needs to start at all (loopback test fleets only)."""


def runner_fleet(
    store: Path,
    run_dir: Path,
    models: Iterable[str],
    env: Mapping[str, str] | None = None,
    token: str | None = None,
) -> RunnerFleet:
    """A (not yet started) fleet of ``models`` on free ports (API and metrics), each runner homed
    under ``run_dir``. With ``token`` every runner requires it; without, they serve anyone
    (``OPEN_RUNNER_ENV``), as the routers the integration tests start send no token."""
    models = list(models)
    return RunnerFleet(
        store=store,
        run_dir=run_dir,
        ports={m: free_port() for m in models},
        env={**({} if token else OPEN_RUNNER_ENV), **(env or {})},
        ready_timeout=RUNNER_READY_TIMEOUT,
        metrics_ports={m: free_port() for m in models},
        token=token,
    )


@contextlib.contextmanager
def serving_runner(
    argv: Sequence[str], env: Mapping[str, str], port: int, log: Path, ready_timeout: float = 90.0
) -> Iterator[str]:
    """Run a command that serves a runner on ``port`` (exactly ``env``, its own session), wait for
    ``/readyz``, yield its URL; stop its whole process group afterwards."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, f"runner exited:\n{log.read_text()[-3000:]}"
        return http_status(url + "/readyz") == 200

    try:
        wait_until(ready, ready_timeout, interval=0.3, message=lambda: log.read_text()[-3000:])
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def assert_predicts(url: str, token: str | None = None) -> None:
    """The runner at ``url`` scores the example row through its JSON /predict (sending ``token``)."""
    headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token else {})}
    request = urllib.request.Request(url + "/predict", data=EXAMPLE_ROWS_BODY, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b'"scores"' in response.read()
