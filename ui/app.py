"""WineMeUp's Streamlit app: score one wine, compare the models, score a CSV file, see the board.

Run with ``streamlit run ui/app.py`` (configured by :class:`ui.settings.UISettings`,
environment ``WINEMEUP_UI_*``). The app talks to the router's REST API only, through
:class:`ui.client.RouterClient`; every router failure is shown as an actionable ``st.error``,
never as a stack trace.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import altair as alt
import pandas as pd
import streamlit as st
from pydantic import ValidationError

from ui.batch import BatchOutcome, BatchRejectedError, problems_csv, results_csv, score_csv
from ui.client import (
    ModelsOverview,
    Prediction,
    RouterCallError,
    RouterClient,
    RouterValidationError,
)
from ui.explain_view import INSIGHT, fetch_insight, render_drift, render_insight
from ui.inputs import default_wine, input_decimals, input_help, input_label, input_step
from ui.leaderboard import build_leaderboard
from ui.rollout_view import render_rollouts
from ui.settings import UISettings
from ui.traffic_view import render_traffic
from ui.wine_csv import CsvFormatError, WineTypeChoice, choose_wine_type
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA, WINE_TYPES

logger = logging.getLogger(__name__)

APP_TITLE = "WineMeUp"
PREDICTION = "prediction"
COMPARISON = "comparison"
BATCH = "batch_outcome"
BATCH_WINE_TYPE = "batch_wine_type_choice"
MODELS_CACHE = "models_cache"
FEATURE_KEY = "feature_{}"
GRADE_NOTE = (
    "Grade: the score rounded to the nearest whole point of the UCI sensory scale "
    "(0 = very bad, 10 = excellent; the median of at least three expert tasters)."
)
SAMPLE_CSV = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";'
    '"free sulfur dioxide";"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";"quality"\n'
    "7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5\n"
)


# ---- set-up -----------------------------------------------------------------------------------


def load_settings() -> UISettings:
    """The UI settings, or an error on the page and a stop when the environment is incomplete."""
    try:
        return UISettings()  # type: ignore[call-arg]  # api_key comes from the environment
    except ValidationError as e:
        missing = ", ".join(
            f"WINEMEUP_UI_{'_'.join(str(p) for p in err['loc']).upper()}" for err in e.errors()
        )
        st.error(
            f"The UI is not configured: check {missing} ({e.error_count()} problem(s)). "
            "WINEMEUP_UI_API_KEY must hold one of the router's API keys."
        )
        st.stop()
        raise  # st.stop() raises; this line keeps type checkers honest


@st.cache_resource(show_spinner=False)
def get_client(router_url: str, api_key: str, timeout_seconds: float) -> RouterClient:
    """One pooled client per router URL, key and timeout, shared by every session."""
    return RouterClient(router_url, api_key, timeout_seconds)


def fetch_models(client: RouterClient, ttl_seconds: float, refresh: bool = False) -> ModelsOverview:
    """GET /v1/models, reused within this session for ``ttl_seconds`` (errors are never kept)."""
    kept = st.session_state.get(MODELS_CACHE)
    now = time.monotonic()
    if not refresh and kept is not None and kept[0] == client.base_url and now - kept[1] < ttl_seconds:
        return cast(ModelsOverview, kept[2])
    st.session_state.pop(MODELS_CACHE, None)
    overview = client.models()
    st.session_state[MODELS_CACHE] = (client.base_url, now, overview)
    return overview


def show_error(error: RouterCallError) -> None:
    """One actionable message per router failure, with the bad fields listed when there are any."""
    st.error(error.user_message, icon="🚫")
    if isinstance(error, BatchRejectedError) and error.problems:
        st.dataframe(pd.DataFrame([p.__dict__ for p in error.problems]), hide_index=True)
    elif isinstance(error, RouterValidationError) and error.details:
        st.markdown("\n".join(f"- **{field_label(d.field)}**: {d.problem}" for d in error.details))


def field_label(field: str) -> str:
    """A field of the router's error as the form labels it (``features.ph`` -> ``pH``)."""
    name = field.removeprefix("features.")
    canonical = SCHEMA.canonical_name(name)
    return SCHEMA[canonical].header if canonical else field


