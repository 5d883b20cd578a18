"""The local stack: model store, runners, Redis, router, Prometheus and UI, started and stopped.

:class:`LocalStack` is the whole of it; :mod:`services.stack.__main__` adds signals and the
printed summary. Every child is a :class:`~services.stack.processes.ManagedProcess` logging
to ``<run_dir>/logs/``; :meth:`LocalStack.stop` stops them in reverse start order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from services.runner.fleet import RunnerFleet
from services.stack import prometheus
from services.stack.processes import (
    REPO_ROOT,
    ManagedProcess,
    ProcessFailedError,
    port_is_free,
    redis_server_argv,
    stop_all,
    streamlit_argv,
)
from services.stack.settings import StackSettings, inherited_environment
from services.stack.supervisor import Supervisor

logger = logging.getLogger(__name__)

PROCESS_RECORD = "processes.json"
"""File under the run dir listing every process the launcher started (see reap_leftovers)."""

SHARED_REDIS = ("127.0.0.1", 6379)
"""Where a Redis already running on a developer machine is looked for."""


class StackError(RuntimeError):
    """The stack cannot start: a port is taken, training failed, a component never got ready."""


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _recorded(entry: dict[str, Any]) -> psutil.Process | None:
    """The process an entry of ``processes.json`` names, if that very process still runs."""
    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry["create_time"])) < 0.01:
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        pass
    return None


def reap_leftovers(run_dir: Path, timeout: float = 10.0) -> int:
    """Stop processes a previous launcher of ``run_dir`` left running; how many there were.

    Raises StackError if that launcher itself still runs (two stacks would fight over ports).
    """
    path = run_dir / PROCESS_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    launcher = _recorded(record.get("launcher", {}))
    if launcher is not None and launcher.pid != os.getpid():
        raise StackError(f"another stack (pid {launcher.pid}) is running from {run_dir}; stop it first")
    left = [p for p in (_recorded(e) for e in record.get("processes", [])) if p is not None]
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _gone, alive = psutil.wait_procs(left, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    if left:
        logger.warning("stopped %d processes left over by a previous run in %s", len(left), run_dir)
    path.unlink(missing_ok=True)
    return len(left)


TRAINING_PROGRESS = " training.progress: "
"""What marks a progress line in the training log (logger ``training.progress``, one line per
model and step: ``[3/8] xgboost: grouped CV, fold 6/15 (12 s on this model, 1 min 40 s in all)``)."""


def progress_lines(text: str) -> list[str]:
    """The progress messages among some lines of the training log (without time and logger)."""
    return [line.split(TRAINING_PROGRESS, 1)[1] for line in text.splitlines() if TRAINING_PROGRESS in line]


def follow_training(
    proc: ManagedProcess, echo: Callable[[str], None], offset: int = 0, poll_seconds: float = 0.5
) -> int:
    """Wait for the training child to exit, passing each progress line of its log to ``echo``.

    ``offset`` is where this run's output starts in the log (it is appended to). Returns the
    exit code. Only complete lines are read, so a line is never cut in two.
    """
    assert proc.process is not None
    while True:
        code = proc.process.poll()
        try:
            with proc.log_path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
        except OSError:
            chunk = b""
        complete = chunk[: chunk.rfind(b"\n") + 1] if code is None else chunk
        offset += len(complete)
        for line in progress_lines(complete.decode(errors="replace")):
            echo(line)
        if code is not None:
            return code
        time.sleep(poll_seconds)


def missing_models(store: Path, models: list[str]) -> list[str]:
    """Models with no version in the model store of BentoML home ``store``."""
    return [m for m in models if not any((store / "models" / m).glob("*/model.yaml"))]


LEADERBOARD = "leaderboard.json"
"""Training's report that declares the blend to serve (``declare_ensemble``)."""


