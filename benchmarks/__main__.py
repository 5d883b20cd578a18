"""``python -m benchmarks`` (``make bench``): the router against its baselines, in one run.

Starts, on loopback and on free ports: a private Redis, the LightGBM runner, the router with
inline placement, the router with runner placement, the FastAPI + Redis baseline and the
BentoML ``depends`` gateway baseline. Drives each scenario with wrk (one thread, so the other
core is the server's) and prints a table of requests/s and p50/p99 latency with the ratio to
the baseline, then writes it to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.settings import BenchSettings
from services.runner.fleet import runner_home, runner_process
from services.stack.launcher import missing_models, redis_answers
from services.stack.processes import (
    REPO_ROOT,
    ManagedProcess,
    free_port,
    redis_server_argv,
    start_all,
    stop_all,
)
from winemeup.schema import SCHEMA

logger = logging.getLogger("benchmarks")

LUA = REPO_ROOT / "benchmarks" / "wrk" / "post.lua"


@dataclass
class Result:
    """One wrk run: throughput and latency of one server in one scenario."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int = 1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rps * self.rows_per_request


@dataclass
class Scenario:
    """A scenario: ours against a baseline, with the target ratio (or floor) it must meet."""

    name: str
    ours: Result
    baseline_name: str
    baseline: Result
    target: str
    met: bool