def guarded(render: Callable[..., None], *args: Any) -> None:
    """Run one part of the page; an unexpected failure becomes a message, not a stack trace."""
    try:
        render(*args)
    except RouterCallError as e:
        show_error(e)
    except Exception as e:  # the last line of defence of a page people use
        logger.exception("unexpected failure in %s", render.__name__)
        st.error(f"Something unexpected went wrong ({type(e).__name__}: {e}). The UI's log has the details.")


# ---- single wine and comparison ---------------------------------------------------------------


def model_label(overview: ModelsOverview | None) -> Callable[[str], str]:
    """How the model picker shows a name: default and status marked."""

    def label(name: str) -> str:
        if overview is None:
            return name
        entry = overview.get(name)
        tags = []
        if name == overview.default_model:
            tags.append("default")
        if entry is not None and not entry.ready:
            tags.append(entry.status)
        return f"{name} ({', '.join(tags)})" if tags else name

    return label


def model_options(overview: ModelsOverview | None) -> tuple[list[str], int]:
    """The names in the model picker and the index preselected (the router's default)."""
    names = overview.names if overview and overview.models else list(MODEL_NAMES)
    default = overview.default_model if overview else None
    return names, names.index(default) if default in names else 0


def render_wine(client: RouterClient, overview: ModelsOverview | None) -> None:
    """The wine form: one input per feature; predict with one model or compare them all."""
    st.write("Enter the lab analysis of one wine. The form starts with a typical red from the UCI data.")
    example = default_wine()
    features: dict[str, float | str] = {}
    with st.form("wine"):
        columns = st.columns(3)
        for index, feature in enumerate(SCHEMA.measurements):
            decimals = input_decimals(feature)
            with columns[index % 3]:
                features[feature.name] = st.number_input(
                    input_label(feature),
                    min_value=float(feature.minimum),
                    max_value=float(feature.maximum),
                    value=float(example[feature.name]),
                    step=input_step(feature),
                    format=f"%.{decimals}f",
                    help=input_help(feature),
                    key=FEATURE_KEY.format(feature.name),
                )
        left, right = st.columns(2)
        with left:
            wine_type = SCHEMA["wine_type"]
            features[wine_type.name] = st.selectbox(
                "Wine type",
                WINE_TYPES,
                index=WINE_TYPES.index(str(example[wine_type.name])),
                help=wine_type.description,
                key=FEATURE_KEY.format(wine_type.name),
            )
        with right:
            names, default_index = model_options(overview)
            model = st.selectbox(
                "Model",
                names,
                index=default_index,
                format_func=model_label(overview),
                key="model",
                help="The router's default model is preselected.",
            )
        predict_col, compare_col, _ = st.columns([1, 1, 3])
        with predict_col:
            predict = st.form_submit_button("Predict quality", type="primary", key="predict")
        with compare_col:
            compare = st.form_submit_button("Compare all models", key="compare")

    if predict or compare:
        # A result computed for another wine would be misleading beside the new one.
        for key in (PREDICTION, COMPARISON):
            kept = st.session_state.get(key)
            if kept is not None and (kept[0] != features or key == (PREDICTION if predict else COMPARISON)):
                del st.session_state[key]
    if predict:
        st.session_state[PREDICTION] = (features, client.predict(features, model=model))
        st.session_state[INSIGHT] = fetch_insight(client, features, model)
    if compare:
        st.session_state[COMPARISON] = (features, compare_models(client, overview, features))

    prediction = st.session_state.get(PREDICTION)
    if prediction is not None and isinstance(prediction[1], Prediction):
        render_prediction(prediction[1])
        if st.session_state.get(INSIGHT) is not None:
            render_insight(st.session_state[INSIGHT])
    comparison = st.session_state.get(COMPARISON)
    if comparison is not None and isinstance(comparison[1], pd.DataFrame):
        render_comparison(comparison[1])