def declared_ensembles(reports_dirs: list[Path], models: list[str]) -> list[dict[str, Any]]:
    """The blend the first readable leaderboard declares, when every member is served; else none."""
    for folder in reports_dirs:
        path = folder / LEADERBOARD
        try:
            declared = json.loads(path.read_text()).get("declare_ensemble")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(declared, dict) or not isinstance(declared.get("members"), dict):
            continue
        missing = [m for m in declared["members"] if m not in models]
        if missing:
            logger.info("not serving the blend of %s: %s not served", path, ", ".join(missing))
            return []
        logger.info("serving the blend %s declared in %s", declared.get("name"), path)
        return [declared]
    return []


def router_request_limits() -> tuple[int, int]:
    """The router's ``max_body_bytes`` and ``batch_max_rows`` as the stack starts it: its
    defaults, unless the environment it inherits sets them."""
    from services.router.settings import RouterSettings

    env, fields = inherited_environment(), RouterSettings.model_fields
    body = env.get("WINEMEUP_ROUTER_MAX_BODY_BYTES") or fields["max_body_bytes"].default
    rows = env.get("WINEMEUP_ROUTER_BATCH_MAX_ROWS") or fields["batch_max_rows"].default
    return int(body), int(rows)


@dataclass
class LocalStack:
    """Everything ``make run`` starts, in order, and stops again."""

    settings: StackSettings
    api_key: str = ""
    admin_api_key: str = ""
    runner_token: str = ""
    redis_url: str | None = None
    redis_note: str = ""
    fleet: RunnerFleet | None = None
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    started_order: list[ManagedProcess] = field(default_factory=list)
    claimed_run_dir: bool = False
    supervisor: Supervisor | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.api_key = s.api_key.get_secret_value() if s.api_key else "wmu-" + secrets.token_urlsafe(18)
        self.admin_api_key = (
            s.admin_api_key.get_secret_value()
            if s.admin_api_key
            else "wmu-admin-" + secrets.token_urlsafe(18)
        )
        # The secret only the router and its runners share, new for every run.
        self.runner_token = secrets.token_urlsafe(32)

    # -- paths and URLs ---------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir.resolve()

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def store(self) -> Path:
        return self.settings.model_store.resolve()

    def _url(self, port: int) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        return f"http://{host}:{port}"

    @property
    def router_url(self) -> str:
        return self._url(self.settings.router_port)

    @property
    def ui_url(self) -> str | None:
        return self._url(self.settings.ui_port) if "ui" in self.processes else None

    @property
    def prometheus_url(self) -> str | None:
        return self._url(self.settings.prometheus_port) if "prometheus" in self.processes else None

    @property
    def runner_urls(self) -> dict[str, str]:
        return self.fleet.urls if self.fleet else {}

    @property
    def ui_enabled(self) -> bool:
        return self.settings.ui and (REPO_ROOT / "ui" / "app.py").is_file()

    @property
    def prometheus_binary(self) -> str | None:
        return shutil.which("prometheus") if self.settings.prometheus else None

    # -- start ------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Train if needed, then start every component and wait for each; stop all on failure."""
        s = self.settings
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        reap_leftovers(self.run_dir)
        self.claimed_run_dir = True
        (self.run_dir / "stack.json").unlink(missing_ok=True)  # a dead run's: not this one's
        self._record_processes()  # claims the run dir for this launcher before anything starts
        try:
            self._check_ports()
            self.ensure_models()
            self._start_cache()
            if self.settings.placement == "runner":
                self._start_runners()
            self._start_router()
            if self.prometheus_binary:
                self._start_prometheus(self.prometheus_binary)
            if self.ui_enabled:
                self._start_ui()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        if s.restart:
            self.supervisor = Supervisor(
                self.processes,
                initial=s.restart_backoff_seconds,
                cap=s.restart_backoff_max_seconds,
                reset_after=s.restart_backoff_reset_seconds,
                on_change=self._restarted,
            )
        return self

    def supervise(self) -> None:
        """Restart the components that died, after their back-off (call about once a second)."""
        if self.supervisor is not None:
            self.supervisor.tick()

    def _restarted(self) -> None:
        self._record_processes()
        self._write_state()

    def _check_ports(self) -> None:
        s = self.settings
        wanted: dict[str, int] = {"router (WINEMEUP_STACK_ROUTER_PORT)": s.router_port}
        if s.placement == "runner":
            for m in s.models:
                wanted[f"runner {m} (WINEMEUP_STACK_RUNNER_BASE_PORT)"] = s.runner_port(m)
                wanted[f"runner {m} metrics (WINEMEUP_STACK_RUNNER_METRICS_BASE_PORT)"] = (
                    s.runner_metrics_port(m)
                )
        if self.prometheus_binary:
            wanted["prometheus (WINEMEUP_STACK_PROMETHEUS_PORT)"] = s.prometheus_port
        if self.ui_enabled:
            wanted["ui (WINEMEUP_STACK_UI_PORT)"] = s.ui_port
        taken = [f"{port} for {what}" for what, port in wanted.items() if not port_is_free(port, s.host)]
        if taken:
            raise StackError(
                "ports already in use: " + "; ".join(taken) + " (stop what holds them or change the setting)"
            )

    def ensure_models(self) -> None:
        """Run the training CLI when the model store lacks any of the models (full unless ``fast``)."""
        s = self.settings
        missing = missing_models(self.store, s.models)
        if not missing:
            logger.info("model store %s has all %d models", self.store, len(s.models))
            return
        log_path = self.logs_dir / "train.log"
        mode = "fast" if s.fast else "full"
        logger.info(
            "model store %s lacks %s: training (%s mode), log %s", self.store, missing, mode, log_path
        )
        # Only the missing models: a store that lacks one is not retrained from scratch.
        argv = [sys.executable, "-m", "training", "train", "--model-store", str(self.store), "--no-progress"]
        if s.data_dir is not None:
            argv += ["--data-dir", str(s.data_dir.resolve())]
        if s.reports_dir is not None:
            argv += ["--reports-dir", str(s.reports_dir.resolve())]
        if s.fast:
            argv.append("--fast")
        argv += missing
        started = time.monotonic()
        proc = ManagedProcess(
            argv=argv, log_path=log_path, env={"BENTOML_HOME": str(self.store)}, name="training"
        )
        self.processes["training"] = proc
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc.launch()
        code = follow_training(proc, lambda line: logger.info("training %s", line), offset)
        del self.processes["training"]
        if code != 0:
            raise StackError(f"training failed with exit code {code} (log {log_path}):\n{proc.log_tail()}")
        still = missing_models(self.store, s.models)
        if still:
            raise StackError(f"training finished but the store still lacks {still} (log {log_path})")
        logger.info("trained in %.0f s", time.monotonic() - started)

    def _start_cache(self) -> None:
        s = self.settings
        if s.cache == "memory":
            self.redis_url, self.redis_note = None, "in-memory cache (WINEMEUP_STACK_CACHE=memory)"
            return
        if s.redis_url is not None:
            self.redis_url, self.redis_note = (
                s.redis_url.get_secret_value(),
                "Redis from WINEMEUP_STACK_REDIS_URL",
            )
            return
        if s.reuse_redis and redis_answers(*SHARED_REDIS):
            self.redis_url = f"redis://{SHARED_REDIS[0]}:{SHARED_REDIS[1]}/0"
            self.redis_note = "Redis already running on 127.0.0.1:6379"
            return
        binary = shutil.which("redis-server")
        if binary is None:
            if s.cache == "redis":
                raise StackError("no Redis answers on 127.0.0.1:6379 and redis-server is not installed")
            self.redis_url, self.redis_note = (
                None,
                "in-memory cache (no Redis found, redis-server not installed)",
            )
            return
        port = s.redis_port
        proc = ManagedProcess(
            argv=redis_server_argv(port, binary=binary),
            log_path=self.logs_dir / "redis.log",
            ready_check=lambda: redis_answers("127.0.0.1", port),
            ready_timeout=20,
            name="redis",
        )
        self._run(proc, "redis")
        self.redis_url, self.redis_note = (
            f"redis://127.0.0.1:{port}/0",
            f"own redis-server on 127.0.0.1:{port}",
        )

    def _start_runners(self) -> None:
        s = self.settings
        self.fleet = RunnerFleet(
            store=self.store,
            run_dir=self.run_dir,
            ports={m: s.runner_port(m) for m in s.models},
            host=s.host,
            ready_timeout=s.ready_timeout_seconds,
            metrics_ports={m: s.runner_metrics_port(m) for m in s.models},
            token=self.runner_token,
        )
        started = time.monotonic()
        for model, proc in self.fleet.processes.items():
            self.processes[f"runner-{model}"] = proc
            self.started_order.append(proc)
        try:
            self.fleet.start()
        except ProcessFailedError as e:
            raise StackError(str(e)) from e
        logger.info("%d runners ready in %.1f s", len(s.models), time.monotonic() - started)
        self._record_processes()

    def _router_env(self) -> dict[str, str]:
        s = self.settings
        env = {
            "WINEMEUP_ROUTER_HOST": s.host,
            "WINEMEUP_ROUTER_PORT": str(s.router_port),
            "WINEMEUP_ROUTER_MODELS": ",".join(s.models),
            "WINEMEUP_ROUTER_DEFAULT_MODEL": "lightgbm" if "lightgbm" in s.models else s.models[0],
            "WINEMEUP_ROUTER_PLACEMENT": s.placement,
            "WINEMEUP_ROUTER_RUNNER_URLS": json.dumps(self.runner_urls),
            "WINEMEUP_ROUTER_RUNNER_TOKEN": self.runner_token,
            "WINEMEUP_ROUTER_MODEL_STORE": str(self.store),
            "WINEMEUP_ROUTER_API_KEYS": self.api_key,
            "WINEMEUP_ROUTER_ADMIN_API_KEYS": self.admin_api_key,
            "WINEMEUP_ROUTER_LOG_LEVEL": s.log_level,
            "BENTOML_HOME": str(self.store),
            "BENTOML_DO_NOT_TRACK": "True",
        }
        if self.redis_url:
            env["WINEMEUP_ROUTER_REDIS_URL"] = self.redis_url
        if s.candidates:
            candidates = {name: {"version": version} for name, version in s.candidates.items()}
            env["WINEMEUP_ROUTER_CANDIDATES"] = json.dumps(candidates)
        # The blend training declared is served beside its members, so the UI's picker offers it.
        reports = [s.reports_dir or Path("reports"), Path("docs")]
        ensembles = declared_ensembles(reports, list(s.models))
        if ensembles:
            env["WINEMEUP_ROUTER_ENSEMBLES"] = json.dumps(ensembles)
        return env

    def _start_router(self) -> None:
        proc = ManagedProcess(
            argv=[sys.executable, "-m", "services.router"],
            log_path=self.logs_dir / "router.log",
            env=self._router_env(),
            ready_url=self.router_url + "/readyz",
            ready_timeout=self.settings.ready_timeout_seconds,
            name="router",
        )
        self._run(proc, "router")

    def _start_prometheus(self, binary: str) -> None:
        s = self.settings
        home = self.run_dir / "prometheus"
        (home / "data").mkdir(parents=True, exist_ok=True)
        config_path = home / "prometheus.yml"
        host = "127.0.0.1" if s.host in ("0.0.0.0", "") else s.host
        config = prometheus.prometheus_config(
            f"{host}:{s.router_port}",
            {m: f"{host}:{s.runner_metrics_port(m)}" for m in (s.models if s.placement == "runner" else [])},
        )
        config_path.write_text(prometheus.render(config))
        proc = ManagedProcess(
            argv=[
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={s.host}:{s.prometheus_port}",
                "--storage.tsdb.retention.time=1d",
            ],
            log_path=self.logs_dir / "prometheus.log",
            ready_url=self._url(s.prometheus_port) + "/-/ready",
            ready_timeout=s.ready_timeout_seconds,
            name="prometheus",
        )
        self._run(proc, "prometheus")

    def _start_ui(self) -> None:
        s = self.settings
        body_bytes, batch_rows = router_request_limits()
        # Nothing bigger than the router would take: uploads (MiB, Streamlit's unit), pasted
        # text and rows per file.
        upload_mib = max(1, body_bytes // (1024 * 1024))
        proc = ManagedProcess(
            argv=streamlit_argv(s.ui_port, s.host, "--server.maxUploadSize", str(upload_mib)),
            log_path=self.logs_dir / "ui.log",
            env={
                "WINEMEUP_UI_ROUTER_URL": self.router_url,
                "WINEMEUP_UI_API_KEY": self.api_key,
                "WINEMEUP_UI_MAX_CSV_ROWS": str(batch_rows),
                "WINEMEUP_UI_MAX_PASTE_CHARACTERS": str(body_bytes),
            },
            ready_url=self._url(s.ui_port) + "/_stcore/health",
            ready_timeout=s.ready_timeout_seconds,
            name="ui",
        )
        self._run(proc, "ui")

    def _run(self, proc: ManagedProcess, key: str) -> None:
        self.processes[key] = proc
        self.started_order.append(proc)
        started = time.monotonic()
        try:
            proc.start()
        except ProcessFailedError as e:
            raise StackError(str(e)) from e
        logger.info("%s ready in %.1f s", proc.name, time.monotonic() - started)
        self._record_processes()

    def _record_processes(self) -> None:
        """Write every process started so far (whole trees, with start times) to ``processes.json``.

        If this launcher is killed without a chance to clean up (SIGKILL, a crash), the next
        start stops these leftovers; start times guard against pids reused since.
        """
        members = [
            {"name": name, "pid": member.pid, "create_time": member.create_time()}
            for name, proc in self.processes.items()
            for member in proc.descendants()
        ]
        me = psutil.Process()
        record = {"launcher": {"pid": me.pid, "create_time": me.create_time()}, "processes": members}
        (self.run_dir / PROCESS_RECORD).write_text(json.dumps(record, indent=2))

    def _write_state(self) -> None:
        """``<run_dir>/stack.json``: URLs, key and pids of this run, for tools and tests (mode 0600)."""
        state = {
            "router_url": self.router_url,
            "api_key": self.api_key,
            "runner_urls": self.runner_urls,
            "ui_url": self.ui_url,
            "prometheus_url": self.prometheus_url,
            "redis": self.redis_note,
            "pids": {name: p.pid for name, p in self.processes.items()},
            "launcher_pid": os.getpid(),
        }
        path = self.run_dir / "stack.json"
        partial = path.with_suffix(".json.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        partial.replace(path)  # readers see the whole file or none

    # -- running and stopping ---------------------------------------------------------------

    def dead(self) -> list[str]:
        """Names of started components whose process has exited."""
        return [name for name, p in self.processes.items() if p.process is not None and not p.alive]

    def stop(self) -> None:
        """Stop every component this stack started, in reverse order; no process is left behind."""
        training = self.processes.get("training")
        if training is not None:
            training.stop(self.settings.stop_timeout_seconds)
        stop_all(self.started_order, timeout=self.settings.stop_timeout_seconds)
        with_pids = [p for p in self.started_order if p.process is not None]
        logger.info("stopped %d processes", len(with_pids))
        if self.claimed_run_dir:  # never remove the records of another live stack
            (self.run_dir / "stack.json").unlink(missing_ok=True)
            (self.run_dir / PROCESS_RECORD).unlink(missing_ok=True)

    def curl_example(self) -> str:
        """A working prediction request against this stack's router."""
        from winemeup.schema import SCHEMA

        body = json.dumps({"features": SCHEMA.example()}, separators=(",", ":"))
        return (
            f"curl -s {self.router_url}/v1/predict -H 'X-API-Key: {self.api_key}' "
            f"-H 'Content-Type: application/json' -d '{body}'"
        )
