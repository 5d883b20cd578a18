"""Ensembles, canary splits and shadows set in chart values reach the router's settings.

The chart renders ``router.ensembles`` and ``router.traffic`` into the router ConfigMap; the
real :class:`RouterSettings` parses them, and the router's own policy parser accepts them.
The values schema refuses an ensemble named like a model and a split naming an unknown model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import helm_template, parse

from services.router.policies import Ensemble
from services.router.settings import RouterSettings
from services.router.traffic import parse_policies

pytestmark = pytest.mark.chart

VALUES: dict[str, Any] = {
    "router": {
        "ensembles": [
            {"name": "blend", "members": {"extra_trees": 0.512, "svr": 0.488}, "onMemberDown": "renormalize"}
        ],
        "traffic": {
            "splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}},
            "shadows": {"lightgbm": {"target": "catboost", "fraction": 0.1}},
            "shadowMaxInflight": 16,
        },
        "runnerConnectionMaxAgeSeconds": 45,
    }
}


def _render(tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return parse(helm_template("-f", str(path)))


def test_traffic_values_reach_the_router_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _render(tmp_path, VALUES)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-router"))
    for key in list(__import__("os").environ):
        if key.startswith("WINEMEUP_ROUTER_"):
            monkeypatch.delenv(key)
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WINEMEUP_ROUTER_API_KEYS", "k1")
    monkeypatch.setenv("WINEMEUP_ROUTER_ADMIN_API_KEYS", "k2")
    settings = RouterSettings()  # type: ignore[call-arg]
    assert settings.ensembles == [
        {
            "name": "blend",
            "members": {"extra_trees": 0.512, "svr": 0.488},
            "on_member_down": "renormalize",
            "description": "",
        }
    ]
    assert Ensemble.from_dict(settings.ensembles[0]).on_member_down == "renormalize"
    splits, shadows = parse_policies(
        {"splits": settings.splits, "shadows": settings.shadows}, settings.models
    )
    assert splits is not None and splits["lightgbm"].as_dict() == {"lightgbm": 90, "xgboost": 10}
    assert shadows is not None and shadows["lightgbm"].as_dict() == {"target": "catboost", "fraction": 0.1}
    assert settings.shadow_max_inflight == 16
    assert settings.runner_connection_max_age_seconds == 45


@pytest.mark.parametrize(
    "router",
    [
        {"ensembles": [{"name": "svr", "members": {"extra_trees": 1, "lightgbm": 1}}]},
        {"traffic": {"splits": {"lightgbm": {"lightgbm": 90, "xgbost": 10}}}},
        {"traffic": {"shadows": {"lightgbm": {"target": "catboost", "fraction": 2}}}},
    ],
)
def test_the_values_schema_refuses_bad_policies(tmp_path: Path, router: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match=r"values don't meet the specifications|schema"):
        _render(tmp_path, {"router": router})