def render_prediction(p: Prediction) -> None:
    """The answer to one wine: grade, score, model and version, cache, round trip."""
    st.subheader(f"Predicted quality: {p.quality} / 10")
    grade, score, model, cache, timing = st.columns(5)
    grade.metric("Quality grade", p.quality)
    score.metric("Raw score", f"{p.score:.3f}")
    model.metric("Model", p.model, help=f"Version {p.model_version}")
    cache.metric("Cache", "hit" if p.cached else "computed")
    timing.metric("Round trip", f"{p.seconds * 1000:.1f} ms")
    st.caption(f"Model {p.model}, version {p.model_version}. {GRADE_NOTE}")


def compare_models(
    client: RouterClient, overview: ModelsOverview | None, features: dict[str, float | str]
) -> pd.DataFrame:
    """Score one wine with every model at once; a model that fails gets its error in its row."""
    names = overview.names if overview and overview.models else list(MODEL_NAMES)

    def one(name: str) -> dict[str, Any]:
        entry = overview.get(name) if overview else None
        row: dict[str, Any] = {
            "model": name,
            "framework": entry.framework if entry else "",
            "status": entry.status if entry else "",
        }
        try:
            p = client.predict(features, model=name)
        except RouterValidationError:
            raise  # the wine itself is wrong: one message for the whole comparison
        except RouterCallError as e:
            return {
                **row,
                "score": None,
                "grade": None,
                "cached": None,
                "round trip (ms)": None,
                "version": "",
                "error": e.user_message,
            }
        return {
            **row,
            "score": round(p.score, 4),
            "grade": p.quality,
            "cached": p.cached,
            "round trip (ms)": round(p.seconds * 1000, 1),
            "version": p.model_version,
            "error": "",
        }

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        rows = list(pool.map(one, names))
    return pd.DataFrame(rows)


def render_comparison(table: pd.DataFrame) -> None:
    """The comparison: every model's score side by side, as a table and a chart."""
    st.subheader("All models on this wine")
    scored = table.dropna(subset=["score"])
    if scored.empty:
        st.error("No model could score this wine: see the errors in the table.")
    else:
        low, high = scored.loc[scored["score"].idxmin()], scored.loc[scored["score"].idxmax()]
        grades = sorted(set(int(g) for g in scored["grade"]))
        agreement = (
            f"all {len(scored)} models give grade {grades[0]}"
            if len(grades) == 1
            else f"grades range from {grades[0]} to {grades[-1]}"
        )
        st.write(
            f"Scores range from **{low['score']:.2f}** ({low['model']}) to **{high['score']:.2f}** "
            f"({high['model']}); {agreement}."
        )
        st.altair_chart(comparison_chart(scored), width="stretch")
    failed = table[table["error"] != ""]
    for _, row in failed.iterrows():
        st.warning(f"{row['model']}: {row['error']}")
    shown = table if not failed.empty else table.drop(columns=["error"])
    st.dataframe(shown.sort_values("score", ascending=False), hide_index=True, width="stretch")


