"""Fixtures of the UI tests: a real router with every model ready, and the app under AppTest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.support.router import RouterHandle, launch_router
from tests.support.waiting import wait_until

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"


def wait_models_ready(
    handle: RouterHandle, names: set[str] | None = None, timeout: float = 90.0
) -> dict[str, Any]:
    """Poll GET /v1/models until the named models (all when None) are ready; return the body."""
    seen: dict[str, Any] = {}

    def ready() -> dict[str, Any] | None:
        response = httpx.get(f"{handle.url}/v1/models", headers=handle.headers(), timeout=5)
        response.raise_for_status()
        seen.update(response.json())
        status = {m["name"]: m["status"] for m in seen["models"]}
        wanted = names if names is not None else set(status)
        return dict(seen) if all(status.get(n) == "ready" for n in wanted) else None

    return wait_until(ready, timeout, interval=0.2, message=lambda: f"models not ready: {seen}")


@pytest.fixture
def models_ready() -> Callable[..., dict[str, Any]]:
    """``models_ready(handle, names=None)``: wait until those models of a router are ready."""
    return wait_models_ready


@pytest.fixture(scope="module")
def ready_router(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterHandle]:
    """A router serving the seven models inline from the test model store, all loaded.

    Shared by the tests of a module (loading seven models is the slow part); tests that need
    a differently configured router use the ``router`` factory instead.
    """
    handle = launch_router(tmp_path_factory.mktemp("ui-router"), model_store)
    try:
        wait_models_ready(handle)
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture
def ui_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """Factory: the app under AppTest, configured through its WINEMEUP_UI_* environment, first run done."""

    def make(router_url: str, api_key: str, **settings: object) -> AppTest:
        monkeypatch.setenv("WINEMEUP_UI_ROUTER_URL", router_url)
        monkeypatch.setenv("WINEMEUP_UI_API_KEY", api_key)
        for key, value in settings.items():
            monkeypatch.setenv(f"WINEMEUP_UI_{key.upper()}", str(value))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make
