"""Fixtures every test suite shares; the machinery behind them lives in :mod:`tests.support`.

Import-time side effect on purpose: BentoML reads ``BENTOML_DO_NOT_TRACK`` and
``BENTOML_HOME`` when it is first imported, so both are set here before any test module can
import it. Every test session gets its own BentoML home under the system temp directory.
Tests may set environment variables for the subprocesses they start; project code reads the
environment only through its settings modules.

Test modules import helpers from ``tests.support`` directly; the fixtures below keep the
names suites already use (``router_launcher``, ``reference_scorer`` ...).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.stack.processes import ManagedProcess, free_port
from tests.support.metrics import metric_value
from tests.support.model_store import (
    TrainingFailedError,
    cached_store,
    data_dir_candidates,
    find_data_dir,
    reference_scores,
    train_store,
)
from tests.support.redis import RedisServer, launch_redis
from tests.support.router import RouterHandle, launch_router

os.environ["BENTOML_DO_NOT_TRACK"] = "True"
_SESSION_BENTOML_HOME = Path(tempfile.mkdtemp(prefix="winemeup-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_SESSION_BENTOML_HOME)

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"

logger = logging.getLogger(__name__)

__all__ = ["RedisServer", "RouterHandle", "launch_redis", "launch_router", "metric_value", "reference_scores"]


@pytest.fixture
def managed_process(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Factory: ``managed_process(argv, env=..., ready_url=...)`` started now, stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(argv: list[str], name: str = "process", **kwargs: object) -> ManagedProcess:
        proc = ManagedProcess(argv=argv, log_path=tmp_path / f"{name}-{len(started)}.log", **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server(*extra_args)`` starts a private Redis on a free port; stopped at teardown."""
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = RedisServer(port=free_port(), log_dir=tmp_path, extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_launcher() -> Callable[..., RedisServer]:
    """:func:`tests.support.redis.launch_redis`, for module-scoped servers (caller stops them)."""
    return launch_redis


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The UCI Wine Quality CSV files: the training setting's folder (the shipped copy by default)."""
    from training.settings import TrainingSettings

    candidates = data_dir_candidates(TrainingSettings().data_dir)
    found = find_data_dir(candidates)
    if found is None:
        pytest.fail(f"Wine Quality CSV files not found in any of {[str(p) for p in candidates]}")
    return found


@pytest.fixture(scope="session")
def model_store(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home with the seven models (``python -m training train --fast``), read-only.

    Returns the BentoML home path (pass it as ``BENTOML_HOME`` / the router's ``model_store``).
    Reused between sessions while the code and data are unchanged (see
    :mod:`tests.support.model_store`). ``WINEMEUP_TEST_FRESH_MODEL_STORE=1`` always trains
    into this session's tmp dir; ``WINEMEUP_TEST_MODEL_STORE`` names an existing store to use
    instead. Tests must not write into the store.
    """
    reuse = os.environ.get("WINEMEUP_TEST_MODEL_STORE")
    if reuse:
        path = Path(reuse)
        if not (path / "models").is_dir():
            pytest.fail(f"WINEMEUP_TEST_MODEL_STORE={reuse} holds no models/ directory")
        return path
    try:
        if os.environ.get("WINEMEUP_TEST_FRESH_MODEL_STORE") == "1":
            return train_store(data_dir, tmp_path_factory.mktemp("model-store"))
        return cached_store(data_dir)
    except TrainingFailedError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Callable[..., RouterHandle]]:
    """Factory: ``router(model_store=..., **settings)`` starts ``python -m services.router``.

    Same arguments as :func:`tests.support.router.launch_router`; it listens on a free port
    with fresh random keys and is stopped at teardown.
    """
    handles: list[RouterHandle] = []

    def start(
        model_store: Path | None = None, ready_timeout: float = 60.0, **settings: object
    ) -> RouterHandle:
        handle = launch_router(tmp_path, model_store, ready_timeout, **settings)
        handles.append(handle)
        return handle

    yield start
    for handle in reversed(handles):
        handle.process.stop()


@pytest.fixture(scope="session")
def router_launcher() -> Callable[..., RouterHandle]:
    """:func:`tests.support.router.launch_router`, for module-scoped routers (caller stops them)."""
    return launch_router


@pytest.fixture(scope="session")
def reference_scorer() -> Callable[..., dict]:
    """:func:`tests.support.model_store.reference_scores` as a fixture."""
    return reference_scores


@pytest.fixture(scope="session")
def metric_reader() -> Callable[..., float]:
    """:func:`tests.support.metrics.metric_value` as a fixture: ``metric_reader(text, name, **labels)``."""
    return metric_value
