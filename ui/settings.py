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
    max_csv_rows: int = Field(
        10_000,
        gt=0,
        description="Most data rows of one uploaded or pasted CSV (the router's batch_max_rows by default); "
        "a longer file is refused with a message before anything is sent.",
    )
    max_paste_characters: int = Field(
        4_000_000,
        gt=0,
        description="Longest pasted CSV text, in characters (the router's max_body_bytes by default).",
    )
    models_cache_seconds: float = Field(
        5.0, ge=0, description="How long the model list from GET /v1/models is reused before asking again."
    )
