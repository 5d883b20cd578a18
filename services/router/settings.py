"""Settings of the routing service (environment prefix ``WINEMEUP_ROUTER_``).

This is the only module of the router that reads the environment. In Kubernetes the chart's
values are the only source of these variables (ConfigMap for settings, Secret for keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from winemeup.runtimes import MODEL_NAMES
from winemeup.settings import split_csv as _split_csv

Placement = Literal["inline", "runner"]


class RouterSettings(BaseSettings):
    """Everything the router needs to start; read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_ROUTER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the public API.")
    models: Annotated[list[str], NoDecode] = Field(
        list(MODEL_NAMES), description="Models the router serves (comma-separated names)."
    )
    default_model: str = Field("lightgbm", description="Model used when a request names none; hot-swappable.")
    placement: Placement = Field(
        "inline", description="Placement of every model not named in `placements`: inline or runner."
    )
    placements: dict[str, Placement] = Field(
        default_factory=dict, description='Per-model placement overrides, JSON: {"svr": "runner"}.'
    )
    runner_urls: dict[str, str] = Field(
        default_factory=dict,
        description='Base URL of each runner-placed model, JSON: {"lightgbm": "http://127.0.0.1:3001"}.',
    )
    runner_timeout_seconds: float = Field(2.0, gt=0, description="Deadline of one call to a runner.")
    health_interval_seconds: float = Field(
        2.0, gt=0, description="How often runners are probed (and a down runner retried)."
    )
    model_store: Path | None = Field(
        None,
        validation_alias=AliasChoices("WINEMEUP_ROUTER_MODEL_STORE", "BENTOML_HOME", "model_store"),
        description="BentoML home holding the model store for inline models (default: BENTOML_HOME). "
        "The ONNX path reads it without importing BentoML.",
    )
    serving_path: Literal["auto", "onnx", "framework"] = Field(
        "auto",
        description="Inline models: auto serves each model's ONNX artifact when it passes parity, else "
        "its framework; onnx or framework forces one path (onnx fails the load without an artifact).",
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL of the prediction cache; unset means the in-memory LRU cache."
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (AUTH), for a URL that carries none; never logged."
    )
    redis_tls_ca_file: Path | None = Field(
        None, description="CA bundle that verifies a rediss:// server (default: the system CAs)."
    )
    redis_timeout_seconds: float = Field(
        0.05, gt=0, description="Deadline of one Redis command; slower counts as a cache error."
    )
    cache_ttl_seconds: int = Field(86_400, gt=0, description="How long a cached prediction lives.")
    cache_max_entries: int = Field(100_000, gt=0, description="Capacity of the in-memory cache.")
    api_keys: SecretStr = Field(description="Comma-separated API keys allowed to predict and read.")
    admin_api_keys: SecretStr = Field(
        description="Comma-separated API keys that may also change the default model."
    )
    batch_max_rows: int = Field(10_000, gt=0, description="Most instances one batch request may carry.")
    max_body_bytes: int = Field(4_000_000, gt=0, description="Largest request body accepted, in bytes.")
    explain_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Deadline of one /explain call to a runner (TreeSHAP of a forest: ~0.3 s a row).",
    )
    explain_cache_entries: int = Field(
        10_000, gt=0, description="In-process LRU of explanations (Redis, when set, also holds them)."
    )
    drift_enabled: bool = Field(True, description="Keep a window of served rows and export drift gauges.")
    drift_window_rows: int = Field(
        5_000, gt=0, description="Served rows kept per wine type for drift (about 0.4 kB each)."
    )
    drift_interval_seconds: float = Field(
        15.0,
        gt=0,
        description="How often the drift window is aggregated into the gauges (off the request path).",
    )
    drift_psi_threshold: float = Field(
        0.25, gt=0, description="PSI above which GET /v1/drift and the UI mark a feature as drifted."
    )
    microbatch_max_rows: int = Field(
        256, gt=0, description="Most rows one runner call gathers from concurrent cache misses."
    )
    microbatch_wait_ms: float = Field(
        0.0, ge=0, description="Extra wait for more concurrent misses before calling a runner."
    )
    log_level: str = Field("info", description="Python log level name.")
    inline_thread_min_rows: int = Field(
        512,
        gt=0,
        description="Inline predicts of at least this many rows run in a worker thread, smaller on the loop.",
    )
    inline_threads: int = Field(
        1,
        gt=0,
        description="Native threads one inline predict of a large batch may use (also OMP_NUM_THREADS etc.).",
    )
    inline_loop_max_seconds: float = Field(
        0.00025,
        ge=0,
        description="Inline models whose one-row predict takes longer than this always predict in a thread.",
    )
    preload_inline_models: bool = Field(
        True, description="Load every inline model in the background at start-up (default model first)."
    )
    runner_max_inflight_calls: int = Field(
        2,
        gt=0,
        description="Most concurrent /predict calls to one runner; further misses queue and are batched.",
    )
    near_cache_entries: int = Field(
        10_000,
        ge=0,
        description="In-process LRU in front of Redis (0 = off); safe as a key's score never changes.",
    )
    default_sync_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a replica reads the default model another replica swapped to (Redis).",
    )
    cache_backoff_seconds: float = Field(
        0.5, gt=0, description="After a Redis error, serve without the cache for this long before retrying."
    )

    ensembles: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Ensembles served as models, JSON: [{"name": "blend", "members": {"svr": 0.5, '
        '"extra_trees": 0.5}, "on_member_down": "fail"}] (fail or renormalize).',
    )
    splits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Canary splits at start-up, JSON: {"lightgbm": {"lightgbm": 90, "xgboost": 10}} '
        "(percent, sticky per wine); changed at runtime with PUT /v1/traffic.",
    )
    shadows: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Shadows at start-up, JSON: {"lightgbm": {"target": "catboost", "fraction": 0.1}}; '
        "changed at runtime with PUT /v1/traffic.",
    )
    shadow_max_inflight: int = Field(
        64,
        gt=0,
        description="Most shadow calls running at once; beyond it shadow calls are shed and counted.",
    )
    candidates: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Candidate versions served beside the stable ones, JSON: {"lightgbm": {"version": '
        '"<store version>", "url": "http://127.0.0.1:3011"}}; with a url a runner serving that version, '
        "without one the version is loaded inline from the model store.",
    )
    rollouts: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Rollouts of candidates at start-up, JSON: {"lightgbm": {"steps": ["shadow", 10, 50, '
        '100], "auto": true, "gate": {"maxMeanAbsScoreDifference": 0.25}}}; changed with PUT /v1/rollouts.',
    )
    rollout_interval_seconds: float = Field(
        1.0, gt=0, description="How often the rollout gate merges every replica's figures and decides."
    )
    runner_token: SecretStr | None = Field(
        None,
        description="Shared secret sent as X-WineMeUp-Runner-Token on every call to a runner "
        "(the runners' WINEMEUP_RUNNER_TOKEN); unset sends none.",
    )
    explain_max_rows: int = Field(
        100,
        gt=0,
        description="Most instances one explain request may carry (explaining costs up to 0.5 s a row).",
    )
    explain_max_inflight: int = Field(
        2,
        gt=0,
        description="Explanations running at once per model on this replica; beyond it 429 with Retry-After.",
    )
    explain_retry_seconds: float = Field(
        1.0,
        gt=0,
        description="Retry-After of a 429 answered because a model's explanations are at their bound.",
    )
    rate_limit_enabled: bool = Field(
        True, description="Limit each API key's requests and rows per second (token buckets)."
    )
    rate_limits: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "user": {
                "requests_per_second": 1_000.0,
                "request_burst": 2_000.0,
                "rows_per_second": 100_000.0,
                "row_burst": 200_000.0,
            },
            "admin": {
                "requests_per_second": 5_000.0,
                "request_burst": 10_000.0,
                "rows_per_second": 500_000.0,
                "row_burst": 1_000_000.0,
            },
        },
        description='Budget per key class, JSON: {"user": {"requests_per_second", "request_burst", '
        '"rows_per_second", "row_burst"}, "admin": {...}}; shared between replicas through Redis.',
    )
    limit_concurrency: int = Field(
        1_000,
        gt=0,
        description="Most connections and requests uvicorn handles at once; beyond it it answers 503.",
    )
    runner_connection_max_age_seconds: float = Field(
        30.0,
        ge=0,
        description="Close a kept-alive runner connection after this long (0 = never), so a scaled-out "
        "runner pod gets traffic.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _models_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        needed = {"requests_per_second", "request_burst", "rows_per_second", "row_burst"}
        for key_class in ("user", "admin"):
            budget = value.get(key_class)
            if budget is None or set(budget) != needed or min(budget.values()) <= 0:
                raise ValueError(f"rate_limits.{key_class} must hold positive {', '.join(sorted(needed))}")
        return value

    @model_validator(mode="after")
    def _check_models(self) -> RouterSettings:
        unknown = [m for m in [*self.models, *self.placements, *self.runner_urls] if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model names {unknown}; known: {', '.join(MODEL_NAMES)}")
        names = [*self.models, *(str(e.get("name")) for e in self.ensembles)]
        if self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not among models {self.models}")
        missing = [m for m in self.models if self.placement_of(m) == "runner" and m not in self.runner_urls]
        if missing:
            raise ValueError(f"runner-placed models without a runner_urls entry: {missing}")
        for name, candidate in self.candidates.items():
            if name not in self.models:
                raise ValueError(f"candidates.{name}: not among models {self.models}")
            if not candidate.get("version") or set(candidate) - {"version", "url"}:
                raise ValueError(f'candidates.{name}: must be {{"version": <version>, "url"?: <runner URL>}}')
        stray = [m for m in self.rollouts if m not in self.candidates]
        if stray:
            raise ValueError(f"rollouts of models without a candidate: {stray}")
        return self

    def placement_of(self, model: str) -> Placement:
        """Where a model runs: its override, else the global placement."""
        return self.placements.get(model, self.placement)

    def key_set(self, admin: bool = False) -> list[str]:
        """The configured keys (admin keys also count as ordinary keys)."""
        admin_keys = _split_csv(self.admin_api_keys.get_secret_value())
        if admin:
            return list(admin_keys)  # type: ignore[arg-type, call-overload]
        return [*_split_csv(self.api_keys.get_secret_value()), *admin_keys]  # type: ignore[misc]