def comparison_chart(scored: pd.DataFrame) -> alt.LayerChart:
    """Each model's score as a dot on the quality scale, with the grade boundaries (x.5) dashed.

    Scores of one wine sit within a few tenths of each other, so the axis does not start at
    zero: bars from zero would hide exactly the differences people compare.
    """
    low, high = float(scored["score"].min()), float(scored["score"].max())
    boundaries = pd.DataFrame({"boundary": [g + 0.5 for g in range(math.floor(low - 0.5), math.ceil(high))]})
    boundaries = boundaries[(boundaries["boundary"] > low - 0.3) & (boundaries["boundary"] < high + 0.3)]
    x = alt.X(
        "score:Q",
        title="score (UCI quality scale)",
        scale=alt.Scale(zero=False, nice=False, domain=[low - 0.3, high + 0.3]),
    )
    base = alt.Chart(scored).encode(y=alt.Y("model:N", sort="-x", title=None), x=x)
    dots = base.mark_circle(size=160, opacity=1).encode(
        tooltip=["model", alt.Tooltip("score:Q", format=".3f"), "grade", "cached"]
    )
    labels = base.mark_text(align="left", dx=10).encode(text=alt.Text("score:Q", format=".2f"))
    rules = alt.Chart(boundaries).mark_rule(strokeDash=[4, 4], color="gray").encode(x="boundary:Q")
    return alt.LayerChart(layer=[rules, dots, labels]).properties(height=36 * len(scored) + 40)


# ---- batch ------------------------------------------------------------------------------------


def render_batch(client: RouterClient, overview: ModelsOverview | None, settings: UISettings) -> None:
    """Score a CSV file (uploaded or pasted): bad rows reported by number, good rows scored."""
    st.write(
        "Upload a CSV in the UCI layout (`;`-separated, headers such as `fixed acidity` and `pH`, "
        "a `quality` column is fine) or with the API names (`fixed_acidity`, `ph`, `,`-separated). "
        "Every row is checked here first; bad rows are listed by number and left out."
    )
    left, right = st.columns(2)
    with left:
        chosen_type = st.radio(
            "Wine type of every row, when the file has no wine_type column",
            WINE_TYPES,
            index=None,  # no silent default: a white file scored as red looks plausible and is wrong
            horizontal=True,
            key="batch_wine_type",
            help="Left unchosen, the type the file name says (e.g. winequality-white.csv) is used, "
            "and the result says so.",
        )
    with right:
        names, default_index = model_options(overview)
        model = st.selectbox(
            "Model", names, index=default_index, format_func=model_label(overview), key="batch_model"
        )
    uploaded = st.file_uploader(
        f"CSV file (at most {settings.max_csv_rows:,} rows)", type=["csv", "txt"], key="batch_file"
    )
    pasted = st.text_area(
        "…or paste CSV text (an uploaded file takes precedence)",
        key="batch_text",
        height=150,
        placeholder=SAMPLE_CSV,
        max_chars=settings.max_paste_characters,
    )
    if st.button("Score the file", type="primary", key="score_batch"):
        data: bytes | str | None = uploaded.getvalue() if uploaded is not None else (pasted or None)
        st.session_state.pop(BATCH, None)
        if not data or not str(data).strip():
            st.warning("Upload a file or paste CSV text first.")
        else:
            choice = choose_wine_type(chosen_type, uploaded.name if uploaded is not None else None)
            st.session_state[BATCH_WINE_TYPE] = choice
            try:
                st.session_state[BATCH] = score_csv(
                    client,
                    data,
                    wine_type=choice.wine_type,
                    model=model,
                    chunk_rows=settings.batch_chunk_rows,
                    max_rows=settings.max_csv_rows,
                )
            except CsvFormatError as e:
                st.error(f"This file cannot be read: {e}", icon="📄")
    outcome = st.session_state.get(BATCH)
    if isinstance(outcome, BatchOutcome):
        render_batch_outcome(outcome, st.session_state.get(BATCH_WINE_TYPE))


def render_agreement(results: pd.DataFrame) -> None:
    """How the predictions compare with the file's own ``quality`` column."""
    known = results.dropna(subset=["quality"])
    if not known.empty:
        mae = (known["predicted_score"] - known["quality"]).abs().mean()
        exact = (known["predicted_quality"] == known["quality"]).mean()
        st.write(
            f"Against the file's own quality column: mean absolute error **{mae:.3f}**, "
            f"grade exactly right for **{exact:.0%}** of {len(known)} rows."
        )


