"""Candidate versions and rollouts (issue 16): validated here, NOT driven yet.

The WineModel spec already carries ``candidate`` (a second version: image or modelUri +
modelSha256, and its version string) and ``rollout`` (steps such as ``[shadow, 10, 50, 100]``,
gate thresholds and ``auto``), so the schema will not need breaking later. The router has no
candidate versions and no rollout API yet, so this operator:

* validates both (:func:`validate_rollout`) and reports a problem naming the field;
* deploys no candidate runner and moves no traffic;
* says so in the ``Rollout`` condition (:func:`rollout_condition`), status False, reason
  ``NotImplemented``.

The seam where a rollout will be driven is :func:`drive_rollout`: it raises
NotImplementedError, and nothing calls it. When the router serves ``/v1/rollouts``, it will
PUT the step the WineModel asks for and copy the gate's decision into ``status.rollout``.
"""

from __future__ import annotations

from typing import Any

from services.operator.conditions import Condition, false

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
    """The Rollout condition of a WineModel that asks for a candidate or a rollout (else None)."""
    if spec.get("candidate") is None and spec.get("rollout") is None:
        return None
    problems = validate_rollout(spec)
    if problems:
        return false(ROLLOUT, "InvalidRollout", "; ".join(problems))
    return false(
        ROLLOUT,
        "NotImplemented",
        "spec.candidate and spec.rollout are valid but not acted on: this operator version deploys "
        "no candidate and moves no traffic (the router has no rollout API yet)",
    )


def drive_rollout(*_: Any) -> None:
    """The seam where a rollout step will be applied through the router. Not wired."""
    raise NotImplementedError("rollouts need the router's rollout API (issue 16); nothing calls this yet")
