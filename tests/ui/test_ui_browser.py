"""The real app in a real browser: ``streamlit run ui/app.py`` and a router as subprocesses,
driven by headless Debian Chromium through playwright (no browser download)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.stack.processes import ManagedProcess, free_port, streamlit_argv
from tests.support.binaries import require_binary
from tests.support.router import RouterHandle
from ui.screenshot import CHROMIUM, capture
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ui_server(
    ready_router: RouterHandle, managed_process: Callable[..., ManagedProcess], tmp_path: Path
) -> str:
    """``streamlit run ui/app.py`` on a free port, pointed at the ready router; its URL."""
    port = free_port()
    managed_process(
        streamlit_argv(port, "127.0.0.1", "--server.fileWatcherType", "none"),
        name="streamlit",
        env={
            "WINEMEUP_UI_ROUTER_URL": ready_router.url,
            "WINEMEUP_UI_API_KEY": ready_router.api_key,
            "HOME": str(tmp_path),
        },
        ready_url=f"http://127.0.0.1:{port}/_stcore/health",
        ready_timeout=60,
    )
    return f"http://127.0.0.1:{port}"


def test_browser_predicts_and_shows_the_answer(
    ui_server: str, ready_router: RouterHandle, tmp_path: Path
) -> None:
    require_binary(CHROMIUM, "apt-get install chromium")
    shot = capture(ui_server, tmp_path / "ui.png")
    expected = httpx.post(
        f"{ready_router.url}/v1/predict",
        json={"features": SCHEMA.example()},
        headers=ready_router.headers(),
        timeout=10,
    ).json()
    assert shot.answer.strip() == f"Predicted quality: {expected['quality']} / 10"
    assert f"{expected['score']:.3f}" in shot.page_text, shot.page_text
    assert re.search(r"Round trip\s+\d+\.\d ms", shot.page_text)
    assert expected["model"] in shot.page_text and expected["model_version"] in shot.page_text
    png = shot.path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
