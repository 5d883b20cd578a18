"""In-process measurements: predict time of each path, and the memory of a runner process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from benchmarks.load import RANDOM_RANGES
from winemeup.runtimes import load_runtime
from winemeup.schema import SCHEMA


def random_rows(n: int, seed: int) -> np.ndarray:
    """``n`` random red wines as model-input rows (the ranges wrk draws from)."""
    rng = np.random.default_rng(seed)
    example = SCHEMA.validate(SCHEMA.example())
    rows = np.tile(np.asarray(example, dtype=np.float64), (n, 1))
    for i, name in enumerate(SCHEMA.names):
        if name in RANDOM_RANGES:
            low, high = RANDOM_RANGES[name]
            rows[:, i] = rng.uniform(low, high, size=n)
    return rows


@dataclass
class PredictTiming:
    """Median one-row and 1,000-row predict time of one path of one model."""

    path: str
    one_row_us: float
    thousand_rows_ms: float


def _median_seconds(predict, batches: list[np.ndarray]) -> float:  # type: ignore[no-untyped-def]
    predict(batches[0])
    timings = []
    for batch in batches:
        started = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def time_paths(name: str, store: Path, seed: int) -> dict[str, PredictTiming]:
    """Both paths of one model, each on fresh random rows (no path sees a row twice)."""
    out = {}
    for offset, path in enumerate(("framework", "onnx")):
        runtime = load_runtime(name, path=path, store=store)  # type: ignore[arg-type]
        rows = random_rows(300 + 10_000, seed + offset)
        singles = [rows[i : i + 1] for i in range(300)]
        thousands = [rows[300 + i * 1000 : 300 + (i + 1) * 1000] for i in range(10)]
        out[path] = PredictTiming(
            path=path,
            one_row_us=_median_seconds(runtime.predict, singles) * 1e6,
            thousand_rows_ms=_median_seconds(runtime.predict, thousands) * 1e3,
        )
    return out


@dataclass
class Memory:
    """Resident memory of a runner: the ``bentoml serve`` arbiter and its worker(s), in MB."""

    arbiter_mb: float
    workers_mb: float

    @property
    def total_mb(self) -> float:
        return self.arbiter_mb + self.workers_mb


def process_memory(pid: int) -> Memory:
    """RSS of a process (the arbiter) and of its descendants (the workers)."""
    parent = psutil.Process(pid)
    children = parent.children(recursive=True)
    workers = 0.0
    for child in children:
        try:
            workers += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return Memory(arbiter_mb=parent.memory_info().rss / 2**20, workers_mb=workers / 2**20)
