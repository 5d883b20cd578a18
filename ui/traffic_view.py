"""Traffic in the UI's Models tab: ensembles and their members, canary splits, shadow agreement.

Talks to the router's REST API only (``GET /v1/traffic``, ``GET /v1/models``) and reads the
answers with the declared types of :mod:`winemeup.api`. The table builders are pure.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.client import RouterCallError, RouterClient
from winemeup.api import ModelList, TrafficPolicies


def fetch_traffic(client: RouterClient) -> TrafficPolicies:
    """``GET /v1/traffic``: the splits and shadows in force and this replica's figures."""
    return client.fetch(TrafficPolicies, "GET", "/v1/traffic")


def split_table(policies: TrafficPolicies) -> pd.DataFrame:
    """One row per (name, model) of every split: configured percent and the share served here."""
    rows = []
    for name, weights in policies.splits.items():
        served = policies.served_rows.get(name, {})
        total = sum(served.values())
        for model, percent in weights.items():
            rows.append(
                {
                    "name": name,
                    "model": model,
                    "configured %": percent,
                    "served %": round(100 * served.get(model, 0) / total, 1) if total else None,
                    "rows served": served.get(model, 0),
                }
            )
    return pd.DataFrame(rows, columns=["name", "model", "configured %", "served %", "rows served"])


def shadow_table(policies: TrafficPolicies) -> pd.DataFrame:
    """One row per shadow: fraction, rows shadowed, grade agreement, mean difference, shed calls."""
    stats = {(s.model, s.shadow): s for s in policies.shadow_stats}
    rows = []
    for model, shadow in policies.shadows.items():
        s = stats.get((model, shadow.target))
        agreement = s.grade_agreement if s else None
        difference = s.mean_difference if s else None
        rows.append(
            {
                "model": model,
                "shadow": shadow.target,
                "fraction": shadow.fraction,
                "rows shadowed": s.rows if s else 0,
                "grade agreement %": round(100 * agreement, 1) if agreement is not None else None,
                "mean difference": round(difference, 4) if difference is not None else None,
                "shed calls": s.shed_calls if s else 0,
                "failed calls": s.failed_calls if s else 0,
            }
        )
    columns = [
        "model",
        "shadow",
        "fraction",
        "rows shadowed",
        "grade agreement %",
        "mean difference",
        "shed calls",
        "failed calls",
    ]
    return pd.DataFrame(rows, columns=columns)


def ensemble_table(models: ModelList) -> pd.DataFrame:
    """One row per ensemble: its members with their weights, and what happens when one is down."""
    rows = [
        {
            "ensemble": m.name,
            "members": ", ".join(f"{name} × {weight:g}" for name, weight in m.members.items()),
            "member down": m.on_member_down,
            "status": m.status,
            "version": m.version,
        }
        for m in models.models
        if m.members
    ]
    return pd.DataFrame(rows, columns=["ensemble", "members", "member down", "status", "version"])


def render_traffic(client: RouterClient) -> None:
    """Ensembles, canary splits and shadows of the router, with this replica's figures."""
    try:
        policies = fetch_traffic(client)
        models = client.fetch(ModelList, "GET", "/v1/models")
    except RouterCallError as e:
        st.info(f"Traffic policies are unavailable: {getattr(e, 'user_message', e)}")
        return
    ensembles = ensemble_table(models)
    if not ensembles.empty:
        st.subheader("Ensembles")
        st.dataframe(ensembles, hide_index=True, width="stretch")
    st.subheader("Canary splits")
    splits = split_table(policies)
    if splits.empty:
        st.caption("No split: every name is answered by the model of that name.")
    else:
        st.dataframe(splits, hide_index=True, width="stretch")
    st.subheader("Shadows")
    shadows = shadow_table(policies)
    if shadows.empty:
        st.caption("No shadow model.")
    else:
        st.dataframe(shadows, hide_index=True, width="stretch")
    st.caption(
        "Served shares and shadow figures are those of the router replica that answered, since it "
        "started; the Grafana dashboard sums every replica. Admins change the policies with "
        "PUT /v1/traffic."
    )
