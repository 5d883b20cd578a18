"""Settings of the operator (environment prefix ``WINEMEUP_OPERATOR_``); the only module of the
operator that reads the environment. In Kubernetes the chart's values are their only source."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator needs to start; read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_OPERATOR_", extra="ignore")

    namespace: str = Field(description="The namespace the operator watches and writes (its release's).")
    identity: str = Field(
        default_factory=socket.gethostname, description="This replica's name in the Lease (the pod name)."
    )
    release_file: Path = Field(description="The release context the chart renders (release.json).")
    admin_api_key: SecretStr = Field(
        description="The router's admin API keys, comma-separated (the first is used)."
    )
    lease_name: str = Field("winemeup-operator", description="Name of the Lease that elects one leader.")
    lease_duration_seconds: int = Field(15, ge=5, description="Seconds a Lease lasts without renewal.")
    resync_seconds: float = Field(15.0, gt=0, description="Seconds between two full reconcile passes.")
    router_timeout_seconds: float = Field(5.0, gt=0, description="Deadline of one call to the router.")
    metrics_port: int = Field(8080, ge=1, le=65535, description="Port of /metrics and /healthz.")
    log_level: str = Field("info", description="Python log level.")

    def admin_key(self) -> str:
        """The first admin key."""
        return self.admin_api_key.get_secret_value().split(",")[0].strip()
