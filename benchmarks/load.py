"""Load generation: wrk runs on loopback and the request bodies they send.

A "miss" body carries ``%R:lo:hi%`` placeholders that benchmarks/wrk/post.lua replaces per
request with fresh random numbers (seeded per run), so every request is a new wine and never
a cache hit, even against a Redis that earlier runs filled.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from services.stack.processes import REPO_ROOT
from winemeup.schema import SCHEMA

LUA = REPO_ROOT / "benchmarks" / "wrk" / "post.lua"
POOL_LUA = REPO_ROOT / "benchmarks" / "wrk" / "pool.lua"

RANDOM_RANGES: dict[str, tuple[float, float]] = {
    "fixed_acidity": (5.5, 10.5),
    "volatile_acidity": (0.15, 0.9),
    "citric_acid": (0.0, 0.6),
    "residual_sugar": (1.2, 15.0),
    "chlorides": (0.025, 0.12),
    "free_sulfur_dioxide": (5.0, 60.0),
    "total_sulfur_dioxide": (60.0, 200.0),
    "density": (0.990, 1.0),
    "ph": (2.95, 3.55),
    "sulphates": (0.35, 0.85),
    "alcohol": (8.8, 13.5),
}
"""Where a random wine's measurements fall (about the data set's 5th to 95th percentiles; free
SO2 stays below total SO2, as the schema requires)."""


@dataclass
class Result:
    """One wrk run: throughput and latency of one server in one scenario."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int = 1
    p999_ms: float = float("nan")
    """p99.9 (benchmarks/wrk/post.lua reports it; pool.lua does not)."""
    runs: int = 1
    """Runs this is the median of (:func:`interleaved`); 1 for a single run."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rps * self.rows_per_request


def features_json(vary: bool) -> str:
    """The example red wine as JSON; with ``vary`` each measurement is a per-request random number."""
    features: dict[str, object] = dict(SCHEMA.example())
    if not vary:
        return json.dumps(features)
    for name, (low, high) in RANDOM_RANGES.items():
        features[name] = f"__R:{low}:{high}__"
    text = json.dumps(features)
    for low, high in RANDOM_RANGES.values():
        text = text.replace(f'"__R:{low}:{high}__"', f"%R:{low}:{high}%")
    return text


def predict_body(model: str | None, vary: bool) -> str:
    """A ``/v1/predict`` body for ``model`` (none: the default model)."""
    named = f'"model": "{model}", ' if model else ""
    return "{" + named + '"features": ' + features_json(vary) + "}"


def batch_json(rows: int, model: str | None = None) -> str:
    """``rows`` random instances for the batch endpoints."""
    named = f', "model": "{model}"' if model else ""
    return '{"instances": [' + ",".join([features_json(vary=True)] * rows) + "]" + named + "}"


def v2_json_body(vary: bool) -> str:
    """An Open Inference Protocol infer body, one input per feature (the column layout)."""
    features = json.loads(features_json(vary=False))
    inputs = []
    for f in SCHEMA.features:
        value: object = features[f.name]
        if vary and f.name in RANDOM_RANGES:
            low, high = RANDOM_RANGES[f.name]
            value = f"__R:{low}:{high}__"
        datatype = "BYTES" if f.kind == "category" else "FP64"
        inputs.append({"name": f.name, "datatype": datatype, "shape": [1], "data": [value]})
    text = json.dumps({"inputs": inputs, "outputs": [{"name": "score"}, {"name": "quality"}]})
    for low, high in RANDOM_RANGES.values():
        text = text.replace(f'"__R:{low}:{high}__"', f"%R:{low}:{high}%")
    return text


def v2_binary_pool(rows: int, seed: int, batch: int = 1) -> tuple[bytes, bytes]:
    """The JSON header of a binary infer request (``batch`` ``features`` rows, FP64) and ``rows``
    random rows (wrk sends ``batch`` consecutive rows of the pool per request).

    The protocol's matrix layout codes wine_type 0 for red.
    """
    rng = np.random.default_rng(seed)
    matrix = np.tile(np.asarray(SCHEMA.encode(SCHEMA.example()), dtype="<f8"), (rows, 1))
    for i, name in enumerate(SCHEMA.names):
        if name in RANDOM_RANGES:
            low, high = RANDOM_RANGES[name]
            matrix[:, i] = rng.uniform(low, high, size=rows)
    matrix[:, SCHEMA.names.index("wine_type")] = 0.0
    header = json.dumps(
        {
            "inputs": [
                {"name": "features", "datatype": "FP64", "shape": [batch, len(SCHEMA)],
                 "parameters": {"binary_data_size": 8 * len(SCHEMA) * batch}}
            ],
            "outputs": [{"name": "score", "parameters": {"binary_data": True}},
                        {"name": "quality", "parameters": {"binary_data": True}}],
        }
    ).encode()  # fmt: skip
    return header, matrix.tobytes()


def _run_wrk(url: str, script: Path, env: dict[str, str], connections: int, seconds: int) -> dict[str, Any]:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk against {url} failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}"
        )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def wrk_pool(url: str, header: bytes, pool: bytes, *, api_key: str, connections: int, seconds: int,
             rows: int = 1) -> Result:  # fmt: skip
    """Run wrk POSTing ``header`` plus ``rows`` consecutive rows of ``pool`` per request (binary
    tensor data)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "header").write_bytes(header)
        (Path(tmp) / "pool").write_bytes(pool)
        env = {
            "WRK_HEADER_FILE": str(Path(tmp) / "header"),
            "WRK_POOL_FILE": str(Path(tmp) / "pool"),
            "WRK_ROW_BYTES": str(8 * len(SCHEMA) * rows),
            "WRK_API_KEY": api_key,
        }
        return _result(_run_wrk(url, POOL_LUA, env, connections, seconds), rows=rows)


