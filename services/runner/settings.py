"""Settings of a model runner (environment prefix ``WINEMEUP_RUNNER_``).

One runner serves one model. It is started with ``bentoml serve``, so BentoML's own
``BENTOML_HOME`` (where the model store lives) is set beside these.

Constructor arguments are defaults that the environment overrides: a runner bento bakes its
model and version in as bento arguments (``bentoml.use_arguments()``, available before the
service module is imported, unlike a bento's ``envs``), and a deployment's
``WINEMEUP_RUNNER_*`` variables still win.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from winemeup.runtimes import MODEL_NAMES


class RunnerSettings(BaseSettings):
    """Which model this runner serves and how much it takes at once."""

    # An empty variable counts as unset (templated manifests often render empty values).
    model_config = SettingsConfigDict(env_prefix="WINEMEUP_RUNNER_", extra="ignore", env_ignore_empty=True)

    model: str = Field(description="Name of the model to serve (one of the seven families).")
    version: str | None = Field(None, description="Model store version to serve; unset means latest.")
    serving_path: Literal["auto", "onnx", "framework"] = Field(
        "auto",
        description="auto serves the model's ONNX artifact when it passes parity, else its framework; "
        "onnx or framework forces one path (onnx fails the load without a passing artifact).",
    )
    batch_max_rows: int = Field(10_000, gt=0, description="Most rows one batch call may carry.")
    workers: int = Field(1, gt=0, description="BentoML worker processes (each loads the model).")
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="BentoML traffic.timeout: longest a request may take, in seconds."
    )
    access_log: bool = Field(False, description="Log every request (BentoML access log).")
    token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Shared secret the router sends in X-WineMeUp-Runner-Token; every call but the "
        "probes and /metrics must carry it. Required unless allow_unauthenticated.",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve without a token (anyone who reaches the port may call every route): "
        "for a developer's loopback only.",
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener apart from the API (0: none; the "
        "API port's /metrics stays).",
    )
    metrics_host: str = Field("0.0.0.0", description="Address the metrics listener binds.")
    explain_max_rows: int = Field(100, gt=0, description="Most rows one /explain call may carry.")
    explain_max_inflight: int = Field(
        1, gt=0, description="Explanations computed at once per worker; more answer 429 with Retry-After."
    )
    explain_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Deadline of one explanation: the work stops between rows once it has passed (503).",
    )
    explain_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="nice increment of the process computing explanations, so predictions get the CPU first.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment first: constructor arguments (bento arguments) are only defaults.
        return env_settings, init_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _token_or_explicitly_open(self) -> RunnerSettings:
        if self.token is None and not self.allow_unauthenticated:
            raise ValueError(
                "WINEMEUP_RUNNER_TOKEN is not set: a runner only answers the router, which sends "
                "that shared secret. Set it (the chart and `make run` do), or set "
                "WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED=true on a developer's loopback."
            )
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(MODEL_NAMES)}")
        return value
