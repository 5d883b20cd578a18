"""Settings of the benchmark run (environment prefix ``WINEMEUP_BENCH_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BenchSettings(BaseSettings):
    """How long and how hard each scenario runs, and where the pieces are."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_BENCH_", extra="ignore")

    model_store: Path = Field(Path(".bentoml"), description="BentoML home with the trained models.")
    duration_seconds: int = Field(
        10, gt=0, description="Length of one wrk run of the default model's scenarios."
    )
    model_duration_seconds: int = Field(
        6, gt=0, description="Length of one wrk run in the per-model table (inline, runner, baseline)."
    )
    runner_requests: int = Field(
        10_000, ge=0, description="Requests sent to each runner before its memory is measured again."
    )
    warmup_seconds: int = Field(2, ge=0, description="Length of the unrecorded warm-up run before each.")
    tail_seconds: int = Field(
        60, gt=0, description="Length of each model's run in the tail scenario (--scenario tail)."
    )
    tail_in_bench: bool = Field(
        True, description="Run the tail scenario (benchmarks/tail.py) as the last section of `make bench`."
    )
    cpu_seconds: int = Field(
        10, gt=0, description="Length of the runs whose CPU time per request is read from /proc."
    )
    rounds: int = Field(
        3,
        gt=0,
        description="Interleaved runs of each side of a ratio goal (per model, V2 beside /v1, hits); "
        "the median is reported.",
    )
    connections: int = Field(4, gt=0, description="Concurrent connections of the single-row scenarios.")
    batch_rows: int = Field(1000, gt=0, description="Rows per request in the batch scenario.")
    batch_connections: int = Field(1, gt=0, description="Concurrent batch clients (the goal is for one).")
    batch_threads: int = Field(
        2,
        gt=0,
        description="Native threads a large batch predict may use, in the router and the FastAPI baseline.",
    )
    output: Path = Field(Path("docs/benchmarks.md"), description="Where the Markdown table is written.")
    runs_dir: Path = Field(Path(".run/bench"), description="Logs and scratch files of the run.")


class BaselineSettings(BaseSettings):
    """Settings of the two baseline servers (they run as their own processes)."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_BASELINE_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis of the FastAPI baseline's cache.")
    runner_url: str = Field("http://127.0.0.1:3001", description="LightGBM runner the BentoML gateway calls.")
    model: str = Field("lightgbm", description="Model the FastAPI baseline loads in-process.")
    batch_threads: int = Field(1, gt=0, description="Native threads a large batch predict may use.")
