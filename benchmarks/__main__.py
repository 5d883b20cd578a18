"""``python -m benchmarks`` (``make bench``): the router against its baselines, in one run.

Starts, on loopback and on free ports (benchmarks/servers.py): a private Redis, one runner
per model, the router with every model inline, the router with every model behind its
runner, the seed design (FastAPI + in-process LightGBM + Redis) and the BentoML ``depends``
gateway. wrk drives each scenario with one thread, so the other core is the server's. Prints
three tables and writes them to docs/benchmarks.md:

1. the default model's scenarios (cache hits, misses inline and through the runner,
   batches), each beside its baseline;
2. every model, inline and through its runner, with the seed baseline measured again right
   before the model, plus each model's one-row and 1,000-row predict time on both paths;
3. every runner's memory after loading and after ``runner_requests`` requests.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from benchmarks.cpu import CpuMeter, CpuRow
from benchmarks.inprocess import Memory, PredictTiming, process_memory, random_rows, time_paths
from benchmarks.load import (
    Result,
    batch_json,
    features_json,
    interleaved,
    measure,
    predict_body,
    v2_binary_pool,
    v2_json_body,
    wrk,
    wrk_pool,
)
from benchmarks.report import write_report
from benchmarks.servers import BenchServers
from benchmarks.settings import BenchSettings
from benchmarks.tail import TailRow
from services.runner.middleware import TOKEN_HEADER
from services.stack.launcher import missing_models
from winemeup.runtimes import MODEL_NAMES

logger = logging.getLogger("benchmarks")


@dataclass
class Scenario:
    """A scenario: ours against a baseline, with the goal it must meet."""

    name: str
    ours: Result
    baseline_name: str
    baseline: Result
    target: str
    met: bool | None
    """None for a row shown for context, with no goal."""


@dataclass
class ModelRow:
    """One model of the per-model table."""

    name: str
    serving_path: str
    inline: Result
    runner: Result
    baseline: Result
    timings: dict[str, PredictTiming]
    explain_ms: float = float("nan")
    """Median time of one /v1/explain of a fresh wine through the inline router."""
    explain_method: str = ""


@dataclass
class RunnerMemory:
    """A runner's memory after loading and after serving requests."""

    name: str
    serving_path: str
    loaded: Memory
    after: Memory | None = None
    requests: int = 0


@dataclass
class BenchRun:
    """Everything one run measured."""

    settings: BenchSettings
    scenarios: list[Scenario] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)
    memory: list[RunnerMemory] = field(default_factory=list)
    cpu: list[CpuRow] = field(default_factory=list)
    tail: list[TailRow] = field(default_factory=list)
    tail_note: str = ""
    """Why the tail section was not run (empty when it was)."""


