"""The benchmark's Markdown: the run's context and its three tables."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.__main__ import BenchRun


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def context(run: BenchRun) -> str:
    s = run.settings
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({_cpu()}), "
        f"Python {platform.python_version()}; wrk, 1 thread, {s.connections} connections unless "
        f"the row says otherwise (batches: {s.batch_connections} client), {s.duration_seconds} s per "
        f"run after {s.warmup_seconds} s warm-up ({s.model_duration_seconds} s in the per-model "
        f"table); every miss is a fresh random wine (11 measurements drawn per request, seeded per "
        f"run); all servers on loopback, one worker process each; a large batch may use "
        f"{s.batch_threads} native threads in the router and the seed baseline alike. Both sides of "
        f"the cache-hit, V2 and per-model runner ratios run {s.rounds} times, taking turns, and each "
        "shows its run of median throughput: this machine's speed drifts by 10-25 % between "
        "10-second runs, which single runs put straight into a ratio."
    )


def scenario_table(run: BenchRun) -> str:
    lines = [
        "| scenario | WineMeUp req/s | p50 ms | p99 ms | baseline | baseline req/s | p50 ms | p99 ms "
        "| ratio | goal | met |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for sc in run.scenarios:
        b = sc.baseline
        ours_rate, base_rate = f"{sc.ours.rps:,.0f}", f"{b.rps:,.0f}"
        if sc.ours.rows_per_request > 1:
            ours_rate += f" ({sc.ours.rows_per_second:,.0f} rows/s)"
            base_rate += f" ({b.rows_per_second:,.0f} rows/s)"
        if sc.ours.runs > 1:  # a side of a ratio measured by interleaved(): say so on the row
            ours_rate += f" (median of {sc.ours.runs})"
            base_rate += f" (median of {b.runs})"
        ratio = f"{sc.ours.rps / b.rps:.2f}x" if b.rps else "n/a"
        met = "-" if sc.met is None else ("yes" if sc.met else "NO")
        errors = f" ({sc.ours.errors} errors)" if sc.ours.errors else ""
        lines.append(
            f"| {sc.name}{errors} | {ours_rate} | {sc.ours.p50_ms:.2f} | {sc.ours.p99_ms:.2f} "
            f"| {sc.baseline_name} | {base_rate} | {b.p50_ms:.2f} | {b.p99_ms:.2f} | {ratio} "
            f"| {sc.target or '-'} | {met} |"
        )
    return "\n".join(lines)


def model_table(run: BenchRun) -> str:
    lines = [
        "| model | served by | inline req/s | p50 | p99 | vs seed | runner req/s | p50 | p99 | vs seed "
        "| seed req/s | seed p99 | 1 row: framework / ONNX | 1,000 rows: framework / ONNX "
        "| explain, via router |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in run.models:
        base = m.baseline.rps or float("nan")
        fw, ox = m.timings["framework"], m.timings["onnx"]
        lines.append(
            f"| {m.name} | {m.serving_path} | {m.inline.rps:,.0f} | {m.inline.p50_ms:.2f} | "
            f"{m.inline.p99_ms:.2f} | {m.inline.rps / base:.2f}x | {m.runner.rps:,.0f} | "
            f"{m.runner.p50_ms:.2f} | {m.runner.p99_ms:.2f} | {m.runner.rps / base:.2f}x | "
            f"{m.baseline.rps:,.0f} | {m.baseline.p99_ms:.2f} | {fw.one_row_us:,.0f} µs / "
            f"{ox.one_row_us:,.0f} µs | {fw.thousand_rows_ms:.1f} ms / {ox.thousand_rows_ms:.1f} ms | "
            f"{m.explain_ms:,.0f} ms |"
        )
    return "\n".join(lines)


def memory_table(run: BenchRun) -> str:
    lines = [
        "| runner | served by | after load: arbiter + worker = total MB | requests served "
        "| after them: arbiter + worker = total MB |",
        "|---|---|---:|---:|---:|",
    ]
    for r in run.memory:
        after = r.after
        after_text = (
            f"{after.arbiter_mb:.0f} + {after.workers_mb:.0f} = {after.total_mb:.0f}" if after else "-"
        )
        lines.append(
            f"| {r.name} | {r.serving_path} | {r.loaded.arbiter_mb:.0f} + {r.loaded.workers_mb:.0f} = "
            f"{r.loaded.total_mb:.0f} | {r.requests:,} | {after_text} |"
        )
    return "\n".join(lines)


ROUTER_CPU_PER_MISS_GOAL_US = 200.0
HIT_GOAL_RPS, HIT_GOAL_P99_MS = 14_000.0, 1.2
"""Cache hits as the last `make bench` before issue 21 measured them."""
RUNNER_MISS_GOAL_RATIO = 2.0


def cpu_table(run: BenchRun) -> str:
    lines = [
        "| run | req/s | router µs/request | runner µs/request | Redis µs/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in run.cpu:
        cpu = row.per_request_us
        lines.append(
            f"| {row.scenario} | {row.result.rps:,.0f} | {cpu.get('router', float('nan')):.0f} "
            f"| {cpu.get('runner', float('nan')):.0f} | {cpu.get('Redis', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def _goal(lines: list[str], goal: str, measured: str, met: bool) -> None:
    lines.append(f"| {goal} | {measured} | {'met' if met else 'NOT met'} |")


def goals_table(run: BenchRun) -> str:
    """Every goal of issue 21 with what this run measured, met or NOT met."""
    from benchmarks.tail import P99_GOAL_MS, P999_GOAL_MS

    lines = ["| goal | measured in this run | |", "|---|---|---|"]
    for t in run.tail:
        r = t.result
        _goal(
            lines,
            f"tail, {t.model} via runner: p99 < {P99_GOAL_MS:g} ms, p99.9 < {P999_GOAL_MS:g} ms",
            f"p99 {r.p99_ms:.1f} ms, p99.9 {r.p999_ms:.1f} ms, {r.errors} errors, {t.scrapes} scrapes",
            r.p99_ms < P99_GOAL_MS and r.p999_ms < P999_GOAL_MS and t.scrapes > 0 and not r.errors,
        )
    if run.tail_note:
        lines.append(f"| tail through the runners | {run.tail_note} | NOT measured |")
    for m in run.models:
        ratio = m.runner.rps / m.baseline.rps if m.baseline.rps else float("nan")
        _goal(
            lines,
            f"misses, {m.name} via runner: >= {RUNNER_MISS_GOAL_RATIO:g}x the seed",
            f"{m.runner.rps:,.0f} req/s vs seed {m.baseline.rps:,.0f}: {ratio:.2f}x",
            ratio >= RUNNER_MISS_GOAL_RATIO,
        )
    for sc in run.scenarios:
        if sc.name.startswith("cache hit (Redis)"):
            _goal(
                lines,
                f"cache hits no slower: >= {HIT_GOAL_RPS:,.0f} req/s, p99 <= {HIT_GOAL_P99_MS:g} ms",
                f"{sc.ours.rps:,.0f} req/s, p99 {sc.ours.p99_ms:.2f} ms",
                sc.ours.rps >= HIT_GOAL_RPS and sc.ours.p99_ms <= HIT_GOAL_P99_MS,
            )
    for row in run.cpu:
        if "misses" in row.scenario:
            cpu = row.per_request_us
            _goal(
                lines,
                f"router CPU per miss <= {ROUTER_CPU_PER_MISS_GOAL_US:g} µs",
                f"router {cpu['router']:.0f} µs (runner {cpu.get('runner', float('nan')):.0f} µs, "
                f"Redis {cpu.get('Redis', float('nan')):.0f} µs) at {row.result.rps:,.0f} req/s",
                cpu["router"] <= ROUTER_CPU_PER_MISS_GOAL_US,
            )
    for sc in run.scenarios:
        if sc.name.startswith("V2 infer") or "V2 binary" in sc.name:
            if sc.ours.rows_per_request > 1:
                measured = (
                    f"{sc.ours.rows_per_second:,.0f} rows/s (/v1 JSON {sc.baseline.rows_per_second:,.0f})"
                )
            else:
                ratio = sc.ours.rps / sc.baseline.rps if sc.baseline.rps else float("nan")
                measured = f"{sc.ours.rps:,.0f} req/s vs /v1 {sc.baseline.rps:,.0f}: {ratio:.2f}x"
            _goal(lines, f"{sc.name}: {sc.target}", measured, bool(sc.met))
    return "\n".join(lines)


def tail_section(run: BenchRun) -> str:
    from benchmarks.tail import report

    if not run.tail:
        return run.tail_note
    return report(run.tail, run.settings)


def write_report(run: BenchRun, output: Path) -> str:
    """The whole report as Markdown; also written to ``output``."""
    text = "\n\n".join(
        [
            context(run),
            "## Issue 21's goals, this run\n\n" + goals_table(run),
            "## The default model (LightGBM) against the baselines\n\n" + scenario_table(run),
            "## Every model: cache misses inline and through its runner, and predict time per path\n\n"
            "Seed baseline: FastAPI + LightGBM's own predict in-process + Redis, measured again for "
            f"each model, taking turns with its runner ({run.settings.rounds} runs each, the median "
            "shown); the inline column is one run. Predict times are medians in this process over "
            "fresh random rows (300 single rows, ten 1,000-row batches), one thread. Explain: median "
            "of five `/v1/explain` calls of fresh wines through the inline router, after a first call "
            "that loads the framework (TreeSHAP for the trees, baseline Shapley values for the "
            "SVR).\n\n" + model_table(run),
            "## Runner memory (RSS)\n\n"
            "`(no model)` is a runner whose store is empty: BentoML's arbiter and worker with our "
            "service code and nothing loaded — the part of every runner's memory that is BentoML's.\n\n"
            + memory_table(run),
            "## CPU per request (router, runner, Redis)\n\n"
            f"`utime + stime` from `/proc/<pid>/stat` (with descendants: a runner's worker) over "
            f"{run.settings.cpu_seconds} s of LightGBM requests through the runner-placement router at "
            f"{run.settings.connections} connections, after a warm-up, divided by the requests "
            "completed.\n\n" + cpu_table(run),
            "## Tail latency through the runners (as `make run` serves)\n\n" + tail_section(run),
        ]
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "# Benchmarks\n\nWritten by `make bench` (`python -m benchmarks`); README.md says what each "
        "scenario measures.\n\n" + text + "\n"
    )
    return text