def wrk(url: str, body: str, *, api_key: str = "", connections: int, seconds: int, rows: int = 1) -> Result:
    """Run wrk against ``url`` POSTing ``body`` (``%ALC%`` varies per request)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(body)
        body_file = fh.name
    try:
        env = {**os.environ, "WRK_BODY_FILE": body_file, "WRK_API_KEY": api_key}
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), url],
            capture_output=True,
            text=True,
            env=env,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(body_file)
    figures = json.loads(out.strip().splitlines()[-1])
    errors = sum(
        figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return Result(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
        rows_per_request=rows,
    )


def measure(
    url: str,
    body: str,
    settings: BenchSettings,
    *,
    api_key: str = "",
    connections: int | None = None,
    rows: int = 1,
) -> Result:
    """A warm-up run (discarded), then the measured run."""
    conns = connections or settings.connections
    if settings.warmup_seconds:
        wrk(url, body, api_key=api_key, connections=conns, seconds=settings.warmup_seconds, rows=rows)
    return wrk(url, body, api_key=api_key, connections=conns, seconds=settings.duration_seconds, rows=rows)


def features_json(vary: bool) -> str:
    """The example red wine as JSON; with ``vary`` its alcohol is a per-request placeholder."""
    features: dict[str, object] = dict(SCHEMA.example())
    if vary:
        features["alcohol"] = "__ALC__"
    return json.dumps(features).replace('"__ALC__"', "%ALC%")


def batch_json(rows: int) -> str:
    """``rows`` instances, each with its own varying alcohol, for the batch endpoints."""
    one = features_json(vary=True)
    return '{"instances": [' + ",".join([one] * rows) + "]}"


class Bench:
    """Owns every process of the run; ``stop()`` stops them all."""

    def __init__(self, settings: BenchSettings):
        self.settings = settings
        self.store = settings.model_store.resolve()
        self.run_dir = settings.runs_dir.resolve()
        self.logs = self.run_dir / "logs"
        self.procs: list[ManagedProcess] = []
        self.api_key = "bench-" + secrets.token_urlsafe(12)

    def _proc(self, name: str, argv: list[str], env: dict[str, str], ready_url: str) -> ManagedProcess:
        proc = ManagedProcess(
            argv=argv,
            log_path=self.logs / f"{name}.log",
            env=env,
            ready_url=ready_url,
            ready_timeout=180,
            name=name,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> dict[str, str]:
        """Start every server; return their base URLs by role."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.logs.mkdir(parents=True)
        ports = {role: free_port() for role in ("redis", "runner", "inline", "routed", "fastapi", "gateway")}
        redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
        urls = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        bentoml_env = {"BENTOML_DO_NOT_TRACK": "True"}

        redis = ManagedProcess(
            argv=redis_server_argv(ports["redis"]),
            ready_check=lambda: redis_answers("127.0.0.1", ports["redis"]),
            log_path=self.logs / "redis.log",
            name="redis",
        )
        self.procs.append(redis)
        redis.start()

        runner = runner_process("lightgbm", ports["runner"], self.store, self.run_dir)
        self.procs.append(runner)
        router_env = {
            **bentoml_env,
            "BENTOML_HOME": str(self.store),
            "WINEMEUP_ROUTER_API_KEYS": self.api_key,
            "WINEMEUP_ROUTER_ADMIN_API_KEYS": "admin-" + self.api_key,
            "WINEMEUP_ROUTER_REDIS_URL": redis_url,
            "WINEMEUP_ROUTER_MODELS": "lightgbm",
            "WINEMEUP_ROUTER_LOG_LEVEL": "warning",
            "WINEMEUP_ROUTER_INLINE_THREADS": str(self.settings.batch_threads),
        }
        router = [sys.executable, "-m", "services.router"]
        inline = self._proc(
            "router-inline",
            router,
            {
                **router_env,
                "WINEMEUP_ROUTER_PORT": str(ports["inline"]),
                "WINEMEUP_ROUTER_PLACEMENT": "inline",
            },
            urls["inline"] + "/readyz",
        )
        routed = self._proc(
            "router-runner",
            router,
            {
                **router_env,
                "WINEMEUP_ROUTER_PORT": str(ports["routed"]),
                "WINEMEUP_ROUTER_PLACEMENT": "runner",
                "WINEMEUP_ROUTER_RUNNER_URLS": json.dumps({"lightgbm": urls["runner"]}),
            },
            urls["routed"] + "/readyz",
        )
        fastapi = self._proc(
            "baseline-fastapi",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.baseline_fastapi:app",
                "--port",
                str(ports["fastapi"]),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {
                **bentoml_env,
                "BENTOML_HOME": str(self.store),
                "WINEMEUP_BASELINE_REDIS_URL": redis_url,
                "WINEMEUP_BASELINE_BATCH_THREADS": str(self.settings.batch_threads),
            },
            urls["fastapi"] + "/docs",
        )
        gateway = self._proc(
            "baseline-depends",
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "benchmarks.baseline_bentoml:DependsGateway",
                "--port",
                str(ports["gateway"]),
            ],
            {
                **bentoml_env,
                "BENTOML_HOME": str(runner_home(self.store, self.run_dir / "gateway-home")),
                "WINEMEUP_BASELINE_RUNNER_URL": urls["runner"],
                "WINEMEUP_RUNNER_MODEL": "lightgbm",
            },
            urls["gateway"] + "/readyz",
        )
        start_all([runner])
        start_all([inline, routed, fastapi, gateway])
        return urls

    def stop(self) -> None:
        stop_all(self.procs)


