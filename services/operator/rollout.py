"""Candidate versions and rollouts (issue 16): validated, then driven through the router.

The WineModel spec carries ``candidate`` (a second version: image or modelUri + modelSha256,
and its version string) and ``rollout`` (steps such as ``[shadow, 10, 50, 100]``, gate
thresholds and ``auto``). The router serves the candidate (its ``candidates`` setting) and runs
the rollout and its gate (``/v1/rollouts``, docs/rollouts.md). At every pass this operator:

* validates both (:func:`validate_rollout`) and reports a problem naming the field;
* reads ``GET /v1/rollouts``: a router that serves no candidate of the model gets nothing, and
  the ``Rollout`` condition says so (``CandidateNotServed``). The reconcile deploys the
  candidate runner (``<runner>-candidate``, :func:`~services.operator.reconcile.desired_objects`)
  and the chart gives its Service to the router, so the reason clears once the router serves
  it; the operator cannot add a candidate to a running router by itself;
* sends ``PUT /v1/rollouts`` only when the router has no rollout of the model or one that
  differs from the spec (:func:`in_force`): a rollout in progress, promoted or rolled back is
  never restarted by a later pass; a rollout the router refuses is ``RouterRefused`` with the
  router's 422 (naming the field), and the router keeps the rollout it had;
* copies the router's step, phase and the gate's last decision into ``status.rollout`` and the
  ``Rollout`` condition (:func:`rollout_outcome`). The gate decides; with ``auto: false`` an
  admin acts (``POST /v1/rollouts/promote`` ...), the operator never does.

The pure part decides; :func:`drive_rollout` is the thin HTTP edge (through
:class:`~services.operator.traffic.RouterAdmin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.operator.conditions import Condition, false, true, unknown

if TYPE_CHECKING:
    from services.operator.traffic import RouterAdmin

ROLLOUT = "Rollout"

_GATE_RANGES = {
    "maxErrorRate": (0.0, 1.0),
    "maxP99LatencyRatio": (1.0, None),
    "maxMeanAbsScoreDifference": (0.0, None),
    "minGradeAgreement": (0.0, 1.0),
    "minWinesCompared": (1, None),
}


def _candidate_problems(candidate: dict[str, Any]) -> list[str]:
    problems = []
    if not (candidate.get("image") or candidate.get("modelUri")):
        problems.append("spec.candidate: needs an image or a modelUri")
    if candidate.get("modelSha256") and not candidate.get("modelUri"):
        problems.append("spec.candidate.modelSha256: is set without spec.candidate.modelUri")
    if candidate.get("modelUri") and not candidate.get("modelSha256"):
        problems.append("spec.candidate.modelSha256: is required with spec.candidate.modelUri")
    return problems


def _step_problems(steps: list[Any]) -> list[str]:
    problems = []
    last = 0
    for i, step in enumerate(steps):
        where = f"spec.rollout.steps[{i}]"
        if step == "shadow":
            if i != 0:
                problems.append(f"{where}: shadow can only be the first step")
        elif isinstance(step, int) and not isinstance(step, bool) and 1 <= step <= 100:
            if step <= last:
                problems.append(f"{where}: {step} must be above the step before ({last})")
            last = step
        else:
            problems.append(f"{where}: must be 'shadow' or a percentage 1..100, got {step!r}")
    if steps and last != 100:
        problems.append("spec.rollout.steps: must end at 100 (the candidate takes all traffic)")
    return problems


def _gate_problems(gate: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in gate.items():
        if key not in _GATE_RANGES:
            problems.append(f"spec.rollout.gate.{key}: unknown threshold")
            continue
        low, high = _GATE_RANGES[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            problems.append(f"spec.rollout.gate.{key}: must be a number {bound}, got {value!r}")
    return problems


def validate_rollout(spec: dict[str, Any]) -> list[str]:
    """Problems of ``spec.candidate`` and ``spec.rollout``, each naming its field (empty: valid)."""
    candidate = spec.get("candidate")
    rollout = spec.get("rollout")
    problems = _candidate_problems(candidate) if candidate is not None else []
    if rollout is None:
        return problems
    if candidate is None:
        problems.append("spec.rollout: needs spec.candidate (the version to roll out)")
    return problems + _step_problems(rollout.get("steps") or []) + _gate_problems(rollout.get("gate") or {})


def rollout_condition(spec: dict[str, Any]) -> Condition | None:
    """The Rollout condition before the router is asked (else None: no candidate, no rollout):
    the spec's problems, or Unknown until a pass has driven it through the router."""
    if spec.get("candidate") is None and spec.get("rollout") is None:
        return None
    problems = validate_rollout(spec)
    if problems:
        return false(ROLLOUT, "InvalidRollout", "; ".join(problems))
    return unknown(ROLLOUT, "Pending", "spec.rollout is valid; not yet applied through the router")