class Runner:
    """Runs the scenarios against started servers."""

    def __init__(self, servers: BenchServers, settings: BenchSettings):
        self.servers = servers
        self.settings = settings
        self.key = servers.api_key
        self.urls = servers.urls

    def _measure(self, url: str, body: str, *, api_key: str = "", connections: int = 0, rows: int = 1,
                 seconds: int = 0, warm: bool = True) -> Result:  # fmt: skip
        s = self.settings
        return measure(
            url,
            body,
            seconds=seconds or s.duration_seconds,
            warmup_seconds=s.warmup_seconds if warm else 0,
            connections=connections or s.connections,
            api_key=api_key,
            rows=rows,
        )

    def _baseline_miss(self, seconds: int = 0, warm: bool = True) -> Result:
        return self._measure(
            self.urls["fastapi"] + "/predict", features_json(vary=True), seconds=seconds, warm=warm
        )

    def default_model(self) -> list[Scenario]:
        """The default model (LightGBM): hits, misses inline and via runner, a 1,000-row batch."""
        inline, routed = self.urls["inline"] + "/v1/predict", self.urls["routed"] + "/v1/predict"
        hit, miss = predict_body("lightgbm", vary=False), predict_body("lightgbm", vary=True)
        out = []
        logger.info("default model: cache hits, taking turns with the seed's")
        seed_hit = features_json(vary=False)
        turns = interleaved(
            {
                "ours": lambda r: self._measure(inline, hit, api_key=self.key, warm=r == 0),
                "seed": lambda r: self._measure(self.urls["fastapi"] + "/predict", seed_hit, warm=r == 0),
            },
            self.settings.rounds,
        )
        ours, base = turns["ours"], turns["seed"]
        out.append(_scenario("cache hit (Redis), inline", ours, "seed: FastAPI + Redis", base, 8.0, 2.0))
        logger.info("default model: inline misses")
        ours, base = self._measure(inline, miss, api_key=self.key), self._baseline_miss()
        out.append(_scenario("cache miss, inline", ours, "seed: FastAPI + Redis", base, 2.0, 10.0))
        logger.info("default model: runner misses")
        ours, base = self._measure(routed, miss, api_key=self.key), self._baseline_miss()
        out.append(_scenario("cache miss, via runner", ours, "seed: FastAPI + Redis", base, 1.5, 10.0))
        gateway = '{"features": ' + features_json(vary=True) + "}"
        for conns in sorted({self.settings.connections, 4 * self.settings.connections}):
            ours = self._measure(routed, miss, api_key=self.key, connections=conns)
            base = self._measure(self.urls["gateway"] + "/predict", gateway, connections=conns)
            out.append(
                _scenario(f"cache miss, via runner, {conns} conns", ours, "BentoML depends", base, 2.0)
            )
        v1_batch = self._batch()
        out += [v1_batch, self._v2_batch(v1_batch.ours)]
        out += self.protocols_and_policies()
        return out

    def protocols_and_policies(self) -> list[Scenario]:
        """V2 infer beside /v1, hits with the drift window on and off, a slow shadow on and off."""
        out = []
        inline = self.urls["inline"]
        logger.info("V2 infer, JSON and binary tensors, taking turns with /v1 of the same model")
        v1_body, json_body = predict_body("lightgbm", vary=True), v2_json_body(vary=True)
        infer = inline + "/v2/models/lightgbm/infer"

        def binary(round_: int) -> Result:  # a fresh pool each run: every request a new wine
            header, pool = v2_binary_pool(200_000, seed=time.time_ns() % 2**31)
            seconds = self.settings.duration_seconds
            return wrk_pool(
                infer, header, pool, api_key=self.key, connections=self.settings.connections, seconds=seconds
            )

        turns = interleaved(
            {
                "v1": lambda r: self._measure(inline + "/v1/predict", v1_body, api_key=self.key, warm=r == 0),
                "json": lambda r: self._measure(infer, json_body, api_key=self.key, warm=r == 0),
                "binary": binary,
            },
            self.settings.rounds,
        )
        v1, ours = turns["v1"], turns["json"]
        out.append(
            Scenario(
                "V2 infer, JSON tensors, misses, inline",
                ours,
                "/v1/predict, same model and load",
                v1,
                ">= 0.9x",
                ours.rps >= 0.9 * v1.rps,
            )
        )
        ours = turns["binary"]
        out.append(
            Scenario(
                "V2 infer, binary tensors, misses, inline",
                ours,
                "/v1/predict, same model and load",
                v1,
                ">= 1.0x",
                ours.rps >= 1.0 * v1.rps,
            )
        )
        logger.info("cache hits with the drift window on and off")
        hit = predict_body("lightgbm", vary=False)
        off = self._measure(self.urls["nodrift"] + "/v1/predict", hit, api_key=self.key)
        on = self._measure(inline + "/v1/predict", hit, api_key=self.key)
        out.append(
            Scenario(
                "cache hit, inline, drift window on",
                on,
                "same, drift off",
                off,
                ">= 0.95x",
                on.rps >= 0.95 * off.rps,
            )
        )
        logger.info("runner misses with every one shadowed by a slow model")
        miss = predict_body("lightgbm", vary=True)
        plain = self._measure(self.urls["routed"] + "/v1/predict", miss, api_key=self.key)
        shadowed = self._measure(self.urls["shadowed"] + "/v1/predict", miss, api_key=self.key)
        out.append(
            Scenario(
                "cache miss via runner, 100 % shadowed by the SVR (framework, >10x slower)",
                shadowed,
                "same, no shadow",
                plain,
                "p99 <= 1.25x + 1 ms",
                shadowed.p99_ms <= 1.25 * plain.p99_ms + 1.0,
            )
        )
        return out

    def _batch(self) -> Scenario:
        rows, conns = self.settings.batch_rows, self.settings.batch_connections
        logger.info("default model: %d-row batches, %d client(s)", rows, conns)
        ours = self._measure(
            self.urls["inline"] + "/v1/predict/batch",
            batch_json(rows, "lightgbm"),
            api_key=self.key,
            connections=conns,
            rows=rows,
        )
        base = self._measure(
            self.urls["fastapi"] + "/predict/batch", batch_json(rows), connections=conns, rows=rows
        )
        met = ours.rows_per_second >= 100_000
        return Scenario(
            f"{rows}-row batch, misses, inline, {conns} client(s)",
            ours,
            "seed: FastAPI (no cache)",
            base,
            ">= 100,000 rows/s",
            met,
        )

    def _v2_batch(self, v1: Result) -> Scenario:
        """1,000-row batches as binary tensors on /v2, beside the /v1 JSON batches of the same run."""
        rows, conns = self.settings.batch_rows, self.settings.batch_connections
        logger.info("default model: %d-row /v2 binary batches, %d client(s)", rows, conns)
        header, pool = v2_binary_pool(rows * 50, seed=time.time_ns() % 2**31, batch=rows)
        url = self.urls["inline"] + "/v2/models/lightgbm/infer"
        for seconds in (self.settings.warmup_seconds, self.settings.duration_seconds):
            if seconds:
                ours = wrk_pool(
                    url, header, pool, api_key=self.key, connections=conns, seconds=seconds, rows=rows
                )
        return Scenario(
            f"{rows}-row batch, V2 binary tensors, misses, inline, {conns} client(s)",
            ours,
            "/v1 JSON batch, same run",
            v1,
            ">= 60,000 rows/s",
            ours.rows_per_second >= 60_000,
        )

    def cpu_per_request(self) -> list[CpuRow]:
        """CPU per request of the router, LightGBM's runner and Redis: misses, then hits, through
        the runner-placement router at ``connections`` connections."""
        procs = {proc.name: proc.pid for proc in self.servers.procs}
        pids = {
            "router": procs["router-routed"],
            "runner": self.servers.runners["lightgbm"].pid,
            "Redis": procs["redis"],
        }
        meter = CpuMeter({role: pid for role, pid in pids.items() if pid is not None})
        url = self.urls["routed"] + "/v1/predict"
        out = []
        for scenario, vary in (("lightgbm misses via runner", True), ("cache hits via runner router", False)):
            logger.info("CPU per request: %s, %d s", scenario, self.settings.cpu_seconds)
            body = predict_body("lightgbm", vary=vary)
            if self.settings.warmup_seconds:
                wrk(url, body, api_key=self.key, connections=self.settings.connections,
                    seconds=self.settings.warmup_seconds)  # fmt: skip
            meter.start()
            result = wrk(
                url,
                body,
                api_key=self.key,
                connections=self.settings.connections,
                seconds=self.settings.cpu_seconds,
            )
            out.append(meter.stop(scenario, result))
        return out

    def per_model(self, name: str, serving_path: str) -> ModelRow:
        """One model inline, then through its runner taking turns with the seed baseline."""
        seconds = self.settings.model_duration_seconds
        body = predict_body(name, vary=True)
        logger.info("model %s: inline, then runner and seed baseline taking turns", name)
        inline = self._measure(self.urls["inline"] + "/v1/predict", body, api_key=self.key, seconds=seconds)
        routed = self.urls["routed"] + "/v1/predict"
        turns = interleaved(
            {
                "runner": lambda r: self._measure(
                    routed, body, api_key=self.key, seconds=seconds, warm=r == 0
                ),
                "seed": lambda r: self._baseline_miss(seconds, warm=r == 0),
            },
            self.settings.rounds,
        )
        runner, baseline = turns["runner"], turns["seed"]
        timings = time_paths(name, self.servers.store, seed=time.time_ns() % 2**31)
        explain_ms, method = self._explain_latency(name)
        return ModelRow(name, serving_path, inline, runner, baseline, timings, explain_ms, method)

    def _explain_latency(self, name: str, count: int = 5) -> tuple[float, str]:
        """Median wall time of /v1/explain for fresh random wines (the first call, which loads
        the framework, is not counted)."""
        import httpx

        from winemeup.schema import SCHEMA

        rows = random_rows(count + 1, seed=time.time_ns() % 2**31)
        timings, method = [], ""
        with httpx.Client(
            base_url=self.urls["inline"], headers={"X-API-Key": self.key}, timeout=120
        ) as client:
            for i, row in enumerate(rows):
                features = SCHEMA.decode(row)
                started = time.perf_counter()
                answer = client.post("/v1/explain", json={"features": features, "model": name})
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    return float("nan"), f"HTTP {answer.status_code}: {answer.text[:80]}"
                method = answer.json().get("method", "")
                if i:
                    timings.append(elapsed * 1e3)
        return float(np.median(timings)), method


