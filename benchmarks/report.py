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
        f"{s.batch_threads} native threads in the router and the seed baseline alike."
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


def write_report(run: BenchRun, output: Path) -> str:
    """The whole report as Markdown; also written to ``output``."""
    text = "\n\n".join(
        [
            context(run),
            "## The default model (LightGBM) against the baselines\n\n" + scenario_table(run),
            "## Every model: cache misses inline and through its runner, and predict time per path\n\n"
            "Seed baseline: FastAPI + LightGBM's own predict in-process + Redis, measured again right "
            "before each model. Predict times are medians in this process over fresh random rows (300 "
            "single rows, ten 1,000-row batches), one thread. Explain: median of five `/v1/explain` calls "
            "of fresh wines through the inline router, after a first call that loads the framework "
            "(TreeSHAP for the trees, baseline Shapley values for the SVR).\n\n" + model_table(run),
            "## Runner memory (RSS)\n\n"
            "`(no model)` is a runner whose store is empty: BentoML's arbiter and worker with our "
            "service code and nothing loaded — the part of every runner's memory that is BentoML's.\n\n"
            + memory_table(run),
        ]
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "# Benchmarks\n\nWritten by `make bench` (`python -m benchmarks`); README.md says what each "
        "scenario measures.\n\n" + text + "\n"
    )
    return text
