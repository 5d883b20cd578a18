"""Every server of a benchmark run, started on free loopback ports and stopped together.

* a private Redis (a clean cache: no earlier run's scores);
* one runner per model (``bentoml serve``), plus an "empty" runner whose store holds no
  model: its memory is what BentoML and our code cost before any model is loaded;
* the router with every model inline, and the router with every model behind its runner;
* the seed design's baseline (FastAPI + in-process LightGBM through the framework + Redis);
* the BentoML ``depends`` gateway calling a LightGBM runner of its own.

Runners answer only calls carrying the run's shared secret (``runner_token``), which the
routers send. BentoML's ``depends`` client cannot add that header, so the gateway calls its own
LightGBM runner started with ``WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED`` (loopback only).
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys

from benchmarks.settings import BenchSettings
from services.runner.fleet import runner_home, runner_process
from services.stack.launcher import redis_answers
from services.stack.processes import ManagedProcess, free_port, redis_server_argv, start_all, stop_all
from winemeup.runtimes import MODEL_NAMES

BENTOML_ENV = {"BENTOML_DO_NOT_TRACK": "True"}


class BenchServers:
    """Owns every process of the run; ``stop()`` stops them all."""

    def __init__(self, settings: BenchSettings, models: tuple[str, ...] = MODEL_NAMES):
        self.settings = settings
        self.models = models
        self.store = settings.model_store.resolve()
        self.run_dir = settings.runs_dir.resolve()
        self.logs = self.run_dir / "logs"
        self.procs: list[ManagedProcess] = []
        self.runners: dict[str, ManagedProcess] = {}
        self.api_key = "bench-" + secrets.token_urlsafe(12)
        self.urls: dict[str, str] = {}
        self.runner_urls: dict[str, str] = {}
        self.runner_urls_slow: dict[str, str] = {}
        self.runner_token = secrets.token_urlsafe(32)

    def _proc(self, name: str, argv: list[str], env: dict[str, str], ready_url: str) -> ManagedProcess:
        proc = ManagedProcess(
            argv=argv,
            log_path=self.logs / f"{name}.log",
            env=env,
            ready_url=ready_url,
            ready_timeout=240,
            name=name,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        """Start every server; ``urls`` and ``runner_urls`` then hold their base URLs."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.logs.mkdir(parents=True)
        roles = (
            "redis", "inline", "routed", "fastapi", "gateway", "gateway-runner", "empty", "nodrift",
            "shadowed", "slow",
        )  # fmt: skip
        ports = {role: free_port() for role in roles}
        self.urls = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        redis_url = self._start_redis(ports["redis"])
        for model in self.models:
            port = free_port()
            self.runners[model] = runner_process(
                model, port, self.store, self.run_dir, ready_timeout=240, token=self.runner_token
            )
            self.runner_urls[model] = f"http://127.0.0.1:{port}"
        gateway_runner = runner_process(
            "lightgbm",
            ports["gateway-runner"],
            self.store,
            self.run_dir / "gateway-runner",
            env={"WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED": "true"},
            ready_timeout=240,
        )
        gateway_runner.name = "runner-lightgbm-for-gateway"
        self.procs.append(gateway_runner)
        self.procs.extend(self.runners.values())
        start_all([*self.runners.values(), gateway_runner])
        # The shadow target: the SVR through scikit-learn's own predict, about 0.35 ms a row
        # against LightGBM's 0.02 ms from its ONNX artifact: more than 10x slower.
        slow = runner_process(
            "svr",
            ports["slow"],
            self.store,
            self.run_dir / "slow",
            env={"WINEMEUP_RUNNER_SERVING_PATH": "framework"},
            ready_timeout=240,
            token=self.runner_token,
        )
        # A shadow is best-effort work: like a lower PriorityClass in a cluster, its runner
        # yields the CPU to the served path (here both share two cores).
        slow.argv = ["nice", "-n", "19", *slow.argv]
        self.procs.append(slow)
        self.runner_urls_slow = {"lightgbm": self.runner_urls["lightgbm"], "svr": self.urls["slow"]}
        routers = [
            self._router("inline", ports["inline"], redis_url),
            self._router("routed", ports["routed"], redis_url),
            self._router("nodrift", ports["nodrift"], redis_url),
        ]
        start_all(
            [slow, *routers, self._fastapi(ports["fastapi"], redis_url), self._gateway(ports["gateway"])]
        )
        start_all([self._router("shadowed", ports["shadowed"], redis_url)])
        self._start_empty_runner(ports["empty"])

    def _start_redis(self, port: int) -> str:
        redis = ManagedProcess(
            argv=redis_server_argv(port),
            ready_check=lambda: redis_answers("127.0.0.1", port),
            log_path=self.logs / "redis.log",
            name="redis",
        )
        self.procs.append(redis)
        redis.start()
        return f"redis://127.0.0.1:{port}/0"

    def _router(self, role: str, port: int, redis_url: str) -> ManagedProcess:
        env = {
            **BENTOML_ENV,
            "WINEMEUP_ROUTER_MODEL_STORE": str(self.store),
            "WINEMEUP_ROUTER_API_KEYS": self.api_key,
            "WINEMEUP_ROUTER_ADMIN_API_KEYS": "admin-" + self.api_key,
            "WINEMEUP_ROUTER_REDIS_URL": redis_url,
            "WINEMEUP_ROUTER_MODELS": ",".join(self.models),
            "WINEMEUP_ROUTER_DEFAULT_MODEL": "lightgbm",
            "WINEMEUP_ROUTER_LOG_LEVEL": "warning",
            # One key drives thousands of requests a second here: the per-key budget is not measured.
            "WINEMEUP_ROUTER_RATE_LIMIT_ENABLED": "false",
            "WINEMEUP_ROUTER_INLINE_THREADS": str(self.settings.batch_threads),
            "WINEMEUP_ROUTER_PORT": str(port),
            "WINEMEUP_ROUTER_RUNNER_TOKEN": self.runner_token,
        }
        if role in ("inline", "nodrift"):
            env["WINEMEUP_ROUTER_PLACEMENT"] = "inline"
        else:
            env["WINEMEUP_ROUTER_PLACEMENT"] = "runner"
            env["WINEMEUP_ROUTER_RUNNER_URLS"] = json.dumps(self.runner_urls)
        if role == "nodrift":
            env["WINEMEUP_ROUTER_MODELS"] = "lightgbm"
            env["WINEMEUP_ROUTER_DRIFT_ENABLED"] = "false"
        if role == "shadowed":
            # Every LightGBM miss is also scored, after the answer, by the slow SVR.
            env["WINEMEUP_ROUTER_MODELS"] = "lightgbm,svr"
            env["WINEMEUP_ROUTER_RUNNER_URLS"] = json.dumps(self.runner_urls_slow)
            env["WINEMEUP_ROUTER_SHADOWS"] = json.dumps({"lightgbm": {"target": "svr", "fraction": 1.0}})
        return self._proc(
            f"router-{role}", [sys.executable, "-m", "services.router"], env, self.urls[role] + "/readyz"
        )

    def _fastapi(self, port: int, redis_url: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "uvicorn", "benchmarks.baseline_fastapi:app", "--port", str(port)]
        argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        env = {
            **BENTOML_ENV,
            "BENTOML_HOME": str(self.store),
            "WINEMEUP_BASELINE_REDIS_URL": redis_url,
            "WINEMEUP_BASELINE_BATCH_THREADS": str(self.settings.batch_threads),
        }
        return self._proc("baseline-fastapi", argv, env, self.urls["fastapi"] + "/docs")

    def _gateway(self, port: int) -> ManagedProcess:
        argv = [sys.executable, "-m", "bentoml", "serve", "benchmarks.baseline_bentoml:DependsGateway"]
        env = {
            **BENTOML_ENV,
            "BENTOML_HOME": str(runner_home(self.store, self.run_dir / "gateway-home")),
            "WINEMEUP_BASELINE_RUNNER_URL": self.urls["gateway-runner"],
            "WINEMEUP_RUNNER_MODEL": "lightgbm",
            # Importing the runner's class reads its settings, which ask for a token or this.
            "WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED": "true",
        }
        return self._proc(
            "baseline-depends", [*argv, "--port", str(port)], env, self.urls["gateway"] + "/readyz"
        )

    def _start_empty_runner(self, port: int) -> None:
        """A runner over an empty store: alive, never ready (it has no model to load)."""
        empty_store = self.run_dir / "empty-store"
        (empty_store / "models").mkdir(parents=True)
        proc = runner_process("lightgbm", port, empty_store, self.run_dir / "empty", token=self.runner_token)
        proc.ready_url = self.urls["empty"] + "/livez"
        proc.ready_statuses = (200, 503)  # it answers: served, with nothing to serve
        self.procs.append(proc)
        self.runners["(no model)"] = proc
        proc.start()

    def stop(self) -> None:
        stop_all(self.procs)
