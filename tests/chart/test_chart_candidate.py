"""models.<name>.candidate: a candidate runner beside the stable one (issue 16), as the real helm
renders it.

* The candidate's Deployment, Service, HPA, PDB and NetworkPolicy exist, named
  ``<runner>-candidate``, and pass kubernetes-validate --strict for 1.29 and 1.35.
* Their selectors never overlap the stable runner's: each Service, PDB and NetworkPolicy
  selects the pods of its own Deployment only.
* The candidate runs what the stable runner runs (token, probes, security context, metrics
  port, resources), plus WINEMEUP_RUNNER_VERSION, from its own model source.
* The router's ConfigMap names the candidate Service's URL and version, merged with
  router.rollouts.candidates.
* Bad values fail the render with a message naming the field.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from chart_render import NAMESPACE, RELEASE, helm_template, parse

pytestmark = pytest.mark.chart

SHA_STABLE = "a" * 64
SHA_CANDIDATE = "b" * 64
CANDIDATE_URI = "https://models.example.com/lightgbm-retrain.bentomodel"
VALUES = [
    "--set", "auth.runnerToken=t-candidate-test-0001",
    "--set", "networkPolicy.enabled=true",
    "--set", "models.lightgbm.modelUri=https://models.example.com/lightgbm.bentomodel",
    "--set", f"models.lightgbm.modelSha256={SHA_STABLE}",
    "--set", "models.lightgbm.candidate.version=retrain-2",
    "--set", f"models.lightgbm.candidate.modelUri={CANDIDATE_URI}",
    "--set", f"models.lightgbm.candidate.modelSha256={SHA_CANDIDATE}",
    "--set", "router.rollouts.candidates.xgboost.version=xgb-2",
]  # fmt: skip
STABLE = f"{RELEASE}-winemeup-runner-lightgbm"
CANDIDATE = f"{STABLE}-candidate"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return parse(helm_template(*VALUES))


def _named(docs: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs if d["metadata"]["name"] == name}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_candidate_runner_objects_are_rendered_and_valid(docs: list[dict[str, Any]]) -> None:
    candidate = _named(docs, CANDIDATE)
    assert set(candidate) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert candidate["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == CANDIDATE
    for obj in candidate.values():
        assert obj["metadata"]["labels"]["winemeup.io/track"] == "candidate"
        assert obj["kind"] == "NetworkPolicy" or obj["metadata"]["labels"]["winemeup.io/model"] == "lightgbm"
        for version in ("1.29.0", "1.35.0"):
            kubernetes_validate.validate(obj, version, strict=True)
    assert "winemeup.io/track" not in _named(docs, STABLE)["Deployment"]["metadata"]["labels"]


def test_candidate_and_stable_selectors_never_overlap(docs: list[dict[str, Any]]) -> None:
    stable, candidate = _named(docs, STABLE), _named(docs, CANDIDATE)
    pods = {
        "stable": stable["Deployment"]["spec"]["template"]["metadata"]["labels"],
        "candidate": candidate["Deployment"]["spec"]["template"]["metadata"]["labels"],
    }
    for own, objects in (("stable", stable), ("candidate", candidate)):
        other = "candidate" if own == "stable" else "stable"
        selectors = {
            "Deployment": objects["Deployment"]["spec"]["selector"]["matchLabels"],
            "Service": objects["Service"]["spec"]["selector"],
            "PodDisruptionBudget": objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
            "NetworkPolicy": objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"],
        }
        for kind, selector in selectors.items():
            assert _selects(selector, pods[own]), f"{own} {kind} misses its own pods"
            assert not _selects(selector, pods[other]), f"{own} {kind} selects the {other} pods"
    # Every runner pod, the candidate's too, is selected by exactly one NetworkPolicy.
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for labels in pods.values():
        assert len([p for p in policies if _selects(p["spec"]["podSelector"]["matchLabels"], labels)]) == 1


def test_the_candidate_runs_as_the_stable_runner_with_its_own_model(docs: list[dict[str, Any]]) -> None:
    stable = _named(docs, STABLE)["Deployment"]["spec"]["template"]["spec"]
    candidate = _named(docs, CANDIDATE)["Deployment"]["spec"]["template"]["spec"]
    s, c = stable["containers"][0], candidate["containers"][0]
    for key in ("image", "securityContext", "ports", "envFrom", "resources", "volumeMounts"):
        assert c[key] == s[key], key
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe] == s[probe], probe
    assert candidate["securityContext"] == stable["securityContext"]
    env = {e["name"]: e for e in c["env"]}
    assert env["WINEMEUP_RUNNER_VERSION"]["value"] == "retrain-2"
    assert env["WINEMEUP_RUNNER_MODEL"]["value"] == "lightgbm"
    assert env["WINEMEUP_RUNNER_TOKEN"] == {e["name"]: e for e in s["env"]}["WINEMEUP_RUNNER_TOKEN"]
    assert "WINEMEUP_RUNNER_VERSION" not in {e["name"] for e in s["env"]}
    fetch = candidate["initContainers"][0]["command"]
    assert fetch[fetch.index("--uri") + 1] == CANDIDATE_URI
    assert fetch[fetch.index("--sha256") + 1] == SHA_CANDIDATE
    assert stable["initContainers"][0]["command"][fetch.index("--sha256") + 1] == SHA_STABLE


def test_the_router_is_told_the_candidate_service(docs: list[dict[str, Any]]) -> None:
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-router"))
    candidates = json.loads(config["data"]["WINEMEUP_ROUTER_CANDIDATES"])
    assert candidates == {
        "lightgbm": {"version": "retrain-2", "url": f"http://{CANDIDATE}.{NAMESPACE}.svc:3000"},
        "xgboost": {"version": "xgb-2"},
    }
    service = _named(docs, CANDIDATE)["Service"]
    assert {p["port"] for p in service["spec"]["ports"]} >= {3000}


def test_an_image_candidate_keeps_the_stable_model_source_out() -> None:
    docs = parse(
        helm_template(
            "--set", "models.svr.candidate.version=svr-2",
            "--set", "models.svr.candidate.image.tag=0.1.0-svr2",
            "--set", "models.svr.modelUri=https://models.example.com/svr.bentomodel",
            "--set", f"models.svr.modelSha256={SHA_STABLE}",
        )
    )  # fmt: skip
    deployment = _named(docs, f"{RELEASE}-winemeup-runner-svr-candidate")["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].endswith("winemeup-runner-svr:0.1.0-svr2")
    assert "initContainers" not in pod  # its model is the one in its image, not the stable archive


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", f"models.lightgbm.candidate.modelUri={CANDIDATE_URI}"], "candidate.version is required"),
        (
            [
                "--set", "models.lightgbm.candidate.version=v2",
                "--set", f"models.lightgbm.candidate.modelUri={CANDIDATE_URI}",
            ],
            "models.lightgbm.candidate.modelSha256 is required",
        ),
        (
            [
                "--set", "models.lightgbm.candidate.version=v2",
                "--set", "models.lightgbm.candidate.modelUri=http://models.example/m.bentomodel",
                "--set", f"models.lightgbm.candidate.modelSha256={SHA_CANDIDATE}",
            ],
            "candidate.allowInsecureModelUri",
        ),
        (
            [
                "--set", "models.lightgbm.candidate.version=v2",
                "--set", "router.rollouts.candidates.lightgbm.version=v3",
            ],
            "both give lightgbm a candidate",
        ),
        (
            ["--set", "models.svr.placement=inline", "--set", "models.svr.candidate.version=v2"],
            "models.svr.candidate needs placement: runner",
        ),
        (["--set", "models.lightgbm.candidate.versoin=v2"], "additional properties 'versoin' not allowed"),
    ],
    ids=["no-version", "no-checksum", "plain-http", "named-twice", "inline", "unknown-key"],
)  # fmt: skip
def test_bad_candidates_fail_the_render_naming_the_field(args: list[str], message: str) -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template(*args)
    assert message in str(refused.value)