def _scenario(
    name: str, ours: Result, baseline_name: str, base: Result, ratio: float, p99_ms: float | None = None
) -> Scenario:
    met = ours.rps >= ratio * base.rps and (p99_ms is None or ours.p99_ms < p99_ms)
    target = f">= {ratio:g}x" + (f", p99 < {p99_ms:g} ms" if p99_ms is not None else "")
    return Scenario(name, ours, baseline_name, base, target, met)


async def _drive_runner(url: str, requests: int, seed: int, token: str, concurrency: int = 4) -> int:
    """Send ``requests`` one-row /predict calls of fresh random wines to a runner."""
    rows = random_rows(requests, seed).tolist()
    done = 0

    async def worker(session: aiohttp.ClientSession, start: int) -> None:
        nonlocal done
        for i in range(start, requests, concurrency):
            async with session.post(url + "/predict", json={"rows": [rows[i]]}) as response:
                await response.read()
                done += response.status == 200

    async with aiohttp.ClientSession(headers={TOKEN_HEADER: token}) as session:
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
    return done


def _serving_paths(servers: BenchServers) -> dict[str, str]:
    import httpx

    out = {}
    for name, url in servers.runner_urls.items():
        answer = httpx.post(
            url + "/metadata", json={}, headers={TOKEN_HEADER: servers.runner_token}, timeout=10
        )
        out[name] = answer.json()["serving"]["path"]
    return out


