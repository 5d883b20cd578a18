"""Rollouts in the UI's Models tab: a candidate version beside the stable one, its step and gate.

Talks to the router's REST API only (``GET /v1/rollouts``). The table builders are pure.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from pydantic import BaseModel, Field

from ui.client import RouterCallError, RouterClient

EXPLANATION = (
    "A rollout moves a model's traffic from its stable version to a candidate (a retrain) in "
    "steps: **shadow** (the candidate scores a copy of the wines, the stable version answers), "
    "then a share of the wines (each wine always gets the same version), up to 100 %. At each "
    "step a gate compares both versions on the same wines: score difference, grade agreement, "
    "errors and latency. It **advances**, **promotes** the candidate after the last step, "
    "**rolls back** (every wine to the stable version) when a threshold is missed, or **holds** "
    "while too few wines were compared. Admins start rollouts with PUT /v1/rollouts."
)


class Rollouts(BaseModel):
    """The answer of ``GET /v1/rollouts`` (the fields this view reads)."""

    rollouts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    candidates: list[str] = Field(default_factory=list)
    shared: bool = False


def _percent(value: Any) -> float | None:
    return round(100 * value, 1) if isinstance(value, int | float) else None


def _round(value: Any, digits: int = 3) -> float | None:
    return round(value, digits) if isinstance(value, int | float) else None


def rollout_table(answer: Rollouts) -> pd.DataFrame:
    """One row per rollout: versions, step, phase, the gate's decision and its figures."""
    rows = []
    for model, r in answer.rollouts.items():
        decision = r.get("decision") or {}
        figures = r.get("figures") or {}
        rows.append(
            {
                "model": model,
                "stable": r.get("stableVersion"),
                "candidate": r.get("candidateVersion"),
                "step": str(r.get("step")),
                "phase": str(r.get("phase", "")).replace("_", " "),
                "candidate %": r.get("candidatePercent"),
                "decision": decision.get("action"),
                "why": decision.get("reason"),
                "wines compared": figures.get("winesCompared"),
                "mean |difference|": _round(figures.get("meanAbsScoreDifference")),
                "grade agreement %": _percent(figures.get("gradeAgreement")),
                "candidate errors %": _percent(figures.get("candidateErrorRate")),
                "p99 ratio": _round(figures.get("p99LatencyRatio"), 2),
            }
        )
    columns = ["model", "stable", "candidate", "step", "phase", "candidate %", "decision", "why",
               "wines compared", "mean |difference|", "grade agreement %", "candidate errors %",
               "p99 ratio"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def history_table(rollout: dict[str, Any]) -> pd.DataFrame:
    """The steps a rollout left: the action that ended each and the figures then."""
    rows = []
    for left in rollout.get("history") or []:
        figures = left.get("figures") or {}
        rows.append(
            {
                "step": str(left.get("step")),
                "action": left.get("action"),
                "why": left.get("reason"),
                "wines compared": figures.get("winesCompared"),
                "mean |difference|": _round(figures.get("meanAbsScoreDifference")),
                "grade agreement %": _percent(figures.get("gradeAgreement")),
            }
        )
    return pd.DataFrame(
        rows, columns=["step", "action", "why", "wines compared", "mean |difference|", "grade agreement %"]
    )


def render_rollouts(client: RouterClient) -> None:
    """The rollouts of candidate versions, their gate's figures and the steps left."""
    try:
        answer = client.fetch(Rollouts, "GET", "/v1/rollouts")
    except RouterCallError as e:
        st.info(f"Rollouts are unavailable: {getattr(e, 'user_message', e)}")
        return
    st.subheader("Rollouts")
    st.caption(EXPLANATION)
    table = rollout_table(answer)
    if table.empty:
        served = ", ".join(answer.candidates)
        st.caption(f"No rollout. Models with a candidate version: {served or 'none'}.")
        return
    st.dataframe(table, hide_index=True, width="stretch")
    for model, rollout in answer.rollouts.items():
        history = history_table(rollout)
        if not history.empty:
            st.caption(f"{model}: steps left")
            st.dataframe(history, hide_index=True, width="stretch")
