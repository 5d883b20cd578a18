"""Model insight in the UI: the waterfall of an explanation, the interval, the drift table.

Talks to the router's REST API only (``POST /v1/explain``, ``POST /v1/predict`` with
``interval``, ``GET /v1/drift``), reading the answers with the declared types of
:mod:`winemeup.api`. Chart builders are pure (a DataFrame in, an Altair chart out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from ui.client import RouterCallError, RouterClient
from ui.inputs import input_label
from winemeup.api import DriftReport, ExplainResponse, PredictResponse
from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA

INSIGHT = "insight"
INTERVAL_LEVEL = 0.9


def explain(client: RouterClient, features: Mapping[str, Any], model: str | None) -> ExplainResponse:
    """``POST /v1/explain`` for one wine."""
    body: dict[str, Any] = {"features": dict(features), **({"model": model} if model else {})}
    return client.fetch(ExplainResponse, "POST", "/v1/explain", body, model)


def interval(client: RouterClient, features: Mapping[str, Any], model: str | None) -> PredictResponse:
    """``POST /v1/predict`` asking for the 90 % interval."""
    body: dict[str, Any] = {"features": dict(features), "interval": INTERVAL_LEVEL}
    if model:
        body["model"] = model
    return client.fetch(PredictResponse, "POST", "/v1/predict", body, model)


def drift(client: RouterClient) -> DriftReport:
    """``GET /v1/drift``."""
    return client.fetch(DriftReport, "GET", "/v1/drift")


def waterfall_frame(answer: ExplainResponse) -> pd.DataFrame:
    """One bar per feature, from base to score, largest contributions first (as the form labels them)."""
    items = sorted(answer.contributions, key=lambda c: -abs(c.contribution))
    rows = []
    level = answer.base
    for c in items:
        feature = SCHEMA[c.feature]
        shown = f"{c.value:g}" if isinstance(c.value, float) else str(c.value)
        label = input_label(feature) if feature.kind != "category" else "Wine type"
        rows.append(
            {
                "feature": f"{label} = {shown}",
                "start": level,
                "end": level + c.contribution,
                "contribution": c.contribution,
                "direction": "raises" if c.contribution >= 0 else "lowers",
            }
        )
        level += c.contribution
    return pd.DataFrame(rows)


def waterfall_chart(answer: ExplainResponse) -> alt.LayerChart:
    """The waterfall: each feature moves the score from the base to the prediction."""
    frame = waterfall_frame(answer)
    order = frame["feature"].tolist()
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=order, title=None, axis=alt.Axis(labelLimit=360)),
            x=alt.X("start:Q", title="quality score", scale=alt.Scale(zero=False)),
            x2="end:Q",
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=["raises", "lowers"], range=["#2e7d32", "#c62828"]),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=["feature", alt.Tooltip("contribution:Q", format="+.3f")],
        )
    )
    marks = pd.DataFrame([{"x": answer.base, "what": "base"}, {"x": answer.score, "what": "score"}])
    rules = alt.Chart(marks).mark_rule(strokeDash=[4, 3]).encode(x="x:Q", tooltip=["what", "x"])
    return alt.LayerChart(layer=[bars, rules]).properties(height=28 * len(frame) + 60)


def interval_chart(score: float, low: float, high: float, level: float) -> alt.LayerChart:
    """The interval on the whole quality scale (0-10), the score as a dot."""
    data = pd.DataFrame([{"low": low, "high": high, "score": score, "y": f"{level:.0%} interval"}])
    x = alt.X("low:Q", title="quality", scale=alt.Scale(domain=[QUALITY_MIN, QUALITY_MAX]))
    band = (
        alt.Chart(data).mark_bar(height=18, opacity=0.35).encode(x=x, x2="high:Q", y=alt.Y("y:N", title=None))
    )
    dot = alt.Chart(data).mark_point(filled=True, size=140, color="black").encode(x="score:Q", y="y:N")
    return alt.LayerChart(layer=[band, dot]).properties(height=70)


def fetch_insight(client: RouterClient, features: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    """The explanation and the interval of one wine; each error is kept as a message, not raised."""
    found: dict[str, Any] = {}
    for key, call in (("explanation", explain), ("interval", interval)):
        try:
            found[key] = call(client, features, model)
        except RouterCallError as e:
            found[key] = e.user_message
    return found


def render_insight(found: Mapping[str, Any]) -> None:
    """Why the model scored this wine so, and how sure it is."""
    answer = found.get("interval")
    st.markdown("**How sure?**")
    if isinstance(answer, PredictResponse) and answer.interval is not None:
        i = answer.interval
        st.write(
            f"With {i.level:.0%} coverage the quality lies between **{i.low:.2f}** and **{i.high:.2f}** "
            f"(split-conformal interval, calibrated per wine type at training time)."
        )
        st.altair_chart(interval_chart(answer.score, i.low, i.high, i.level), width="stretch")
    else:
        st.info(f"No interval: {answer}")
    explanation = found.get("explanation")
    st.markdown("**Why this score?**")
    if isinstance(explanation, ExplainResponse):
        st.caption(
            f"Starts from {explanation.base:.3f} and ends at the score {explanation.score:.3f}. "
            f"Method: {explanation.method}."
        )
        st.altair_chart(waterfall_chart(explanation), width="stretch")
    else:
        st.info(f"No explanation: {explanation}")


def drift_frame(report: DriftReport) -> pd.DataFrame:
    """One row per measurement, a PSI column per wine type."""
    rows: dict[str, dict[str, Any]] = {}
    for t in report.types:
        for f in t.features:
            row = rows.setdefault(f.feature, {"feature": input_label(SCHEMA[f.feature])})
            row[f"PSI {t.wine_type} ({t.rows} rows)"] = f.psi
            row[f"out of range {t.wine_type}"] = f.out_of_range
    return pd.DataFrame(list(rows.values()))


def render_drift(client: RouterClient) -> None:
    """The drift table of the served wines against the training data."""
    st.subheader("Input drift")
    report = drift(client)
    if not report.enabled:
        st.info(f"Drift is not monitored: {report.reason or 'no reference yet'}.")
        return
    age = "" if report.updated_seconds_ago is None else f", updated {report.updated_seconds_ago:.0f} s ago"
    st.caption(
        f"Population stability index of the last {report.window_rows} served wines per type against the "
        f"training bins of {report.reference}{age}. Above {report.psi_threshold:g}: drifted."
    )
    if not report.types:
        st.info("No aggregation yet.")
        return
    frame = drift_frame(report)
    psi_columns = [c for c in frame.columns if c.startswith("PSI")]
    threshold = report.psi_threshold
    styled = frame.style.format(precision=3, na_rep="–").map(
        lambda v: "background-color: #f8d7da" if isinstance(v, float) and v > threshold else "",
        subset=psi_columns,
    )
    st.dataframe(styled, hide_index=True, width="stretch")
