"""The predict tab's explanation waterfall and interval, and the Models tab's drift table, in a
real browser (headless Debian Chromium through playwright), with a screenshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.stack.processes import ManagedProcess, free_port, streamlit_argv
from tests.support.binaries import require_binary
from tests.support.router import RouterHandle
from tests.support.waiting import wait_until
from ui.screenshot import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.slow]


def test_browser_shows_the_waterfall_the_interval_and_the_drift_table(
    ready_router: RouterHandle, managed_process: Callable[..., ManagedProcess], tmp_path: Path
) -> None:
    require_binary(CHROMIUM, "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    def drift_monitored() -> bool:
        """The router read the default model's training bins (it loads them after start)."""
        answer = httpx.get(ready_router.url + "/v1/drift", headers=ready_router.headers(), timeout=10)
        return bool(answer.json()["enabled"])

    wait_until(drift_monitored, 30, interval=0.2, message=lambda: ready_router.process.log_tail())

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
    shot = tmp_path / "insight.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
            button = page.get_by_role("button", name="Predict quality")
            button.wait_for(timeout=60_000)
            button.click()
            page.get_by_text("Why this score?").wait_for(timeout=60_000)
            page.get_by_text("How sure?").wait_for(timeout=60_000)
            # Both charts are Vega canvases: the interval's and the waterfall's.
            page.wait_for_function("document.querySelectorAll('canvas').length >= 2", timeout=30_000)
            page.wait_for_timeout(1000)  # let the charts paint
            text = page.locator("body").inner_text()
            page.screenshot(path=str(shot), full_page=True)
            page.get_by_role("tab", name="Models").click()
            page.get_by_text("Input drift").wait_for(timeout=30_000)
            models_text = page.locator("body").inner_text()
        finally:
            browser.close()
    assert "With 90% coverage the quality lies between" in text, text
    assert "Method: TreeSHAP" in text
    assert "Population stability index" in models_text, models_text
    assert "Drift is not monitored" not in models_text
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000
