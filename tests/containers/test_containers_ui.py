"""The UI container shows its page in Chromium (headless, through playwright) and predicts
through the router container: the answer on the page is the router's for the same wine, and
the router's metrics count the UI's request."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.containers.harness import PlayedRelease
from tests.support.binaries import require_binary
from tests.support.metrics import metric_value
from ui.screenshot import CHROMIUM, capture
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.containers, pytest.mark.slow]


def test_ui_container_predicts_through_the_router_container(
    release: PlayedRelease, router: httpx.Client, tmp_path: Path
) -> None:
    require_binary(CHROMIUM, "apt-get install chromium")
    ui = release.workload("ui")
    requests_before = _predict_requests(router)
    shot = capture(ui.url("ui"), tmp_path / "ui.png")
    expected = router.post("/v1/predict", json={"features": SCHEMA.example()}).json()
    assert shot.answer.strip() == f"Predicted quality: {expected['quality']} / 10", shot.page_text
    assert f"{expected['score']:.3f}" in shot.page_text, shot.page_text
    assert expected["model"] in shot.page_text and expected["model_version"] in shot.page_text
    assert re.search(r"Round trip\s+\d+\.\d ms", shot.page_text)
    # The UI's call reached this router container (the one answered above came after it).
    assert _predict_requests(router) >= requests_before + 2
    png = shot.path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def _predict_requests(router: httpx.Client) -> float:
    return metric_value(router.get("/metrics").text, "winemeup_router_requests_total", route="/v1/predict")