def rollout_request(model: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``PUT /v1/rollouts`` body for a WineModel's spec (same field names as the router's)."""
    rollout = spec.get("rollout") or {}
    body: dict[str, Any] = {"model": model, "auto": bool(rollout.get("auto", False))}
    version = (spec.get("candidate") or {}).get("version")
    if version:
        body["candidateVersion"] = version
    if rollout.get("steps"):
        body["steps"] = list(rollout["steps"])
    if rollout.get("gate"):
        body["gate"] = dict(rollout["gate"])
    return body


def in_force(request: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    """Whether the router's rollout ``entry`` (from ``GET /v1/rollouts``) is the one ``request``
    asks for: same candidate version, steps, auto and thresholds (thresholds the spec leaves out
    are the router's defaults). Running, promoted or rolled back: a pass never restarts it."""
    if entry is None:
        return False
    if "candidateVersion" in request and entry.get("candidateVersion") != request["candidateVersion"]:
        return False
    if "steps" in request and list(entry.get("steps") or []) != request["steps"]:
        return False
    if bool(entry.get("auto")) != request["auto"]:
        return False
    gate = entry.get("gate") or {}
    return all(gate.get(k) == v for k, v in (request.get("gate") or {}).items())


_PHASE_REASONS = {"running": "Running", "promoted": "Promoted", "rolled_back": "RolledBack"}


def rollout_outcome(entry: dict[str, Any]) -> tuple[Condition, dict[str, Any]]:
    """The Rollout condition and ``status.rollout`` from the router's rollout entry.

    True while the rollout runs or once the candidate is promoted; False once rolled back (the
    gate's reason, with its figures, is in the message)."""
    phase = str(entry.get("phase") or "running")
    step = entry.get("step")
    percent = entry.get("candidatePercent")
    decision = entry.get("decision") or {}
    action = decision.get("action")
    where = "shadow (the candidate scores a copy)" if step == "shadow" else f"step {step}"
    message = (
        f"{phase.replace('_', ' ')} at {where}, {percent} % of wines to candidate "
        f"{entry.get('candidateVersion')} (stable {entry.get('stableVersion')})"
    )
    if action:
        message += f"; the gate's last decision: {action}: {decision.get('reason', '')}"
    reason = _PHASE_REASONS.get(phase, "Running")
    condition = (false if phase == "rolled_back" else true)(ROLLOUT, reason, message)
    status: dict[str, Any] = {
        "step": step,
        "phase": phase,
        "candidateVersion": entry.get("candidateVersion"),
        "stableVersion": entry.get("stableVersion"),
        "candidatePercent": percent,
        "decision": action or "none",
        "message": str(decision.get("reason") or ""),
    }
    figures = decision.get("figures")
    if isinstance(figures, dict):
        status["figures"] = {k: v for k, v in figures.items() if isinstance(v, int | float | str)}
    return condition, status


def drive_rollout(
    router: RouterAdmin, base_url: str, model: str, spec: dict[str, Any]
) -> tuple[Condition | None, dict[str, Any] | None]:
    """Apply a WineModel's rollout through the router when it is not in force; the Rollout
    condition and ``status.rollout`` (None, None: the WineModel asks for no candidate)."""
    before = rollout_condition(spec)
    if before is None or before.reason == "InvalidRollout":
        return before, None
    answer = router.rollouts(base_url)
    if answer is None:
        return unknown(ROLLOUT, "RouterUnreachable", f"{base_url}/v1/rollouts could not be read"), None
    if model not in (answer.get("candidates") or []):
        return false(
            ROLLOUT,
            "CandidateNotServed",
            f"the router serves no candidate version of {model}: the router's candidates "
            "setting must name the candidate runner's Service (the winemeup chart sets it from "
            "the model's candidate) or a version in its model store",
        ), None
    if spec.get("rollout") is None:
        return false(ROLLOUT, "NoRollout", "a candidate is served but spec.rollout asks for no rollout"), None
    request = rollout_request(model, spec)
    entry = (answer.get("rollouts") or {}).get(model)
    if not in_force(request, entry):
        status_code, body = router.put_rollout(base_url, request)
        if status_code is None:
            return unknown(ROLLOUT, "RouterUnreachable", f"PUT {base_url}/v1/rollouts: {body}"), None
        if status_code == 422:
            return false(
                ROLLOUT, "RouterRefused", f"the router refused the rollout (422): {body[:1000]}"
            ), None
        if not 200 <= status_code < 300:
            return false(ROLLOUT, f"RouterAnswered{status_code}", body[:1000]), None
        entry = ((router.rollouts(base_url) or {}).get("rollouts") or {}).get(model)
    if not isinstance(entry, dict):
        return unknown(ROLLOUT, "Applied", "PUT /v1/rollouts answered 2xx; not read back yet"), None
    return rollout_outcome(entry)
