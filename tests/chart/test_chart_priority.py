"""A model's runners can get their own PriorityClass (a shadow model's best-effort work)."""

from __future__ import annotations

import pytest
from chart_render import helm_template, parse

pytestmark = pytest.mark.chart


def _runner_priorities(*args: str) -> dict[str, str | None]:
    docs = parse(helm_template(*args))
    return {
        d["metadata"]["labels"]["winemeup.io/model"]: d["spec"]["template"]["spec"].get("priorityClassName")
        for d in docs
        if d.get("kind") == "Deployment" and "winemeup.io/model" in d["metadata"].get("labels", {})
    }


def test_a_model_priority_class_overrides_the_runner_default() -> None:
    priorities = _runner_priorities(
        "--set",
        "runnerDefaults.priorityClassName=serving",
        "--set",
        "models.svr.priorityClassName=best-effort",
    )
    assert priorities["svr"] == "best-effort"
    assert priorities["lightgbm"] == "serving"
    assert set(priorities.values()) == {"serving", "best-effort"}
    assert set(_runner_priorities().values()) == {None}
