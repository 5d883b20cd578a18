"""The ``/v1/rollouts`` admin API: a codec over :class:`~services.router.rollout_serving.Rollouts`.

* ``GET /v1/rollouts``: every rollout with its step, phase, the gate's last decision and the
  figures behind it (all replicas), and the versions served.
* ``PUT /v1/rollouts``: start (or replace) one model's rollout at its first step.
* ``DELETE /v1/rollouts``: remove one model's rollout (every wine to the stable version).
* ``POST /v1/rollouts/promote``, ``/rollback``, ``/advance``: an admin's decision.

A bad request is a 422 naming the field; the rollout in force is then kept.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from services.router.http import Request, Response, Route
from services.router.policies import PolicyError
from services.router.rollout import Action
from services.router.rollout_serving import Rollouts
from services.router.validation import orjson_object
from winemeup.errors import ValidationFailed
from winemeup.schema import FieldError

_STEPS = (
    "'shadow' (the candidate scores a copy of the traffic) first if at all, then increasing "
    "percentages ending at 100."
)
_GATE_EXAMPLE = {
    "maxErrorRate": 0.01,
    "maxP99LatencyRatio": 3.0,
    "maxMeanAbsScoreDifference": 0.3,
    "minGradeAgreement": 0.7,
    "minWinesCompared": 200,
}


class RolloutGate(BaseModel):
    """Thresholds the candidate must meet against the stable version at every step."""

    model_config = ConfigDict(extra="forbid")

    maxErrorRate: float | None = Field(None, ge=0, le=1, description="Failed candidate calls / calls.")
    maxP99LatencyRatio: float | None = Field(None, ge=1, description="Candidate p99 / stable p99.")
    maxMeanAbsScoreDifference: float | None = Field(
        None, ge=0, description="Mean |candidate - stable| score over the wines both scored."
    )
    minGradeAgreement: float | None = Field(
        None, ge=0, le=1, description="Share of compared wines given the same grade by both."
    )
    minWinesCompared: int | None = Field(
        None, ge=1, description="Wines both scored (and candidate calls) before the gate decides."
    )


class RolloutRequest(BaseModel):
    """A rollout of one model's candidate version."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A served model that has a candidate version.", examples=["lightgbm"])
    candidateVersion: str | None = Field(None, description="Must be the candidate's version when given.")
    steps: list[int | Literal["shadow"]] | None = Field(
        None, description=_STEPS, examples=[["shadow", 10, 50, 100]]
    )
    auto: bool = Field(False, description="Act on the gate's decision without an admin.")
    gate: RolloutGate | None = Field(None, examples=[_GATE_EXAMPLE])
    minStepSeconds: float | None = Field(
        None, ge=0, le=86_400, description="Time at a step before the gate may advance or promote."
    )


class RolloutModelRequest(BaseModel):
    """The model whose rollout an admin removes, promotes, rolls back or advances."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(examples=["lightgbm"])


class RolloutList(BaseModel):
    """Every rollout: policy, step, phase, the gate's last decision and figures, the versions served."""

    rollouts: dict[str, dict[str, Any]]
    candidates: list[str] = Field(description="Models served with a candidate version.")
    shared: bool = Field(description="True when other replicas follow these rollouts (through Redis).")


_ERRORS = {"422": "Unknown model, no candidate, a version not served, bad steps or thresholds"}


def describe(rollouts: Rollouts) -> dict[str, Any]:
    """Every rollout: policy, step, phase, the last decision and its figures, the versions served."""
    out: dict[str, Any] = {}
    for name, live in rollouts.live.items():
        state = live.state
        out[name] = {
            **state.policy.as_dict(),
            "step": state.step,
            "stepIndex": state.step_index,
            "phase": state.phase,
            "candidatePercent": state.candidate_percent,
            "epoch": state.epoch,
            "since": state.since,
            "decision": live.decision.as_dict() if live.decision is not None else None,
            "figures": live.merged.summary(),
            "replicaFigures": live.figures.summary(),
            "comparisonsShed": live.shed,
            "history": list(state.history),
            "versions": rollouts.versions(name),
        }
    return {"rollouts": out, "candidates": sorted(rollouts.candidates), "shared": rollouts.records.shared}


def _field_error(e: PolicyError) -> ValidationFailed:
    return ValidationFailed([FieldError(e.field, e.problem)])


class RolloutRoutes:
    """The ``/v1/rollouts`` route handlers."""

    def __init__(self, rollouts: Rollouts):
        self.rollouts = rollouts

    def routes(self) -> list[Route]:
        """Every rollout route, as the application serves and documents it."""
        routes = [
            Route("GET", "/v1/rollouts", self.list, "user", None, RolloutList, "models"),
            Route("PUT", "/v1/rollouts", self.put, "admin", RolloutRequest, RolloutList, "models", _ERRORS),
            Route("DELETE", "/v1/rollouts", self.delete, "admin", RolloutModelRequest, RolloutList, "models",
                  _ERRORS),
        ]  # fmt: skip
        for action in ("promote", "rollback", "advance"):
            routes.append(
                Route("POST", f"/v1/rollouts/{action}", self._action(action), "admin", RolloutModelRequest,
                      RolloutList, "models", _ERRORS)
            )  # fmt: skip
        return routes

    def _answer(self) -> Response:
        return Response(200, orjson.dumps(describe(self.rollouts)))

    async def list(self, request: Request) -> Response:
        """Every rollout with its step, the gate's last decision and the figures of every replica."""
        return self._answer()

    async def put(self, request: Request) -> Response:
        """Start (or replace) a model's rollout at its first step (admin key only).

        Body: `{"model": "lightgbm", "steps": ["shadow", 10, 50, 100], "auto": true, "gate":
        {"maxMeanAbsScoreDifference": 0.25, ...}}`. The candidate answers its step's share of
        wines, chosen per wine (sticky); the other version scores the same wines after the
        answer and the gate compares them. A bad rollout is a 422 naming the field, and the
        rollout in force is kept. With Redis every replica follows it.
        """
        doc = orjson_object(
            await request.json_body(), RolloutRequest_KEYS, "'model' and the rollout's fields"
        )
        try:
            await self.rollouts.put(doc)
        except PolicyError as e:
            raise _field_error(e) from e
        return self._answer()

    async def _model(self, request: Request) -> str:
        doc = orjson_object(await request.json_body(), ("model",), "'model'")
        name = doc.get("model")
        if not isinstance(name, str):
            raise ValidationFailed([FieldError("model", "must be the name of a model with a rollout")])
        return name

    async def delete(self, request: Request) -> Response:
        """Remove a model's rollout (admin key only): every wine goes to the stable version."""
        name = await self._model(request)
        try:
            await self.rollouts.delete(name)
        except PolicyError as e:
            raise _field_error(e) from e
        return self._answer()

    def _action(self, action: Action) -> Any:
        async def handler(request: Request) -> Response:
            name = await self._model(request)
            try:
                await self.rollouts.act(name, action)
            except PolicyError as e:
                raise _field_error(e) from e
            return self._answer()

        handler.__doc__ = {
            "promote": "Promote the candidate now (admin key only): it answers every wine, the old stable "
            "version is retired.",
            "rollback": "Roll the candidate back now (admin key only): every wine goes to the stable "
            "version.",
            "advance": "Move the rollout to its next step now (admin key only; promotes after the last).",
        }[action]
        return handler


RolloutRequest_KEYS = tuple(RolloutRequest.model_fields)
