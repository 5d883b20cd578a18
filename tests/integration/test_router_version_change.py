"""A new version of the same model behind a live router: nothing cached under the old one is served.

A runner serves lightgbm version A; the router caches a wine's score and explanation. The
store's latest becomes version B (the same model files under a new version name) and the
runner restarts on the same port. Once the router lists B, the same wine is scored and
explained afresh (``cached: false``) and every answer (/v1 single and batch, explain, /v2)
names B; asked again, it is cached under B.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.model_store import copy_model
from tests.support.runners import runner_fleet
from tests.support.waiting import wait_until
from winemeup.runtimes.store import read_entry
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "lightgbm"
WINE = {**SCHEMA.example(), "alcohol": 11.3, "sulphates": 0.71}
BATCH_WINE = {**WINE, "alcohol": 11.4}
V2_WINE = {**WINE, "alcohol": 11.5}
PROBE_WINE = {**WINE, "alcohol": 11.6}
"""One wine per path, so that no path's answer is cached by another's."""
NEW_VERSION = "swapped0test0v2"


def add_version(home: Path, name: str, version: str) -> None:
    """Store the latest version of ``name`` again as ``version`` and make that the latest."""
    entry = read_entry(home, name)
    target = entry.path.parent / version
    shutil.copytree(entry.path, target)
    manifest = target / "model.yaml"
    text = manifest.read_text()
    assert f"version: {entry.version}\n" in text
    manifest.write_text(text.replace(f"version: {entry.version}\n", f"version: {version}\n", 1))
    (entry.path.parent / "latest").write_text(version)


def test_a_new_version_is_answered_uncached_and_named(
    model_store: Path, tmp_path: Path, router: Callable[..., Any]
) -> None:
    home = copy_model(model_store, MODEL, tmp_path / "store")
    old_version = read_entry(home, MODEL).version
    fleet = runner_fleet(home, tmp_path / "run", [MODEL]).start()
    try:
        handle = router(
            home,
            models=[MODEL],
            placement="runner",
            runner_urls=fleet.urls,
            health_interval_seconds=0.2,
            runner_timeout_seconds=10.0,
        )
        handle.wait_ready()
        with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=30) as client:

            def listed_version() -> str:
                return str(client.get("/v1/models").json()["models"][0]["version"])

            def ask() -> dict[str, Any]:
                single = client.post("/v1/predict", json={"features": WINE})
                batch = client.post("/v1/predict/batch", json={"instances": [BATCH_WINE]})
                explain = client.post("/v1/explain", json={"features": WINE})
                row = [float(V2_WINE[n] == "white") if n == "wine_type" else V2_WINE[n] for n in SCHEMA.names]
                tensor = {"name": "features", "shape": [1, 12], "datatype": "FP64", "data": row}
                v2 = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
                for r in (single, batch, explain, v2):
                    assert r.status_code == 200, r.text
                return {
                    "single": single.json(),
                    "batch": batch.json(),
                    "explain": explain.json(),
                    "v2": v2.json(),
                }

            def explainer_ready() -> bool:
                """A runner's explainer starts beside it (503 meanwhile); probed with its own wine."""
                return client.post("/v1/explain", json={"features": PROBE_WINE}).status_code == 200

            def versions(answers: dict[str, Any]) -> set[str]:
                return {
                    answers["single"]["model_version"],
                    answers["batch"]["model_version"],
                    answers["explain"]["model_version"],
                    answers["v2"]["model_version"],
                }

            assert listed_version() == old_version
            wait_until(explainer_ready, 60, interval=0.2)
            ask()
            before = ask()
            assert versions(before) == {old_version}
            assert before["single"]["cached"] and before["batch"]["predictions"][0]["cached"]
            assert before["explain"]["cached"]

            add_version(home, MODEL, NEW_VERSION)
            fleet.restart(MODEL)
            wait_until(lambda: listed_version() == NEW_VERSION, 30, message=lambda: listed_version())
            wait_until(explainer_ready, 60, interval=0.2)

            after = ask()
            assert versions(after) == {NEW_VERSION}
            assert after["single"]["cached"] is False
            assert after["batch"]["predictions"][0]["cached"] is False
            assert after["explain"]["cached"] is False
            # The same model files: the same numbers, now stored under the new version.
            assert after["single"]["score"] == pytest.approx(before["single"]["score"], abs=1e-12)
            again = ask()
            assert versions(again) == {NEW_VERSION}
            assert again["single"]["cached"] and again["explain"]["cached"]
    finally:
        fleet.stop()
