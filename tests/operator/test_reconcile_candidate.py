"""WineModel spec.candidate in the pure reconcile: the candidate runner's objects beside the
stable ones, and a bad candidate refused with a SpecError naming the field.

The WineModel and the release context are the ones the chart renders in operator mode for
ci/operator-values.yaml (real helm); the parity with Helm mode is test_operator_chart.py's.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.operator.reconcile import SpecError, desired_objects
from services.operator.release import ReleaseContext
from tests.chart.chart_render import VALUES_FILES, helm_template, parse

pytestmark = pytest.mark.chart


@pytest.fixture(scope="module")
def rendered() -> tuple[dict[str, Any], ReleaseContext]:
    docs = parse(helm_template("-f", str(VALUES_FILES["operator"])))
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    wine_model = next(d for d in docs if d["kind"] == "WineModel" and d["metadata"]["name"] == "lightgbm")
    wine_model["metadata"] |= {"uid": "uid-lightgbm", "generation": 3}
    return wine_model, ReleaseContext.model_validate_json(config["data"]["release.json"])


def test_the_candidate_runner_is_reconciled_beside_the_stable_one(
    rendered: tuple[dict[str, Any], ReleaseContext],
) -> None:
    wine_model, release = rendered
    assert wine_model["spec"]["candidate"]["version"] == "cand-2026-06"
    objects = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(wine_model, release)}
    stable, candidate = f"{release.fullname}-runner-lightgbm", f"{release.fullname}-runner-lightgbm-candidate"
    kinds = {"Deployment", "Service", "ScaledObject", "PodDisruptionBudget"}
    assert set(objects) == {(k, n) for k in kinds for n in (stable, candidate)}
    deployment = objects[("Deployment", candidate)]
    pod = deployment["spec"]["template"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["WINEMEUP_RUNNER_VERSION"] == "cand-2026-06"
    assert "WINEMEUP_RUNNER_VERSION" not in {
        e["name"] for e in objects[("Deployment", stable)]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert pod["metadata"]["labels"]["winemeup.io/track"] == "candidate"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-lightgbm"
    selector = deployment["spec"]["selector"]["matchLabels"]
    stable_pod = objects[("Deployment", stable)]["spec"]["template"]["metadata"]["labels"]
    assert not all(stable_pod.get(k) == v for k, v in selector.items()), "the selectors overlap"
    fetch = pod["spec"]["initContainers"][0]["command"]
    assert fetch[fetch.index("--uri") + 1].endswith("lightgbm-2026-06.bentomodel")
    # Without spec.candidate, only the stable runner.
    plain = copy.deepcopy(wine_model)
    del plain["spec"]["candidate"]
    assert {o["metadata"]["name"] for o in desired_objects(plain, release)} == {stable}


@pytest.mark.parametrize(
    ("candidate", "field"),
    [
        ({"image": "r/x:1"}, "spec.candidate.version"),
        ({"version": "v2", "modelUri": "https://m.example/a.bentomodel"}, "spec.candidate.modelSha256"),
        ({"version": "v2", "image": "r/x:1", "modelSha256": "a" * 64}, "spec.candidate.modelSha256"),
        (
            {"version": "v2", "modelUri": "https://m.example/a", "modelSha256": "xyz"},
            "spec.candidate.modelSha256",
        ),
        (
            {"version": "v2", "modelUri": "http://m.example/a", "modelSha256": "a" * 64},
            "spec.candidate.modelUri",
        ),
    ],
    ids=["no-version", "uri-without-sha", "sha-without-uri", "bad-sha", "plain-http"],
)
def test_a_bad_candidate_is_refused_naming_the_field(
    rendered: tuple[dict[str, Any], ReleaseContext], candidate: dict[str, Any], field: str
) -> None:
    wine_model, release = copy.deepcopy(rendered[0]), rendered[1]
    wine_model["spec"]["candidate"] = candidate
    with pytest.raises(SpecError) as refused:
        desired_objects(wine_model, release)
    assert refused.value.field == field
    allowed = copy.deepcopy(wine_model)
    if field == "spec.candidate.modelUri":
        allowed["spec"]["candidate"]["allowInsecureModelUri"] = True
        assert any(o["metadata"]["name"].endswith("-candidate") for o in desired_objects(allowed, release))
