"""Settings of the local stack launcher (environment prefix ``WINEMEUP_STACK_``).

``python -m services.stack`` (``make run``) reads these once; command-line flags override a
few of them. This is the only module of the launcher that reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from winemeup.runtimes import MODEL_NAMES
from winemeup.settings import split_csv as _split_csv

CacheChoice = Literal["auto", "redis", "memory"]


class StackSettings(BaseSettings):
    """What the local stack starts, where, and on which ports."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_STACK_", extra="ignore")

    placement: Literal["runner", "inline"] = Field(
        "runner",
        description="runner: one BentoML runner process per model; inline: all models in the router.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        list(MODEL_NAMES), description="Models to serve (comma-separated names)."
    )
    fast: bool = Field(False, description="Train in fast mode when the model store is empty.")
    model_store: Path = Field(
        Path(".bentoml"),
        validation_alias=AliasChoices("WINEMEUP_STACK_MODEL_STORE", "BENTOML_HOME"),
        description="BentoML home holding the model store (trained into when empty).",
    )
    data_dir: Path | None = Field(
        None,
        description="Folder of the Wine Quality CSV files for training; unset: the training job's own "
        "setting (WINEMEUP_TRAIN_DATA_DIR, else data/wine-quality).",
    )
    reports_dir: Path | None = Field(
        None, description="Where training writes its reports; unset: the training job's own setting."
    )
    run_dir: Path = Field(
        Path(".run"), description="Run state: logs/, runner homes, Prometheus config and data."
    )
    host: str = Field("127.0.0.1", description="Address every component listens on.")
    router_port: int = Field(8000, ge=1, le=65535, description="Port of the router's public API.")
    runner_base_port: int = Field(
        3001, ge=1, le=65535, description="Port of the first runner; the others follow in model order."
    )
    runner_metrics_base_port: int = Field(
        9464,
        ge=1,
        le=65535,
        description="Metrics port of the first runner (Prometheus scrapes it); the others follow in "
        "model order.",
    )
    ui: bool = Field(True, description="Start the Streamlit UI when ui/app.py exists.")
    ui_port: int = Field(8501, ge=1, le=65535, description="Port of the Streamlit UI.")
    prometheus: bool = Field(True, description="Start Prometheus when the binary is installed.")
    prometheus_port: int = Field(9090, ge=1, le=65535, description="Port of Prometheus.")
    cache: CacheChoice = Field(
        "auto",
        description="auto: Redis on 127.0.0.1:6379 if it answers, else an own redis-server, else memory; "
        "redis: the same but never memory; memory: the router's in-memory cache.",
    )
    redis_port: int = Field(16379, ge=1, le=65535, description="Port of the Redis the stack starts itself.")
    reuse_redis: bool = Field(
        True, description="Use a Redis already answering on 127.0.0.1:6379 before starting one."
    )
    redis_url: SecretStr | None = Field(
        None, description="Use this Redis for the cache instead of looking for or starting one."
    )
    api_key: SecretStr | None = Field(
        None, description="API key of this run; unset means a fresh random one."
    )
    admin_api_key: SecretStr | None = Field(
        None, description="Admin API key of this run; unset means a fresh random one."
    )
    ready_timeout_seconds: float = Field(180.0, gt=0, description="Longest wait for a component to be ready.")
    stop_timeout_seconds: float = Field(10.0, gt=0, description="Grace period after SIGTERM before SIGKILL.")
    restart: bool = Field(
        True, description="Restart a component whose process exits, with back-off (like CrashLoopBackOff)."
    )
    restart_backoff_seconds: float = Field(
        1.0, gt=0, description="Delay before the first restart; it doubles with each restart in a row."
    )
    restart_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Longest delay between restarts (the kubelet's is 300 s)."
    )
    restart_backoff_reset_seconds: float = Field(
        120.0, gt=0, description="Seconds a restarted component must run before the delay starts over."
    )
    log_level: str = Field("info", description="Log level of the launcher and the router.")
    candidates: dict[str, str] = Field(
        default_factory=dict,
        description='Candidate versions the router serves beside the stable ones, JSON: {"lightgbm": '
        '"<store version>"} (from python -m training train lightgbm --candidate; loaded inline by the '
        "router from the model store; roll them out with PUT /v1/rollouts).",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _models_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown models {unknown}; known: {', '.join(MODEL_NAMES)}")
        if not value:
            raise ValueError("at least one model is required")
        return value

    def runner_port(self, model: str) -> int:
        """The fixed port of a model's runner: base port + the model's index in MODEL_NAMES."""
        return self.runner_base_port + MODEL_NAMES.index(model)

    def runner_metrics_port(self, model: str) -> int:
        """The fixed metrics port of a model's runner: metrics base port + the model's index."""
        return self.runner_metrics_base_port + MODEL_NAMES.index(model)


def inherited_environment() -> dict[str, str]:
    """The launcher's own environment, which every child process inherits (PATH, HOME, ...)."""
    return dict(os.environ)