def render_batch_outcome(outcome: BatchOutcome, wine_type: WineTypeChoice | None = None) -> None:
    """Summary, bad rows, results, charts and the downloads of one scored file."""
    parsed = outcome.parsed
    if not parsed.has_wine_type and wine_type is not None and wine_type.note:
        (st.warning if wine_type.doubtful else st.info)(wine_type.note)
    total, good, bad, model, took = st.columns(5)
    total.metric("Rows read", parsed.total_rows)
    good.metric("Scored", len(outcome.scored))
    bad.metric("Not scored", len(parsed.bad_rows))
    model.metric("Model", outcome.model or "-", help=f"Version {outcome.model_version}")
    took.metric("Time", f"{outcome.seconds:.2f} s", help=f"{outcome.requests} batch request(s)")
    if parsed.ignored_columns:
        st.info(f"Columns not used for scoring (kept in the download): {', '.join(parsed.ignored_columns)}")
    if parsed.problems:
        shown = ", ".join(str(r) for r in parsed.bad_rows[:20]) + (" …" if len(parsed.bad_rows) > 20 else "")
        st.warning(
            f"{len(parsed.bad_rows)} row(s) were not scored because of the problems below "
            f"(row 1 is the first row under the header): rows {shown}."
        )
        st.dataframe(
            pd.DataFrame([p.__dict__ for p in parsed.problems]), hide_index=True, key="batch_problems"
        )
        st.download_button(
            "Download the problems (CSV)",
            problems_csv(parsed.problems),
            file_name="winemeup-problems.csv",
            mime="text/csv",
            key="download_problems",
        )
    if not outcome.scored:
        return
    results = pd.DataFrame(
        [
            {
                "row": s.row.row,
                **({"quality": s.row.quality} if parsed.has_quality else {}),
                "predicted_score": round(s.score, 4),
                "predicted_quality": s.quality,
                "cached": s.cached,
                **s.row.instance,
            }
            for s in outcome.scored
        ]
    )
    if parsed.has_quality:
        render_agreement(results)
    st.altair_chart(grade_chart(results, parsed.has_quality), width="stretch")
    st.dataframe(results, hide_index=True, width="stretch")
    st.download_button(
        "Download results (CSV)",
        results_csv(outcome),
        file_name="winemeup-predictions.csv",
        mime="text/csv",
        type="primary",
        key="download_results",
    )


def grade_chart(results: pd.DataFrame, has_quality: bool) -> alt.Chart:
    """How many wines got each grade, beside the file's own grades when it has them."""
    counts = [("predicted", g, n) for g, n in results["predicted_quality"].value_counts().items()]
    if has_quality:
        known = results["quality"].dropna().round().astype(int)
        counts += [("in the file", g, n) for g, n in known.value_counts().items()]
    data = pd.DataFrame(counts, columns=["source", "grade", "wines"])
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("grade:O", title="quality grade", axis=alt.Axis(labelAngle=0)),
            xOffset="source:N",
            y=alt.Y("wines:Q", title="wines"),
            color=alt.Color("source:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=["source", "grade", "wines"],
        )
        .properties(height=260)
    )


# ---- models -----------------------------------------------------------------------------------


