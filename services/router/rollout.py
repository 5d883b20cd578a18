"""Progressive delivery of a model version: pure policy, figures and the gate's decision.

A model can be served in two versions at once: its **stable** version and a **candidate**.
A :class:`RolloutPolicy` moves traffic from one to the other in ``steps``:

* ``"shadow"``: the stable version answers every wine; the candidate scores the same wines
  after the answer (a shadowed pair);
* a percentage ``p``: the candidate answers ``p`` % of the wines, chosen per wine by a hash of
  its row (the split's stickiness: a wine on the candidate at 10 % stays on it at 50 %); the
  stable version scores the candidate's wines after the answer, so pairs keep coming;
* the last step is 100: the candidate answers everything; passing it **promotes** the
  candidate (it becomes the stable version, the old one is retired).

At each step the :class:`Gate` compares the two versions on live traffic
(:class:`StepFigures`: error rate, p99 latency, mean absolute score difference, grade
agreement, wines compared) and :func:`decide` answers ``hold``, ``advance``, ``promote`` or
``rollback`` with the figures behind it. ``rollback`` sends every wine to the stable version.

Field names follow the ``WineModel`` custom resource (``spec.rollout``): ``steps``, ``auto``,
``gate.maxErrorRate``, ``gate.maxP99LatencyRatio``, ``gate.maxMeanAbsScoreDifference``,
``gate.minGradeAgreement``, ``gate.minWinesCompared``. Every problem raises
:class:`~services.router.policies.PolicyError` naming the field. No HTTP, Redis or models here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np

from services.router.policies import BUCKETS, PolicyError, row_buckets
from services.router.rollout_figures import StepFigures

SHADOW = "shadow"
Step = int | str
Action = Literal["hold", "advance", "promote", "rollback"]
Phase = Literal["running", "promoted", "rolled_back"]
PHASES: tuple[Phase, ...] = ("running", "promoted", "rolled_back")
DEFAULT_STEPS: tuple[Step, ...] = (SHADOW, 10, 50, 100)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Gate:
    """Thresholds the candidate must meet against the stable version at every step."""

    max_error_rate: float = 0.01
    """Failed candidate calls over candidate calls, at most."""
    max_p99_latency_ratio: float = 3.0
    """Candidate p99 over stable p99, at most (>= 1)."""
    max_mean_abs_score_difference: float = 0.3
    """Mean |candidate - stable| over the wines both scored, at most (quality points)."""
    min_grade_agreement: float = 0.7
    """Share of compared wines given the same rounded grade by both, at least."""
    min_wines_compared: int = 200
    """Wines both versions scored (and candidate calls) before the gate decides anything."""

    FIELDS: ClassVar[dict[str, tuple[str, float, float | None]]] = {
        "maxErrorRate": ("max_error_rate", 0.0, 1.0),
        "maxP99LatencyRatio": ("max_p99_latency_ratio", 1.0, None),
        "maxMeanAbsScoreDifference": ("max_mean_abs_score_difference", 0.0, None),
        "minGradeAgreement": ("min_grade_agreement", 0.0, 1.0),
        "minWinesCompared": ("min_wines_compared", 1, None),
    }

    @classmethod
    def from_dict(cls, doc: Any, base: Gate | None = None) -> Gate:
        """Thresholds given by their API names over ``base`` (the defaults); PolicyError names the field."""
        if doc is None:
            return base or cls()
        if not isinstance(doc, Mapping):
            raise PolicyError("gate", 'must be an object of thresholds, e.g. {"maxErrorRate": 0.01}')
        values: dict[str, Any] = {}
        for key, value in doc.items():
            spec = cls.FIELDS.get(key)
            if spec is None:
                raise PolicyError(f"gate.{key}", f"unknown threshold; known: {', '.join(cls.FIELDS)}")
            attr, low, high = spec
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            if attr == "min_wines_compared":
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise PolicyError(f"gate.{key}", f"must be an integer {bound}, got {value!r}")
            elif not _number(value) or value < low or (high is not None and value > high):
                raise PolicyError(f"gate.{key}", f"must be a number {bound}, got {value!r}")
            values[attr] = value
        return replace(base or cls(), **values)

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, (attr, _, _) in self.FIELDS.items()}


def parse_steps(doc: Any) -> tuple[Step, ...]:
    """``["shadow"?, p1, p2, ..., 100]`` with increasing percentages; PolicyError names the step."""
    if doc is None:
        return DEFAULT_STEPS
    if not isinstance(doc, list | tuple) or not doc:
        raise PolicyError("steps", 'must be a non-empty list such as ["shadow", 10, 50, 100]')
    if len(doc) > 10:
        raise PolicyError("steps", f"at most 10 steps, got {len(doc)}")
    last = 0
    for i, step in enumerate(doc):
        where = f"steps[{i}]"
        if step == SHADOW:
            if i != 0:
                raise PolicyError(where, "'shadow' can only be the first step")
            continue
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 100:
            raise PolicyError(where, f"must be 'shadow' or a percentage 1..100, got {step!r}")
        if step <= last:
            raise PolicyError(where, f"steps must increase: {step} is not above {last}")
        last = step
    if last != 100:
        raise PolicyError("steps", "the last step must be 100 (the candidate answers every wine)")
    return tuple(doc)


@dataclass(frozen=True)
class RolloutPolicy:
    """How one model's candidate version replaces its stable version."""

    model: str
    candidate: str
    """The candidate's version string."""
    stable: str
    """The stable version the rollout started from."""
    steps: tuple[Step, ...] = DEFAULT_STEPS
    gate: Gate = field(default_factory=Gate)
    auto: bool = False
    """Act on the gate's decision without an admin."""
    min_step_seconds: float = 0.0
    """Time spent at a step before the gate may advance or promote (a roll back never waits)."""

    KEYS: ClassVar[tuple[str, ...]] = ("model", "candidateVersion", "steps", "auto", "gate", "minStepSeconds")

    @classmethod
    def from_dict(
        cls, doc: Any, served: Mapping[str, tuple[str | None, str | None]], gate: Gate | None = None
    ) -> RolloutPolicy:
        """A policy from the admin API's JSON; ``served`` maps each model to (stable, candidate)
        versions served now (None: unknown yet). PolicyError names the field."""
        if not isinstance(doc, Mapping):
            raise PolicyError("body", 'must be an object {"model", "steps"?, "gate"?, "auto"?}')
        extra = sorted(set(doc) - set(cls.KEYS))
        if extra:
            raise PolicyError(extra[0], f"unknown field; expected {', '.join(cls.KEYS)}")
        model = doc.get("model")
        if not isinstance(model, str) or model not in served:
            raise PolicyError("model", f"unknown model {model!r}; known: {', '.join(sorted(served))}")
        stable, candidate = served[model]
        if candidate is None:
            raise PolicyError(
                "model", f"model {model!r} has no candidate version served (candidates setting)"
            )
        asked = doc.get("candidateVersion")
        if asked is not None and asked != candidate:
            raise PolicyError(
                "candidateVersion",
                f"version {asked!r} of {model!r} is not served; the candidate is {candidate!r}",
            )
        auto = doc.get("auto", False)
        if not isinstance(auto, bool):
            raise PolicyError("auto", f"must be true or false, got {auto!r}")
        wait = doc.get("minStepSeconds", 0.0)
        if not _number(wait) or not 0 <= wait <= 86_400:
            raise PolicyError("minStepSeconds", f"must be a number of seconds 0..86400, got {wait!r}")
        return cls(
            model,
            candidate,
            stable or "",
            parse_steps(doc.get("steps")),
            Gate.from_dict(doc.get("gate"), gate),
            auto,
            float(wait),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "candidateVersion": self.candidate,
            "stableVersion": self.stable,
            "steps": list(self.steps),
            "auto": self.auto,
            "gate": self.gate.as_dict(),
            "minStepSeconds": self.min_step_seconds,
        }

    @classmethod
    def from_record(cls, doc: Mapping[str, Any]) -> RolloutPolicy:
        """A policy written by :meth:`as_dict` (a shared record); PolicyError when malformed."""
        model, candidate = doc.get("model"), doc.get("candidateVersion")
        if not isinstance(model, str) or not isinstance(candidate, str):
            raise PolicyError("rollout", "record without model or candidateVersion")
        return cls(
            model,
            candidate,
            str(doc.get("stableVersion") or ""),
            parse_steps(doc.get("steps")),
            Gate.from_dict(doc.get("gate")),
            bool(doc.get("auto", False)),
            float(doc.get("minStepSeconds") or 0.0),
        )


