"""Shared fixtures for every test suite: ports, managed processes, Redis, model store, router.

Import-time side effect on purpose: BentoML reads ``BENTOML_DO_NOT_TRACK`` and
``BENTOML_HOME`` when it is first imported, so both are set here before any test module can
import it. Every test session gets its own BentoML home under the system temp directory.
Tests may set environment variables for the subprocesses they start; project code reads the
environment only through its settings modules.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.stack.processes import ManagedProcess, free_port, http_status, redis_server_argv

os.environ["BENTOML_DO_NOT_TRACK"] = "True"
_SESSION_BENTOML_HOME = Path(tempfile.mkdtemp(prefix="winemeup-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_SESSION_BENTOML_HOME)

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"

logger = logging.getLogger(__name__)


# ---- ports and processes ----------------------------------------------------------------------


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


# ---- Redis ------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free port that a test may kill and restart."""

    port: int
    log_dir: Path
    extra_args: tuple[str, ...] = ()
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        if self.proc is not None and self.proc.alive:
            return self
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.proc = ManagedProcess(
            argv=redis_server_argv(self.port, *self.extra_args, binary=binary),
            log_path=self.log_dir / f"redis-{self.port}.log",
        ).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not answer:\n{self.proc.log_tail()}")

    def ping(self) -> bool:
        """True when the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """Send one inline command and return the raw reply (for test set-up, e.g. CONFIG SET)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
            sock.sendall(payload.encode())
            return sock.recv(65536)

    def kill(self) -> None:
        """Kill the server (SIGKILL): connected clients see the connection drop."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server()`` starts a private Redis on a free port; stopped at teardown."""
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = RedisServer(port=free_port(), log_dir=tmp_path, extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# ---- data and models --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The UCI Wine Quality CSV files: from TrainingSettings, else the env, else ../shared."""
    candidates: list[Path] = []
    try:
        from training.settings import TrainingSettings  # type: ignore[import-not-found]

        configured = getattr(TrainingSettings(), "data_dir", None)
        if configured:
            candidates.append(Path(configured))
    except Exception as e:  # training may not exist yet, or its settings may not validate here
        logger.debug("TrainingSettings unavailable: %s", e)
    env_dir = os.environ.get("WINEMEUP_TRAIN_DATA_DIR")
    if env_dir:
        candidates.append(Path(env_dir))
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "wine-quality")
    for path in candidates:
        if (path / "winequality-red.csv").is_file() and (path / "winequality-white.csv").is_file():
            return path
    pytest.skip(f"Wine Quality CSV files not found in any of {[str(p) for p in candidates]}")


def _training_available() -> bool:
    return (REPO_ROOT / "training" / "__main__.py").is_file()