def wrk(url: str, body: str, *, api_key: str = "", connections: int, seconds: int, rows: int = 1) -> Result:
    """Run wrk (one thread) against ``url``, POSTing ``body``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(body)
        body_file = fh.name
    try:
        env = {"WRK_BODY_FILE": body_file, "WRK_API_KEY": api_key, "WRK_SEED": str(time.time_ns() % 2**31)}
        figures = _run_wrk(url, LUA, env, connections, seconds)
    finally:
        os.unlink(body_file)
    return _result(figures, rows)


def _result(figures: dict[str, Any], rows: int) -> Result:
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
        p999_ms=figures["p999_us"] / 1000 if "p999_us" in figures else float("nan"),
    )


def interleaved(runs: Mapping[str, Callable[[int], Result]], rounds: int) -> dict[str, Result]:
    """Each of ``runs`` ``rounds`` times, taking turns (a, b, a, b, ...), and of each its run
    of median throughput (with that run's latencies).

    A run gets its round's number, so that only the first one warms up. This machine's speed
    drifts from one 10-second run to the next: the same router, load and code measured 4,187 to
    5,533 req/s and 127 to 213 µs of CPU per request within minutes. Sides of a ratio that take
    turns see the same drift, and the median drops a run that met an outlier.
    """
    results: dict[str, list[Result]] = {name: [] for name in runs}
    for round_ in range(rounds):
        for name, run in runs.items():
            results[name].append(run(round_))
    out = {}
    for name, measured in results.items():
        middle = sorted(measured, key=lambda r: r.rps)[len(measured) // 2]
        out[name] = replace(middle, runs=len(measured))
    return out


def measure(
    url: str,
    body: str,
    *,
    seconds: int,
    warmup_seconds: int,
    connections: int,
    api_key: str = "",
    rows: int = 1,
) -> Result:
    """A warm-up run (discarded), then the measured run."""
    if warmup_seconds:
        wrk(url, body, api_key=api_key, connections=connections, seconds=warmup_seconds, rows=rows)
    return wrk(url, body, api_key=api_key, connections=connections, seconds=seconds, rows=rows)