def run(settings: BenchSettings) -> BenchRun:
    """Every measurement, in order; each server is idle while another is measured."""
    servers = BenchServers(settings)
    missing = missing_models(servers.store, list(MODEL_NAMES))
    if missing:
        raise SystemExit(f"models {missing} are not in {servers.store}: run `make train` first")
    result = BenchRun(settings)
    servers.start()
    try:
        paths = _serving_paths(servers)
        for name, proc in servers.runners.items():
            assert proc.pid is not None
            result.memory.append(RunnerMemory(name, paths.get(name, "-"), process_memory(proc.pid)))
        bench = Runner(servers, settings)
        result.scenarios = bench.default_model()
        result.cpu = bench.cpu_per_request()
        result.models = [bench.per_model(name, paths[name]) for name in MODEL_NAMES]
        for entry in result.memory:
            if entry.name in servers.runner_urls and settings.runner_requests:
                url = servers.runner_urls[entry.name]
                entry.requests = asyncio.run(
                    _drive_runner(
                        url, settings.runner_requests, seed=time.time_ns(), token=servers.runner_token
                    )
                )
            pid = servers.runners[entry.name].pid
            assert pid is not None
            entry.after = process_memory(pid)
    finally:
        servers.stop()
    # The tail runs last, on its own stack (as `make run` serves), with every bench server stopped.
    if not settings.tail_in_bench:
        result.tail_note = "not run (WINEMEUP_BENCH_TAIL_IN_BENCH=false)"
    elif shutil.which("prometheus") is None:
        result.tail_note = "not run: prometheus is not installed (`make setup`, Debian package prometheus)"
    else:
        from benchmarks import tail

        result.tail = tail.run(settings)
    return result


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `--scenario tail`: only the tail through the runners (benchmarks/tail.py), on its own.
    if sys.argv[1:] == ["--scenario", "tail"]:
        from benchmarks import tail

        return tail.main()
    if sys.argv[1:]:
        print("usage: python -m benchmarks [--scenario tail]", file=sys.stderr)
        return 2
    settings = BenchSettings()
    if shutil.which("wrk") is None:
        print("wrk is not installed: run `make setup` (Debian package wrk)", file=sys.stderr)
        return 2
    np.seterr(all="ignore")
    result = run(settings)
    text = write_report(result, settings.output)
    print(text)
    print(f"written to {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