def _store_fingerprint(data_dir: Path) -> str:
    """Hash of everything a trained store depends on: training and runtime code, data, Python."""
    import hashlib

    digest = hashlib.sha256(sys.version.encode())
    sources = sorted((REPO_ROOT / "training").rglob("*.py")) + sorted((REPO_ROOT / "winemeup").rglob("*.py"))
    for path in [*sources, REPO_ROOT / "requirements.lock"]:
        if path.is_file():
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    for name in ("winequality-red.csv", "winequality-white.csv"):
        digest.update((data_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def _train_store(data_dir: Path, root: Path) -> Path:
    """Run ``python -m training train --fast`` into ``root/bentoml``; fail with the log tail."""
    home = root / "bentoml"
    log_path = root / "train.log"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        result = subprocess.run(
            [sys.executable, "-m", "training", "train", "--fast", "--no-progress",
             "--model-store", str(home), "--data-dir", str(data_dir), "--reports-dir", str(root / "reports")],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"training failed with exit code {result.returncode}:\n{tail}")
    logger.info("trained the model store in %.1fs", time.monotonic() - started)
    return home


@pytest.fixture(scope="session")
def model_store(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home with the seven models (``python -m training train --fast``), read-only.

    Returns the BentoML home path (pass it as ``BENTOML_HOME`` / the router's ``model_store``).
    Training takes about a minute and a half here, so a store is kept between sessions under
    the system temp directory, keyed by a hash of the training and runtime code, the lock file
    and the data; any change to those trains afresh. ``WINEMEUP_TEST_FRESH_MODEL_STORE=1``
    always trains into this session's tmp dir; ``WINEMEUP_TEST_MODEL_STORE`` names an existing
    store to use instead. Tests must not write into the store.
    """
    reuse = os.environ.get("WINEMEUP_TEST_MODEL_STORE")
    if reuse:
        path = Path(reuse)
        if not (path / "models").is_dir():
            pytest.fail(f"WINEMEUP_TEST_MODEL_STORE={reuse} holds no models/ directory")
        return path
    if not _training_available():
        pytest.skip(
            "training package not present (python -m training train) and no WINEMEUP_TEST_MODEL_STORE"
        )
    if os.environ.get("WINEMEUP_TEST_FRESH_MODEL_STORE") == "1":
        return _train_store(data_dir, tmp_path_factory.mktemp("model-store"))
    cache_root = Path(tempfile.gettempdir()) / "winemeup-test-model-stores"
    cached = cache_root / _store_fingerprint(data_dir)
    if (cached / "bentoml" / "models").is_dir() and (cached / "complete").is_file():
        logger.info("reusing the trained model store %s", cached)
        os.utime(cached)  # in use: keep it from being pruned
        return cached / "bentoml"
    cache_root.mkdir(parents=True, exist_ok=True)
    # Train beside the cache and rename into place: concurrent sessions never see half a store.
    building = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
    _train_store(data_dir, building)
    (building / "complete").write_text("ok\n")
    try:
        building.rename(cached)
    except OSError:  # another session finished first: use its store, drop ours
        shutil.rmtree(building, ignore_errors=True)
    _prune_stores(cache_root, keep=cached)
    return cached / "bentoml"


def _prune_stores(cache_root: Path, keep: Path, max_age_seconds: float = 6 * 3600) -> None:
    """Delete cached stores (about 20 MB each) untouched for hours; a session still using one
    that old is unlikely, and it would only lose files it already loaded."""
    now = time.time()
    for path in cache_root.iterdir():
        if path != keep and path.is_dir() and now - path.stat().st_mtime > max_age_seconds:
            shutil.rmtree(path, ignore_errors=True)


# ---- router -----------------------------------------------------------------------------------


@dataclass
class RouterHandle:
    """A running router subprocess: its base URL, keys and process."""

    url: str
    api_key: str
    admin_key: str
    process: ManagedProcess
    env: dict[str, str]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200 (the default model is loaded or reachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_status(self.url + "/readyz") == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}/readyz not 200 after {timeout}s:\n{self.process.log_tail()}")

    def headers(self, admin: bool = False, bearer: bool = False) -> dict[str, str]:
        """Request headers carrying the ordinary (or admin) key, as X-API-Key or Bearer."""
        key = self.admin_key if admin else self.api_key
        return {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}


def launch_router(
    log_dir: Path, model_store: Path | None = None, ready_timeout: float = 60.0, **settings: object
) -> RouterHandle:
    """Start ``python -m services.router`` on a free port with fresh keys; wait for /healthz.

    Keyword arguments are RouterSettings fields (``placement="runner"``, ``redis_url=...``,
    ``runner_urls={"svr": "http://..."}``); dicts are passed as JSON, lists comma-separated,
    None is left unset. The caller stops ``handle.process``. For module-scoped routers.
    """
    port = free_port()
    api_key = "k-" + secrets.token_urlsafe(16)
    admin_key = "a-" + secrets.token_urlsafe(16)
    env: dict[str, str] = {
        "WINEMEUP_ROUTER_HOST": "127.0.0.1",
        "WINEMEUP_ROUTER_PORT": str(port),
        "WINEMEUP_ROUTER_API_KEYS": api_key,
        "WINEMEUP_ROUTER_ADMIN_API_KEYS": admin_key,
        "WINEMEUP_ROUTER_LOG_LEVEL": "info",
    }
    if model_store is not None:
        env["WINEMEUP_ROUTER_MODEL_STORE"] = str(model_store)
        env["BENTOML_HOME"] = str(model_store)
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, dict):
            text = json.dumps(value)
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"WINEMEUP_ROUTER_{key.upper()}"] = text
    proc = ManagedProcess(
        argv=[sys.executable, "-m", "services.router"],
        log_path=log_dir / f"router-{port}.log",
        env=env,
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=ready_timeout,
    )
    handle = RouterHandle(f"http://127.0.0.1:{port}", api_key, admin_key, proc, env)
    try:
        proc.start()
    except BaseException:
        proc.stop()
        raise
    return handle


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Callable[..., RouterHandle]]:
    """Factory: ``router(model_store=..., **settings)`` starts ``python -m services.router``.

    Same arguments as :func:`launch_router`; it listens on a free port with fresh random keys
    and is stopped at teardown.
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


# ---- helpers for assertions -------------------------------------------------------------------


def reference_scores(
    model_store: Path, rows: list[list[float]], models: tuple[str, ...] | None = None
) -> dict:
    """What ``load_runtime(name).predict(rows)`` answers for each model, computed in a
    subprocess whose ``BENTOML_HOME`` is ``model_store`` (this process's BentoML is bound
    to the session home)."""
    from winemeup.runtimes import MODEL_NAMES

    names = list(models or MODEL_NAMES)
    code = (
        "import json, sys\n"
        "from winemeup.runtimes import load_runtime\n"
        "req = json.load(sys.stdin)\n"
        "print(json.dumps({m: load_runtime(m).predict(req['rows']).tolist() for m in req['models']}))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(model_store), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps({"rows": rows, "models": names}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reference predictions failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="session")
def reference_scorer() -> Callable[..., dict]:
    """:func:`reference_scores` as a fixture (test modules cannot import this conftest)."""
    return reference_scores


@pytest.fixture(scope="session")
def metric_reader() -> Callable[..., float]:
    """:func:`metric_value` as a fixture: ``metric_reader(text, name, **labels)``."""
    return metric_value


@pytest.fixture(scope="session")
def router_launcher() -> Callable[..., RouterHandle]:
    """:func:`launch_router` as a fixture, for module-scoped routers (caller stops them)."""
    return launch_router


def launch_redis(log_dir: Path, *extra_args: str) -> RedisServer:
    """Start a private ``redis-server`` on a free port (the caller stops it)."""
    return RedisServer(port=free_port(), log_dir=log_dir, extra_args=extra_args).start()


@pytest.fixture(scope="session")
def redis_launcher() -> Callable[..., RedisServer]:
    """:func:`launch_redis` as a fixture, for module-scoped servers (caller stops them)."""
    return launch_redis