def render_models(overview: ModelsOverview | None) -> None:
    """The leaderboard of the training metrics, the default model and each model's status."""
    if overview is None:
        st.info("The model list is unavailable until the router answers (see the message above).")
        return
    st.write(f"Default model: **{overview.default_model or 'none'}** (used when a request names no model).")
    board = build_leaderboard(overview.models, overview.default_model)
    if board.rankable:
        rank_by = st.selectbox(
            "Rank by",
            board.rankable,
            index=board.rankable.index(board.rank_by) if board.rank_by in board.rankable else 0,
            key="rank_by",
            help="Metrics recorded at training time: protocol (test = held-out set, cv = cross-validation), "
            "scope (overall, red, white), then the figure.",
        )
        board = build_leaderboard(overview.models, overview.default_model, rank_by)
        better = {"lower": "lower is better", "higher": "higher is better"}.get(board.direction or "", "")
        st.caption(f"Ranked by {board.rank_by} ({better}).")
    else:
        st.caption("The models carry no training metrics.")
    table = pd.DataFrame(board.rows)
    identity = [
        c for c in ("rank", "model", "default", "status", "framework", "placement", "version") if c in table
    ]
    headline = sorted(board.headline, key=lambda m: m != board.rank_by)  # the ranking metric first
    scope = board.rank_by.rpartition(".")[0] if board.rank_by else ""
    shown = table[identity + headline].rename(columns={m: m.rpartition(".")[2] for m in headline})
    st.dataframe(shown, hide_index=True, width="stretch")
    if scope:
        st.caption(f"Figures of {scope}; every figure is under All training metrics.")
    if board.rank_by and board.rank_by in table:
        chart = metric_chart(table.dropna(subset=[board.rank_by]), board.rank_by, board.direction == "higher")
        st.altair_chart(chart, width="stretch")
    if board.metrics:
        with st.expander("All training metrics"):
            st.dataframe(table[["model", *board.metrics]], hide_index=True, width="stretch")
    for m in overview.models:
        if not m.ready:
            why = f" ({m.reason})" if m.reason else ""
            st.warning(f"{m.name} is {m.status}{why}: predictions with it fail until it is ready.")


def metric_chart(table: pd.DataFrame, metric: str, higher_is_better: bool) -> alt.LayerChart:
    """One training metric per model as dots; the axis spans the models' range, not zero."""
    # Vega-Lite reads dots in a field name as nesting: chart the metric under a plain name.
    data = table[["model", metric]].rename(columns={metric: "value"})
    low, high = float(data["value"].min()), float(data["value"].max())
    pad = max((high - low) * 0.15, 0.005)
    x = alt.X(
        "value:Q", title=metric, scale=alt.Scale(zero=False, nice=False, domain=[low - pad, high + pad])
    )
    order = "-x" if higher_is_better else "x"  # best model on top
    base = alt.Chart(data).encode(y=alt.Y("model:N", sort=order, title=None), x=x)
    dots = base.mark_circle(size=160, opacity=1).encode(
        tooltip=["model", alt.Tooltip("value:Q", title=metric, format=".4f")]
    )
    labels = base.mark_text(align="left", dx=10).encode(text=alt.Text("value:Q", format=".3f"))
    return alt.LayerChart(layer=[dots, labels]).properties(height=36 * len(data) + 40)


# ---- page -------------------------------------------------------------------------------------


def main() -> None:
    """The whole page."""
    st.set_page_config(page_title=APP_TITLE, page_icon="🍷", layout="wide")
    settings = load_settings()
    client = get_client(settings.router_url, settings.api_key.get_secret_value(), settings.timeout_seconds)
    st.title("WineMeUp")
    st.caption("Wine quality from eleven lab measurements, by seven model families.")

    with st.sidebar:
        refresh = st.button("Refresh model list", key="refresh_models")
    overview: ModelsOverview | None = None
    try:
        overview = fetch_models(client, settings.models_cache_seconds, refresh=refresh)
    except RouterCallError as e:
        show_error(e)
    with st.sidebar:
        st.markdown(f"**Router** `{settings.router_url}`")
        if overview is not None:
            ready = sum(m.ready for m in overview.models)
            st.markdown(
                f"{ready} of {len(overview.models)} models ready; default **{overview.default_model}**"
            )
        else:
            st.markdown("Not connected.")

    wine_tab, batch_tab, models_tab = st.tabs(["Predict & compare", "Batch (CSV)", "Models"])
    with wine_tab:
        guarded(render_wine, client, overview)
    with batch_tab:
        guarded(render_batch, client, overview, settings)
    with models_tab:
        guarded(render_models, overview)
        if overview is not None:  # otherwise the router's error is already shown, once, above
            guarded(render_traffic, client)
            guarded(render_rollouts, client)
            guarded(render_drift, client)


if __name__ == "__main__":
    main()
