"""Settings of the Streamlit UI (environment prefix ``WINEMEUP_UI_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    """Where the router is and how to authenticate to it."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_UI_", extra="ignore")

    router_url: str = Field("http://127.0.0.1:8000", description="Base URL of the router's REST API.")
    api_key: SecretStr = Field(description="API key the UI sends to the router.")
    timeout_seconds: float = Field(10.0, gt=0, description="Deadline of one call to the router.")
    batch_chunk_rows: int = Field(
        1000, gt=0, description="Rows per batch call when scoring a CSV; keep <= the router's batch_max_rows."
    )
    models_cache_seconds: float = Field(
        5.0, ge=0, description="How long the model list from GET /v1/models is reused before asking again."
    )