def run(settings: BenchSettings) -> list[Scenario]:
    """Every scenario, in order; each server is idle while another is measured."""
    bench = Bench(settings)
    missing = missing_models(bench.store, ["lightgbm"])
    if missing:
        raise SystemExit(f"no lightgbm model in {bench.store}: run `make train` (or `make train-fast`) first")
    urls = bench.start()
    try:
        key = bench.api_key
        hit_body = '{"model": "lightgbm", "features": ' + features_json(vary=False) + "}"
        miss_body = '{"model": "lightgbm", "features": ' + features_json(vary=True) + "}"
        gateway_body = '{"features": ' + features_json(vary=True) + "}"
        rows = settings.batch_rows
        ours_batch_body = batch_json(rows)[:-1] + ', "model": "lightgbm"}'
        scenarios: list[Scenario] = []

        logger.info("cache hits")
        ours = measure(urls["inline"] + "/v1/predict", hit_body, settings, api_key=key)
        base = measure(urls["fastapi"] + "/predict", features_json(vary=False), settings)
        scenarios.append(
            Scenario(
                "cache hit (Redis), inline",
                ours,
                "FastAPI + Redis",
                base,
                ">= 1.5x, p99 < 10 ms",
                ours.rps >= 1.5 * base.rps and ours.p99_ms < 10,
            )
        )

        logger.info("inline misses")
        ours = measure(urls["inline"] + "/v1/predict", miss_body, settings, api_key=key)
        base = measure(urls["fastapi"] + "/predict", features_json(vary=True), settings)
        scenarios.append(
            Scenario(
                "cache miss, inline", ours, "FastAPI + Redis", base, ">= 1.2x", ours.rps >= 1.2 * base.rps
            )
        )

        for conns in sorted({settings.connections, 4 * settings.connections}):
            # Router-side micro-batching needs concurrent misses to gather: show both loads.
            logger.info("runner misses, %d connections", conns)
            ours = measure(
                urls["routed"] + "/v1/predict", miss_body, settings, api_key=key, connections=conns
            )
            base = measure(urls["gateway"] + "/predict", gateway_body, settings, connections=conns)
            scenarios.append(
                Scenario(
                    f"cache miss, via runner, {conns} conns",
                    ours,
                    "BentoML depends",
                    base,
                    ">= 2x",
                    ours.rps >= 2 * base.rps,
                )
            )

        logger.info("batches of %d rows", rows)
        ours = measure(
            urls["inline"] + "/v1/predict/batch",
            ours_batch_body,
            settings,
            api_key=key,
            connections=settings.batch_connections,
            rows=rows,
        )
        base = measure(
            urls["fastapi"] + "/predict/batch",
            batch_json(rows),
            settings,
            connections=settings.batch_connections,
            rows=rows,
        )
        scenarios.append(
            Scenario(
                f"{rows}-row batch, misses, inline",
                ours,
                "FastAPI (no cache)",
                base,
                ">= 50,000 rows/s",
                ours.rows_per_second >= 50_000,
            )
        )
        failures = [
            (s.name, who, r.errors)
            for s in scenarios
            for who, r in (("WineMeUp", s.ours), (s.baseline_name, s.baseline))
            if r.errors
        ]
        if failures:
            logger.warning(
                "requests with errors (connect/read/write/non-2xx/timeout): %s; logs in %s",
                failures,
                bench.logs,
            )
        return scenarios
    finally:
        bench.stop()


def table(scenarios: list[Scenario], settings: BenchSettings) -> str:
    """The results as a Markdown table with the run's context."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}; wrk, 1 thread, {settings.connections} connections "
        f"unless the row says otherwise (batches: {settings.batch_connections}), "
        f"{settings.duration_seconds} s per run after {settings.warmup_seconds} s warm-up; "
        f"all servers on loopback, one worker process each; a large batch predict may use "
        f"{settings.batch_threads} native threads in the router and the FastAPI baseline alike.",
        "",
        "| scenario | WineMeUp req/s | p50 ms | p99 ms | baseline | baseline req/s | p50 ms | p99 ms "
        "| ratio | target | met |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for s in scenarios:
        b = s.baseline
        ours_rate, base_rate = f"{s.ours.rps:,.0f}", f"{b.rps:,.0f}"
        if s.ours.rows_per_request > 1:
            ours_rate += f" ({s.ours.rows_per_second:,.0f} rows/s)"
            base_rate += f" ({b.rows_per_second:,.0f} rows/s)"
        ratio = f"{s.ours.rps / b.rps:.2f}x" if b.rps else "n/a"
        met = "yes" if s.met else "NO"
        lines.append(
            f"| {s.name} | {ours_rate} | {s.ours.p50_ms:.2f} | {s.ours.p99_ms:.2f} | {s.baseline_name} "
            f"| {base_rate} | {b.p50_ms:.2f} | {b.p99_ms:.2f} | {ratio} | {s.target} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = BenchSettings()
    if shutil.which("wrk") is None:
        print("wrk is not installed: run `make setup` (Debian package wrk)", file=sys.stderr)
        return 2
    scenarios = run(settings)
    text = table(scenarios, settings)
    print(text)
    out = settings.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Benchmarks\n\nWritten by `make bench` (`python -m benchmarks`); see README.md for what each "
        "scenario measures.\n\n" + text
    )
    print(f"written to {out}")
    return 0 if all(s.met for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