# ---- state and decisions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One threshold of the gate against its figure."""

    name: str
    value: float | None
    threshold: float
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "ok": self.ok}


@dataclass(frozen=True)
class Decision:
    """The gate's answer at one step, and the figures behind it."""

    action: Action
    reason: str
    step: Step
    figures: dict[str, Any]
    checks: tuple[Check, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "step": self.step,
            "figures": self.figures,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class RolloutState:
    """Where one rollout stands; every replica adopts the one in the shared record."""

    policy: RolloutPolicy
    step_index: int = 0
    phase: Phase = "running"
    epoch: int = 0
    """Bumped at every change of step or phase: figures are gathered per epoch."""
    since: float = 0.0
    """Wall-clock time the current step began."""
    history: tuple[dict[str, Any], ...] = ()
    """Each step left: the step, the action that ended it and the figures then."""

    @property
    def step(self) -> Step:
        if self.phase == "promoted":
            return 100
        if self.phase == "rolled_back":
            return 0
        return self.policy.steps[self.step_index]

    @property
    def candidate_percent(self) -> float:
        """Share of wines the candidate answers, in percent."""
        step = self.step
        return 0.0 if step == SHADOW else float(step)

    @property
    def comparing(self) -> bool:
        """True while pairs are gathered (the rollout is running)."""
        return self.phase == "running"

    def to_candidate(self, rows: np.ndarray) -> np.ndarray:
        """Which rows the candidate answers (a boolean mask, sticky per wine and monotonic in the step)."""
        percent = self.candidate_percent
        if percent <= 0:
            return np.zeros(rows.shape[0], dtype=bool)
        if percent >= 100:
            return np.ones(rows.shape[0], dtype=bool)
        return row_buckets(rows, f"rollout:{self.policy.model}") < round(percent * BUCKETS / 100)

    def after(self, action: Action, now: float, decision: Decision | None = None) -> RolloutState:
        """The state once ``action`` is taken (``hold``: unchanged)."""
        if action == "hold" or self.phase != "running":
            return self
        left = {
            "step": self.step,
            "action": action,
            "figures": decision.figures if decision is not None else None,
            "reason": decision.reason if decision is not None else "admin request",
        }
        history = (*self.history, left)
        if action == "advance" and self.step_index + 1 < len(self.policy.steps):
            return replace(
                self, step_index=self.step_index + 1, epoch=self.epoch + 1, since=now, history=history
            )
        if action in ("advance", "promote"):
            return replace(self, phase="promoted", epoch=self.epoch + 1, since=now, history=history)
        return replace(self, phase="rolled_back", epoch=self.epoch + 1, since=now, history=history)

    def to_record(self) -> dict[str, Any]:
        return {
            "policy": self.policy.as_dict(),
            "step_index": self.step_index,
            "phase": self.phase,
            "epoch": self.epoch,
            "since": self.since,
            "history": list(self.history),
        }

    @classmethod
    def from_record(cls, doc: Any) -> RolloutState:
        """A state written by :meth:`to_record`; PolicyError when malformed."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("policy"), Mapping):
            raise PolicyError("rollout", "record without a policy")
        policy = RolloutPolicy.from_record(doc["policy"])
        index, phase = doc.get("step_index", 0), doc.get("phase", "running")
        if not isinstance(index, int) or not 0 <= index < len(policy.steps) or phase not in PHASES:
            raise PolicyError("rollout", f"record with step {index!r} / phase {phase!r}")
        history = doc.get("history") or []
        return cls(
            policy,
            index,
            phase,
            int(doc.get("epoch") or 0),
            float(doc.get("since") or 0.0),
            tuple(dict(h) for h in history if isinstance(h, Mapping)),
        )


def decide(
    state: RolloutState,
    figures: StepFigures,
    candidate_ready: bool,
    candidate_reason: str = "",
    now: float = 0.0,
) -> Decision:
    """The gate's decision at the current step from the figures of this step (all replicas')."""
    summary = figures.summary()
    step = state.step
    if state.phase != "running":
        return Decision("hold", f"the rollout is over ({state.phase.replace('_', ' ')})", step, summary)
    if not candidate_ready:
        return Decision(
            "hold",
            f"the candidate cannot answer: {candidate_reason or 'not ready'}; the stable version serves",
            step,
            summary,
        )
    gate = state.policy.gate
    checks = (
        Check("errorRate", figures.candidate.error_rate, gate.max_error_rate,
              (figures.candidate.error_rate or 0.0) <= gate.max_error_rate),
        Check("p99LatencyRatio", figures.p99_ratio, gate.max_p99_latency_ratio,
              figures.p99_ratio is None or figures.p99_ratio <= gate.max_p99_latency_ratio),
        Check("meanAbsScoreDifference", figures.mean_abs_difference, gate.max_mean_abs_score_difference,
              (figures.mean_abs_difference or 0.0) <= gate.max_mean_abs_score_difference),
        Check("gradeAgreement", figures.grade_agreement, gate.min_grade_agreement,
              figures.grade_agreement is None or figures.grade_agreement >= gate.min_grade_agreement),
    )  # fmt: skip
    # A failing candidate is judged on its calls alone: it may never complete a pair.
    enough_calls = figures.candidate.calls >= gate.min_wines_compared
    if enough_calls and not checks[0].ok:
        return Decision("rollback", "candidate error rate above maxErrorRate", step, summary, checks)
    if figures.compared < gate.min_wines_compared:
        return Decision(
            "hold",
            f"{figures.compared} of {gate.min_wines_compared} wines compared (minWinesCompared)",
            step,
            summary,
            checks,
        )
    failed = [c for c in checks if not c.ok]
    if failed:
        names = ", ".join(f"{c.name} {c.value:.4g} vs {c.threshold:g}" for c in failed if c.value is not None)
        return Decision("rollback", f"the candidate fails the gate: {names}", step, summary, checks)
    waited = now - state.since
    if waited < state.policy.min_step_seconds:
        return Decision(
            "hold",
            f"at this step for {waited:.0f} of {state.policy.min_step_seconds:g} s (minStepSeconds)",
            step,
            summary,
            checks,
        )
    last = state.step_index + 1 >= len(state.policy.steps)
    if last:
        return Decision("promote", "every threshold met at the last step", step, summary, checks)
    return Decision("advance", "every threshold met", step, summary, checks)
