"""A WineModel's status from observed objects: table tests built from real failure shapes.

Each row is what the API server and the router would show in one situation (object shapes as
``kubectl get -o yaml`` prints them); the expected Ready/ModelLoaded/Progressing conditions are
what a person reading ``kubectl get winemodels`` should see. The table walks one WineModel from
a fresh apply to Ready, through a spec change, and through the ways it fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.operator.resources import GENERATION_ANNOTATION
from services.operator.status import Observed, RouterReport, compute_status, condition, router_reports

NOW = "2026-12-02T08:00:00Z"


def wine_model(generation: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.winemeup.io/v1alpha1",
        "kind": "WineModel",
        "metadata": {"name": "lightgbm", "namespace": "winemeup", "generation": generation, "uid": "u-1"},
        "spec": {"replicas": 2, **spec},
    }


def deployment(
    applied: int = 3,
    generation: int = 7,
    observed: int = 7,
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    total: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wm-winemeup-runner-lightgbm",
            "generation": generation,
            "labels": {GENERATION_ANNOTATION: str(applied)},
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas if total is None else total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "conditions": conditions or [],
        },
    }


def pod(
    init: list[dict[str, Any]] | None = None, containers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "wm-winemeup-runner-lightgbm-7d9c-abcde"},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": init or [],
            "containerStatuses": containers or [],
        },
    }


# An init container in CrashLoopBackOff, as the kubelet reports it after a few failed fetches
# (terminationMessagePolicy FallbackToLogsOnError puts the log's last line in the message).
CRASH_LOOP_INIT = {
    "name": "model-fetch",
    "image": "winemeup-runner-lightgbm:0.1.0",
    "ready": False,
    "restartCount": 4,
    "state": {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 1m20s restarting failed container=model-fetch",
        }
    },
    "lastState": {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": "2026-12-02 07:59:01 ERROR fetch-model: model 'lightgbm' from "
            "https://models.example.com/lgb.bentomodel: HTTP 404 Not Found",
        }
    },
}
# The first failed fetch, before any back-off: the init container terminated with an error.
FAILED_FETCH_INIT = {
    "name": "model-fetch",
    "image": "winemeup-runner-lightgbm:0.1.0",
    "ready": False,
    "restartCount": 0,
    "state": {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": "model 'lightgbm' from https://models.example.com/lgb.bentomodel: "
            "SHA-256 mismatch: expected 0123, got 9f86",
        }
    },
}
PULL_FAILURE = {
    "name": "runner",
    "image": "registry.example.com/winemeup-runner-lightgbm:0.9.9",
    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
}
RUNNER_CRASH = {
    "name": "runner",
    "restartCount": 6,
    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
}

SERVING = RouterReport(True, "ready", "lightgbm-3f2a")


CASES: list[tuple[str, dict[str, Any], tuple[str, str], tuple[str, str], tuple[str, str]]] = [
    # id, observed overrides, (Ready status, reason), (ModelLoaded...), (Progressing...)
    (
        "created, no Deployment yet",
        {
            "deployment": None,
            "router": RouterReport(
                True,
                "unavailable",
                None,
                "runner at http://wm-winemeup-runner-lightgbm.winemeup.svc:3000 is not ready",
            ),
        },
        ("False", "DeploymentMissing"),
        ("False", "RouterReportsUnavailable"),
        ("True", "Creating"),
    ),
    (
        "generation lag: spec changed, objects still at the old generation",
        {"deployment": deployment(applied=2)},
        ("False", "GenerationLag"),
        ("True", "Loaded"),
        ("True", "SpecNotApplied"),
    ),
    (
        "generation lag: the Deployment controller has not observed the new template",
        {"deployment": deployment(generation=8, observed=7)},
        ("False", "GenerationLag"),
        ("True", "Loaded"),
        ("True", "DeploymentNotObserved"),
    ),
    (
        "rolling update: a new pod not ready, the old ones still serving",
        {"deployment": deployment(updated=1, ready=2, total=3)},
        ("False", "ReplicasNotReady"),
        ("True", "Loaded"),
        ("True", "RollingUpdate"),
    ),
    (
        "init container in CrashLoopBackOff",
        {"deployment": deployment(updated=1, ready=1, total=2), "pods": [pod(init=[CRASH_LOOP_INIT])]},
        ("False", "InitContainerCrashLoop"),
        ("False", "InitContainerCrashLoop"),
        ("True", "RollingUpdate"),
    ),
    (
        "failed model fetch: the init container terminated with an error",
        {"deployment": deployment(updated=1, ready=1, total=2), "pods": [pod(init=[FAILED_FETCH_INIT])]},
        ("False", "ModelFetchFailed"),
        ("False", "ModelFetchFailed"),
        ("True", "RollingUpdate"),
    ),
    (
        "image cannot be pulled",
        {"deployment": deployment(updated=1, ready=1, total=2), "pods": [pod(containers=[PULL_FAILURE])]},
        ("False", "ImagePullFailed"),
        ("True", "Loaded"),
        ("True", "RollingUpdate"),
    ),
    (
        "runner container OOM-killed in a loop; rollout past its deadline",
        {
            "deployment": deployment(
                updated=2,
                ready=1,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            "pods": [pod(containers=[RUNNER_CRASH])],
        },
        ("False", "RunnerCrashLoop"),
        ("True", "Loaded"),
        ("False", "ProgressDeadlineExceeded"),
    ),
    (
        "every replica ready, the router still loading the model",
        {"router": RouterReport(True, "loading", None, "first probe pending")},
        ("False", "Loading"),
        ("False", "Loading"),
        ("False", "Complete"),
    ),
    (
        "the router reports the runner unavailable",
        {"router": RouterReport(True, "unavailable", None, "ClientConnectorError: connection refused")},
        ("False", "RouterReportsUnavailable"),
        ("False", "RouterReportsUnavailable"),
        ("False", "Complete"),
    ),
    (
        "the router cannot be asked",
        {"router": None},
        ("False", "RouterUnreachable"),
        ("Unknown", "RouterUnreachable"),
        ("False", "Complete"),
    ),
    (
        "the router does not serve the model at all",
        {"router": RouterReport(False)},
        ("False", "NotServedByRouter"),
        ("False", "NotServedByRouter"),
        ("False", "Complete"),
    ),
    (
        "a version the router doesn't serve",
        {"wine_model": wine_model(version="lightgbm-4b00"), "router": SERVING},
        ("False", "VersionNotServed"),
        ("True", "Loaded"),
        ("False", "Complete"),
    ),
    (
        "an invalid spec",
        {"spec_error": "spec.modelSha256: must be 64 hex digits", "deployment": None},
        ("False", "InvalidSpec"),
        ("True", "Loaded"),
        ("False", "InvalidSpec"),
    ),
    (
        "applying failed (RBAC, admission)",
        {"apply_error": "applying ScaledObject failed: 403 Forbidden"},
        ("False", "ApplyFailed"),
        ("True", "Loaded"),
        ("False", "ApplyFailed"),
    ),
    (
        "serving: current generation, every replica updated and ready, the router ready",
        {"wine_model": wine_model(version="lightgbm-3f2a")},
        ("True", "Serving"),
        ("True", "Loaded"),
        ("False", "Complete"),
    ),
]


def observe(**overrides: Any) -> Observed:
    base: dict[str, Any] = {
        "wine_model": wine_model(),
        "model": "lightgbm",
        "deployment": deployment(),
        "pods": [],
        "router": SERVING,
        "service_url": "http://wm-winemeup-runner-lightgbm.winemeup.svc:3000",
    }
    return Observed(**(base | overrides))


@pytest.mark.parametrize(
    ("observed", "ready", "loaded", "progressing"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_status_from_observed_objects(observed, ready, loaded, progressing) -> None:
    status = compute_status(observe(**observed), NOW)
    got = {t: condition(status, t) for t in ("Ready", "ModelLoaded", "Progressing")}
    assert (got["Ready"]["status"], got["Ready"]["reason"]) == ready, got["Ready"]["message"]
    assert (got["ModelLoaded"]["status"], got["ModelLoaded"]["reason"]) == loaded, got["ModelLoaded"][
        "message"
    ]
    assert (got["Progressing"]["status"], got["Progressing"]["reason"]) == progressing
    assert status["observedGeneration"] == 3
    assert all(c["message"] for c in got.values())


def test_messages_tell_a_person_what_to_do() -> None:
    crash = condition(
        compute_status(
            observe(deployment=deployment(updated=1, ready=1, total=2), pods=[pod(init=[CRASH_LOOP_INIT])]),
            NOW,
        ),
        "Ready",
    )
    assert "model-fetch" in crash["message"] and "HTTP 404 Not Found" in crash["message"]
    assert "kubectl logs wm-winemeup-runner-lightgbm-7d9c-abcde -c model-fetch --previous" in crash["message"]
    fetch = condition(compute_status(observe(pods=[pod(init=[FAILED_FETCH_INIT])]), NOW), "ModelLoaded")
    assert "SHA-256 mismatch" in fetch["message"] and "spec.modelSha256" in fetch["message"]
    version = condition(compute_status(observe(wine_model=wine_model(version="lightgbm-4b00")), NOW), "Ready")
    assert "lightgbm-4b00" in version["message"] and "lightgbm-3f2a" in version["message"]
    lag = condition(compute_status(observe(deployment=deployment(applied=2)), NOW), "Ready")
    assert "generation 3" in lag["message"] and "at 2" in lag["message"]


def test_a_walk_from_apply_to_ready_keeps_transition_times() -> None:
    """The closing note's walk: one WineModel's conditions pass after pass, as the operator
    writes them. Its modelUri is wrong at first; a person fixes it (generation 3 -> 4)."""
    unavailable = RouterReport(True, "unavailable", None, "runner not ready")
    at4: dict[str, Any] = {"applied": 4, "generation": 8, "observed": 8}
    steps: list[tuple[str, int, dict[str, Any]]] = [
        ("09:00:00", 3, {"deployment": None, "router": unavailable}),
        (
            "09:00:15",
            3,
            {
                "deployment": deployment(updated=2, ready=0),
                "router": unavailable,
                "pods": [pod(init=[FAILED_FETCH_INIT])],
            },
        ),
        (
            "09:00:30",
            4,
            {
                "deployment": deployment(updated=2, ready=0),
                "router": unavailable,
                "pods": [pod(init=[FAILED_FETCH_INIT])],
            },
        ),
        (
            "09:00:45",
            4,
            {"deployment": deployment(**at4, updated=1, ready=0, total=3), "router": unavailable},
        ),
        (
            "09:01:00",
            4,
            {
                "deployment": deployment(**at4),
                "router": RouterReport(True, "loading", None, "first probe pending"),
            },
        ),
        ("09:01:15", 4, {"deployment": deployment(**at4)}),
        ("09:01:30", 4, {"deployment": deployment(**at4)}),
    ]
    wm = wine_model()
    walk = []
    for clock, generation, overrides in steps:
        wm["metadata"]["generation"] = generation
        status = compute_status(observe(wine_model=copy.deepcopy(wm), **overrides), f"2026-12-02T{clock}Z")
        wm["status"] = status
        walk.append(
            (clock, *(condition(status, t)["reason"] for t in ("Ready", "ModelLoaded", "Progressing")))
        )
    assert walk == [
        ("09:00:00", "DeploymentMissing", "RouterReportsUnavailable", "Creating"),
        ("09:00:15", "ModelFetchFailed", "ModelFetchFailed", "RollingUpdate"),
        ("09:00:30", "GenerationLag", "ModelFetchFailed", "SpecNotApplied"),
        ("09:00:45", "ReplicasNotReady", "RouterReportsUnavailable", "RollingUpdate"),
        ("09:01:00", "Loading", "Loading", "Complete"),
        ("09:01:15", "Serving", "Loaded", "Complete"),
        ("09:01:30", "Serving", "Loaded", "Complete"),
    ]
    ready = condition(wm["status"], "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "2026-12-02T09:01:15Z"
    assert condition(wm["status"], "Progressing")["lastTransitionTime"] == "2026-12-02T09:01:00Z"
    assert wm["status"]["version"] == "lightgbm-3f2a" and wm["status"]["readyReplicas"] == 2


def test_router_reports_parse_the_model_list() -> None:
    body = {
        "default": "lightgbm",
        "models": [
            {"name": "lightgbm", "status": "ready", "version": "v1", "placement": "runner"},
            {"name": "svr", "status": "unavailable", "version": None, "reason": "refused"},
        ],
    }
    reports = router_reports(body)
    assert reports["lightgbm"] == RouterReport(True, "ready", "v1")
    assert reports["svr"].reason == "refused"
    assert router_reports(None) == {}


def test_a_rollout_is_pending_until_the_router_is_asked_and_invalid_ones_name_the_field() -> None:
    wm = wine_model(
        candidate={"version": "v2", "modelUri": "https://m/v2.bentomodel", "modelSha256": "ab" * 32},
        rollout={"steps": ["shadow", 10, 50, 100], "auto": True},
    )
    rollout = condition(compute_status(observe(wine_model=wm), NOW), "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("Unknown", "Pending")
    bad = wine_model(
        candidate={"version": "v2", "modelUri": "https://m/v2.bentomodel", "modelSha256": "ab" * 32},
        rollout={"steps": [50, 10, "shadow"], "gate": {"minGradeAgreement": 1.5}},
    )
    rollout = condition(compute_status(observe(wine_model=bad), NOW), "Rollout")
    assert rollout["reason"] == "InvalidRollout"
    for expected in (
        "steps[1]: 10 must be above",
        "steps[2]: shadow can only be the first",
        "steps: must end at 100",
        "gate.minGradeAgreement: must be a number 0.0..1.0",
    ):
        assert expected in rollout["message"]
