"""``python -m benchmarks --scenario tail``: the tail latency of every model through its runner,
served as ``make run`` serves it.

Starts the local stack (services.stack.LocalStack) on free loopback ports: its own Redis, one
BentoML runner per model, the router with the drift window on, and Prometheus scraping the
router and every runner every 5 s (no UI). Then, for each model in turn, wrk sends fresh random
wines (every request a cache miss, so every one reaches the runner) through the router's
``/v1/predict`` for ``tail_seconds`` (60 s) at ``connections`` (4) connections, after a
warm-up, and the run reports p50, p99 and p99.9 beside issue 21's goals (p99 < 10 ms,
p99.9 < 25 ms). It checks that Prometheus really scraped every target during the run.

The table is printed and written to ``<runs_dir>/tail.md``. It takes about
``7 x (tail_seconds + warmup_seconds)`` plus the stack's start (a minute or two).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.load import Result, predict_body, wrk
from benchmarks.settings import BenchSettings
from services.stack.launcher import LocalStack, missing_models
from services.stack.processes import free_port, port_is_free
from services.stack.settings import StackSettings
from winemeup.runtimes import MODEL_NAMES

logger = logging.getLogger("benchmarks.tail")

P99_GOAL_MS = 10.0
P999_GOAL_MS = 25.0


@dataclass
class TailRow:
    """One model's run through its runner."""

    model: str
    result: Result
    scrapes: int
    """Scrapes Prometheus made of this model's runner during the run."""


def _consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def stack_settings(settings: BenchSettings, run_dir: Path) -> StackSettings:
    """The local stack on free ports, runner placement, its own Redis, Prometheus on, no UI."""
    count = len(MODEL_NAMES)
    return StackSettings(  # type: ignore[call-arg]
        placement="runner",
        model_store=settings.model_store,
        run_dir=run_dir,
        router_port=free_port(),
        runner_base_port=_consecutive_free_ports(count),
        runner_metrics_base_port=_consecutive_free_ports(count),
        ui=False,
        prometheus=True,
        prometheus_port=free_port(),
        cache="redis",
        reuse_redis=False,
        redis_port=free_port(),
        api_key=secrets.token_urlsafe(18),
    )


def _scrapes(prometheus: str, port: int) -> int:
    """How many scrapes of the target on ``port`` Prometheus has recorded so far."""
    answer = httpx.get(
        prometheus + "/api/v1/query",
        params={"query": f'count_over_time(up{{instance=~".*:{port}"}}[1h])'},
        timeout=10,
    ).json()
    values = answer.get("data", {}).get("result", [])
    return int(float(values[0]["value"][1])) if values else 0


def run(settings: BenchSettings) -> list[TailRow]:
    missing = missing_models(settings.model_store.resolve(), list(MODEL_NAMES))
    if missing:
        raise SystemExit(f"models {missing} are not in {settings.model_store}: run `make train` first")
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed: run `make setup` (Debian package prometheus)")
    # The router's per-key budget (200 requests/s) would answer 429 to the load itself, as in
    # benchmarks/servers.py; the stack's processes inherit this environment.
    os.environ["WINEMEUP_ROUTER_RATE_LIMIT_ENABLED"] = "false"
    stack_config = stack_settings(settings, settings.runs_dir.resolve() / "tail-stack")
    stack = LocalStack(stack_config)
    stack.start()
    rows = []
    try:
        prometheus = stack.prometheus_url
        assert prometheus is not None, "the stack started no Prometheus"
        for index, model in enumerate(MODEL_NAMES):
            metrics_port = stack_config.runner_metrics_base_port + index
            before = _scrapes(prometheus, metrics_port)
            logger.info("tail: %s through its runner, %d s", model, settings.tail_seconds)
            url = stack.router_url + "/v1/predict"
            body = predict_body(model, vary=True)
            if settings.warmup_seconds:
                wrk(
                    url,
                    body,
                    api_key=stack.api_key,
                    connections=settings.connections,
                    seconds=settings.warmup_seconds,
                )
            result = wrk(
                url,
                body,
                api_key=stack.api_key,
                connections=settings.connections,
                seconds=settings.tail_seconds,
            )
            rows.append(TailRow(model, result, _scrapes(prometheus, metrics_port) - before))
    finally:
        stack.stop()
    return rows


def report(rows: list[TailRow], settings: BenchSettings) -> str:
    lines = [
        f"Through the router to each model's runner, {settings.tail_seconds} s at {settings.connections} "
        "connections of fresh wines (misses), drift window on, Prometheus scraping every 5 s "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"| Model | req/s | p50 ms | p99 ms (< {P99_GOAL_MS:g}) | p99.9 ms (< {P999_GOAL_MS:g}) | errors | "
        "runner scrapes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.result
        met = "met" if r.p99_ms < P99_GOAL_MS and r.p999_ms < P999_GOAL_MS else "missed"
        lines.append(
            f"| {row.model} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.p999_ms:.1f} ({met}) | "
            f"{r.errors} | {row.scrapes} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    settings = BenchSettings()
    if shutil.which("wrk") is None:
        print("wrk is not installed: run `make setup` (Debian package wrk)", file=sys.stderr)
        return 2
    rows = run(settings)
    text = report(rows, settings)
    out = settings.runs_dir / "tail.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    # A model whose runner was not scraped during its run did not measure what it claims.
    return 0 if all(row.scrapes > 0 for row in rows) else 1
