"""A WineModel's status as a pure function of what is observed.

``Ready`` is True only when (1) the runner objects were applied from the WineModel's current
generation, (2) the Deployment controller observed that generation, (3) every replica is
updated and ready, and (4) the router reports the model ``ready``, at the version the spec
asks for when it names one. Each way of falling short has its own reason and a message a
person can act on. ``ModelLoaded`` is the router's view and the pods' model fetch;
``Progressing`` is whether a change is still rolling out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.operator.conditions import Condition, false, true, unknown
from services.operator.resources import GENERATION_ANNOTATION
from services.operator.rollout import rollout_condition

READY = "Ready"
MODEL_LOADED = "ModelLoaded"
PROGRESSING = "Progressing"

_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}


@dataclass(frozen=True, slots=True)
class RouterReport:
    """What the router says about one model (its entry in ``GET /v1/models``)."""

    listed: bool
    status: str = ""
    version: str | None = None
    reason: str = ""
    versions: tuple[str, ...] = ()
    """Every version served (stable and candidate, while a rollout has a candidate)."""


UNREACHABLE = None
"""Pass as the router report when the router could not be asked."""


def router_reports(body: Any) -> dict[str, RouterReport]:
    """The router's ``GET /v1/models`` answer -> a report per model name."""
    out: dict[str, RouterReport] = {}
    for entry in (body or {}).get("models", []) if isinstance(body, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            versions = tuple(
                str(v["version"])
                for v in entry.get("versions") or []
                if isinstance(v, dict) and v.get("version")
            )
            out[entry["name"]] = RouterReport(
                True,
                str(entry.get("status") or ""),
                entry.get("version"),
                str(entry.get("reason") or ""),
                versions,
            )
    return out


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything one status computation reads."""

    wine_model: dict[str, Any]
    model: str
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]]
    router: RouterReport | None
    service_url: str
    spec_error: str = ""
    """Why the WineModel could not be turned into objects (empty: it could)."""
    apply_error: str = ""
    """Why applying its objects failed in this pass (empty: they were applied)."""
    rollout: Condition | None = None
    """The Rollout condition from the router (rollout.drive_rollout); None: not driven in this pass."""
    rollout_status: dict[str, Any] | None = None
    """``status.rollout``: the router's step, phase and the gate's last decision."""


def _pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(reason, message, condition) of the first pod failure a person must act on."""
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for init in status.get("initContainerStatuses") or []:
            state = init.get("state") or {}
            last = (init.get("lastState") or {}).get("terminated") or {}
            waiting = state.get("waiting") or {}
            terminated = state.get("terminated") or {}
            cname = init.get("name", "?")
            if waiting.get("reason") == "CrashLoopBackOff":
                detail = (last.get("message") or "").strip().splitlines()
                why = f": {detail[-1]}" if detail else ""
                return (
                    "InitContainerCrashLoop",
                    f"pod {name}: init container {cname} is in CrashLoopBackOff after "
                    f"{init.get('restartCount', 0)} restarts (last exit code {last.get('exitCode', '?')}"
                    f"{why}); see kubectl logs {name} -c {cname} --previous",
                    MODEL_LOADED,
                )
            if terminated and terminated.get("exitCode", 0) != 0:
                detail = (terminated.get("message") or "").strip().splitlines()
                why = detail[-1] if detail else f"exit code {terminated.get('exitCode')}"
                return (
                    "ModelFetchFailed" if cname == "model-fetch" else "InitContainerFailed",
                    f"pod {name}: {cname} failed: {why}; check spec.modelUri and spec.modelSha256, "
                    f"and kubectl logs {name} -c {cname}",
                    MODEL_LOADED,
                )
            if waiting.get("reason") in _PULL_FAILURES:
                return (
                    "ImagePullFailed",
                    f"pod {name}: cannot pull {init.get('image', 'the image')}: {waiting.get('message', '')}",
                    READY,
                )
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _PULL_FAILURES:
                return (
                    "ImagePullFailed",
                    f"pod {name}: cannot pull {container.get('image')}: {waiting.get('message', '')}",
                    READY,
                )
            if waiting.get("reason") == "CrashLoopBackOff":
                last = (container.get("lastState") or {}).get("terminated") or {}
                return (
                    "RunnerCrashLoop",
                    f"pod {name}: container {container.get('name')} is in CrashLoopBackOff after "
                    f"{container.get('restartCount', 0)} restarts (last exit code "
                    f"{last.get('exitCode', '?')}, {last.get('reason', '')}); "
                    f"see kubectl logs {name} --previous",
                    READY,
                )
    return None


def _loaded(o: Observed, pod_problem: tuple[str, str, str] | None) -> Condition:
    """ModelLoaded: a failed model fetch in a pod, else the router's view of the model."""
    if pod_problem is not None and pod_problem[2] == MODEL_LOADED:
        return false(MODEL_LOADED, pod_problem[0], pod_problem[1])
    r = o.router
    if r is None:
        return unknown(MODEL_LOADED, "RouterUnreachable", "the router's GET /v1/models could not be read")
    if not r.listed:
        return false(
            MODEL_LOADED,
            "NotServedByRouter",
            f"the router does not serve {o.model}: enable models.{o.model} (placement runner) in the "
            "chart values so the router gets its runner URL",
        )
    if r.status == "ready":
        return true(MODEL_LOADED, "Loaded", f"the router serves {o.model} version {r.version}")
    why = r.reason or "no reason given"
    if r.status == "loading":
        return false(MODEL_LOADED, "Loading", f"the router reports {o.model} loading: {why}")
    state = r.status or "unavailable"
    return false(MODEL_LOADED, "RouterReportsUnavailable", f"the router reports {o.model} {state}: {why}")


def _not_current(o: Observed, generation: int) -> tuple[Condition, Condition] | None:
    """(Ready, Progressing) while the objects do not reflect the current spec yet."""
    d = o.deployment
    if o.spec_error:
        return (
            false(READY, "InvalidSpec", o.spec_error),
            false(PROGRESSING, "InvalidSpec", "nothing is applied until the spec is fixed"),
        )
    if d is None:
        why = o.apply_error or "the runner Deployment does not exist yet"
        return false(READY, "DeploymentMissing", why), true(PROGRESSING, "Creating", why)
    if o.apply_error:
        return false(READY, "ApplyFailed", o.apply_error), false(PROGRESSING, "ApplyFailed", o.apply_error)
    applied = ((d.get("metadata") or {}).get("labels") or {}).get(GENERATION_ANNOTATION)
    if applied != str(generation):
        msg = f"generation {generation} is not applied yet (the runner objects are at {applied or 'none'})"
        return false(READY, "GenerationLag", msg), true(PROGRESSING, "SpecNotApplied", msg)
    seen = int((d.get("status") or {}).get("observedGeneration") or 0)
    current = int(d["metadata"].get("generation") or 0)
    if seen < current:
        msg = f"the Deployment controller has not observed Deployment generation {current} yet (at {seen})"
        return false(READY, "GenerationLag", msg), true(PROGRESSING, "DeploymentNotObserved", msg)
    return None


def compute_status(o: Observed, now: str) -> dict[str, Any]:
    """The WineModel's ``status`` (previous conditions keep their transition times)."""
    wm = o.wine_model
    generation = int(wm["metadata"].get("generation") or 0)
    spec = wm.get("spec") or {}
    previous = (wm.get("status") or {}).get("conditions") or []
    d = o.deployment or {}
    dstatus = d.get("status") or {}
    desired = int((d.get("spec") or {}).get("replicas", 1) or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    ready = int(dstatus.get("readyReplicas") or 0)
    total = int(dstatus.get("replicas") or 0)
    counts = f"{updated} of {desired} replicas updated, {ready} ready"
    pod_problem = _pod_problem(o.pods)
    loaded = _loaded(o, pod_problem)
    version = o.router.version if o.router is not None and o.router.listed else None

    lag = _not_current(o, generation)
    if lag is not None:
        ready_c, progressing = lag
    else:
        rolling = updated < desired or ready < desired or total > updated
        if any(c.get("reason") == "ProgressDeadlineExceeded" for c in dstatus.get("conditions") or []):
            progressing = false(PROGRESSING, "ProgressDeadlineExceeded", f"the rollout stalled: {counts}")
        elif rolling:
            progressing = true(PROGRESSING, "RollingUpdate", counts)
        else:
            progressing = false(PROGRESSING, "Complete", f"{desired} replicas updated and ready")
        if pod_problem is not None:
            ready_c = false(READY, pod_problem[0], pod_problem[1])
        elif rolling:
            ready_c = false(READY, "ReplicasNotReady", counts)
        elif loaded.status != "True":
            ready_c = false(READY, loaded.reason, loaded.message)
        elif spec.get("version") and version != spec["version"]:
            ready_c = false(
                READY,
                "VersionNotServed",
                f"spec.version is {spec['version']} but the router serves {o.model} version "
                f"{version}: the runner image or modelUri holds another version",
            )
        else:
            ready_c = true(
                READY, "Serving", f"{ready}/{desired} replicas ready; the router serves version {version}"
            )
    conditions = [ready_c, loaded, progressing]
    rollout = o.rollout or rollout_condition(spec)
    if rollout is not None:
        conditions.append(rollout)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.as_dict(now, generation, previous) for c in conditions],
        "replicas": total,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "url": o.service_url,
    }
    if version:
        status["version"] = version
        status["servedVersions"] = list(o.router.versions if o.router and o.router.versions else [version])
    if o.rollout_status is not None:
        status["rollout"] = o.rollout_status
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """One condition of a status by type (KeyError when absent)."""
    for c in status.get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    raise KeyError(type_)
