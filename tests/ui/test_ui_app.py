"""The Streamlit app under AppTest, against a real router subprocess (inline placement).

Each test drives the page the way a person does (fill, click, read what is shown) and checks
it against what the router itself answers.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.support.router import RouterHandle
from ui.client import RouterClient, UnknownModelError
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.ui, pytest.mark.integration]

UCI_HEADER = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";"free sulfur dioxide";'
    '"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";"quality"'
)
WHITE_ROWS = [
    "7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6",
    "6.3;0.3;0.34;1.6;0.049;14;132;0.994;9.3;0.49;9.5;6",  # pH 9.3: out of range
    "8.1;0.28;0.4;6.9;0.05;30;97;0.9951;3.26;0.44;10.1;6",
]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The one table on the page that has ``column``."""
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def router_predict(handle: RouterHandle, features: dict[str, Any], model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"features": features, **({"model": model} if model else {})}
    response = httpx.post(f"{handle.url}/v1/predict", json=body, headers=handle.headers(), timeout=10)
    response.raise_for_status()
    return dict(response.json())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_single_prediction_shows_grade_score_model_and_cache(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest]
) -> None:
    at = ui_app(ready_router.url, ready_router.api_key)
    assert errors(at) == []
    # the form starts with the schema's typical red, and the default model preselected
    assert at.number_input(key="feature_density").value == pytest.approx(0.9978)
    assert at.selectbox(key="feature_wine_type").value == "red"
    assert at.selectbox(key="model").value == "lightgbm"
    assert len(at.selectbox(key="model").options) == len(MODEL_NAMES)

    at.number_input(key="feature_alcohol").set_value(12.34)
    at.selectbox(key="model").set_value("catboost")
    at.button(key="predict").click().run()
    assert not at.exception and errors(at) == []
    shown = metrics(at)
    expected = router_predict(ready_router, {**SCHEMA.example(), "alcohol": 12.34}, "catboost")
    assert shown["Model"] == "catboost"
    assert shown["Raw score"] == f"{expected['score']:.3f}"
    assert shown["Quality grade"] == str(expected["quality"])
    assert shown["Round trip"].endswith(" ms")
    assert shown["Cache"] == "computed"  # the router had not seen this wine before the UI asked
    assert expected["cached"] is True
    assert any(expected["model_version"] in c.value for c in at.caption)

    at.button(key="predict").click().run()
    assert metrics(at)["Cache"] == "hit"


def test_comparison_scores_the_same_wine_with_every_model(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest]
) -> None:
    at = ui_app(ready_router.url, ready_router.api_key)
    at.selectbox(key="feature_wine_type").set_value("white")
    at.button(key="compare").click().run()
    assert not at.exception and errors(at) == []
    table = at.session_state["comparison"][1]
    assert sorted(table["model"]) == sorted(MODEL_NAMES)
    assert table["error"].eq("").all()
    white = {**SCHEMA.example(), "wine_type": "white"}
    for _, row in table.iterrows():
        direct = router_predict(ready_router, white, row["model"])
        assert row["score"] == pytest.approx(direct["score"], abs=1e-4)
    assert table["score"].nunique() > 1  # seven models, not one model seven times
    charts = [c.proto.SerializeToString().decode("latin-1") for c in at.get("vega_lite_chart")]
    [chart] = [c for c in charts if '"score"' in c]  # spec plus Arrow data of the comparison chart
    assert all(name in chart for name in MODEL_NAMES)
    assert any("Scores range from" in m.value for m in at.markdown)


def test_batch_paste_reports_the_bad_row_and_scores_the_others_in_chunks(
    router: Callable[..., RouterHandle],
    model_store: Path,
    ui_app: Callable[..., AppTest],
    models_ready: Callable[..., dict[str, Any]],
) -> None:
    # The router takes at most 2 rows per batch: only chunking gets 5 good rows through.
    handle = router(model_store=model_store, batch_max_rows=2, models=["lightgbm"])
    models_ready(handle)
    at = ui_app(handle.url, handle.api_key, batch_chunk_rows=2)
    rows = [*WHITE_ROWS, WHITE_ROWS[0], WHITE_ROWS[2], WHITE_ROWS[0]]
    at.radio(key="batch_wine_type").set_value("white")
    at.text_area(key="batch_text").input(UCI_HEADER + "\n" + "\n".join(rows) + "\n")
    at.button(key="score_batch").click().run()
    assert not at.exception and errors(at) == []
    shown = metrics(at)
    assert (shown["Rows read"], shown["Scored"], shown["Not scored"]) == ("6", "5", "1")
    assert any("rows 2" in w.value for w in at.warning)
    problems = frame_with(at, "problem")
    assert problems[["row", "line", "field"]].values.tolist() == [[2, 3, "ph"]]
    assert "between 2.5 and 4.5" in problems["problem"][0]

    outcome = at.session_state["batch_outcome"]
    assert outcome.requests == 3
    results = frame_with(at, "predicted_score")
    assert results["row"].tolist() == [1, 3, 4, 5, 6]
    direct = httpx.post(
        f"{handle.url}/v1/predict/batch",
        json={"instances": [r.row.instance for r in outcome.scored[:2]], "model": "lightgbm"},
        headers=handle.headers(),
        timeout=10,
    ).json()
    assert results["predicted_score"].tolist()[:2] == pytest.approx(
        [p["score"] for p in direct["predictions"]], abs=1e-4
    )
    assert set(results["wine_type"]) == {"white"}
    assert len(at.get("download_button")) == 2  # results and the problem list

    # chunks larger than the router takes: one message saying which setting to change
    at = ui_app(handle.url, handle.api_key, batch_chunk_rows=3)
    at.radio(key="batch_wine_type").set_value("white")
    at.text_area(key="batch_text").input(UCI_HEADER + "\n" + "\n".join(rows) + "\n")
    at.button(key="score_batch").click().run()
    assert not at.exception
    [message] = errors(at)
    assert "refused a batch of 3 rows" in message and "WINEMEUP_UI_BATCH_CHUNK_ROWS" in message
    assert "Rows read" not in metrics(at)


def test_invalid_wine_and_unreadable_file_are_clear_messages(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest]
) -> None:
    at = ui_app(ready_router.url, ready_router.api_key)
    # within each input's range, but more free than total SO2: only the router's check catches it
    at.number_input(key="feature_free_sulfur_dioxide").set_value(50.0)
    at.button(key="predict").click().run()
    assert not at.exception
    [message] = errors(at)
    assert message.startswith("The router rejected the input")
    assert any(
        "**free sulfur dioxide**: must not exceed total_sulfur_dioxide" in m.value for m in at.markdown
    )
    assert "Predicted quality" not in " ".join(h.value for h in at.subheader)

    at.text_area(key="batch_text").input("colour;alcool\nred;9.4\n")
    at.button(key="score_batch").click().run()
    assert not at.exception
    assert any(e.startswith("This file cannot be read: Missing column(s): fixed acidity") for e in errors(at))


def test_batch_upload_of_a_uci_file(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest], data_dir: Path
) -> None:
    lines = (data_dir / "winequality-red.csv").read_bytes().splitlines(keepends=True)[:41]
    at = ui_app(ready_router.url, ready_router.api_key)
    at.selectbox(key="batch_model").set_value("random_forest")
    at.file_uploader(key="batch_file").upload("red-sample.csv", b"".join(lines), "text/csv")
    at.run()
    at.button(key="score_batch").click().run()
    assert not at.exception and errors(at) == []
    shown = metrics(at)
    assert (shown["Rows read"], shown["Scored"], shown["Not scored"]) == ("40", "40", "0")
    assert shown["Model"] == "random_forest"
    assert any("mean absolute error" in m.value for m in at.markdown)  # the file has a quality column


def test_a_file_without_wine_type_is_never_silently_red(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest], data_dir: Path
) -> None:
    """The white UCI file, uploaded as it is: scored as white, and the page says why."""
    white = b"".join((data_dir / "winequality-white.csv").read_bytes().splitlines(keepends=True)[:21])
    at = ui_app(ready_router.url, ready_router.api_key)
    assert at.radio(key="batch_wine_type").value is None  # no default to overlook
    at.file_uploader(key="batch_file").upload("winequality-white.csv", white, "text/csv")
    at.run()
    at.button(key="score_batch").click().run()
    assert not at.exception and errors(at) == []
    assert set(frame_with(at, "predicted_score")["wine_type"]) == {"white"}
    assert any("inferred from the file name 'winequality-white.csv'" in i.value for i in at.info)

    # Chosen red against the file's name: scored as chosen, with a warning.
    at.radio(key="batch_wine_type").set_value("red")
    at.button(key="score_batch").click().run()
    assert set(frame_with(at, "predicted_score")["wine_type"]) == {"red"}
    assert any("says white" in w.value for w in at.warning)

    # Pasted text has no name: without a choice it is refused, not guessed.
    at = ui_app(ready_router.url, ready_router.api_key)
    at.text_area(key="batch_text").input(UCI_HEADER + "\n" + WHITE_ROWS[0] + "\n")
    at.button(key="score_batch").click().run()
    assert any("choose red or white" in e for e in errors(at))
    assert "Rows read" not in metrics(at)


def test_models_tab_shows_the_leaderboard_and_default(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest]
) -> None:
    body = httpx.get(f"{ready_router.url}/v1/models", headers=ready_router.headers(), timeout=10).json()
    stored = {m["name"]: m["metrics"]["test"]["overall"] for m in body["models"]}
    at = ui_app(ready_router.url, ready_router.api_key)
    board = frame_with(at, "rank")
    assert sorted(board["model"]) == sorted(MODEL_NAMES)
    assert board.loc[board["default"], "model"].tolist() == ["lightgbm"]
    assert at.selectbox(key="rank_by").value == "test.overall.rmse"
    assert dict(zip(board["model"], board["rmse"], strict=True)) == pytest.approx(
        {name: m["rmse"] for name, m in stored.items()}
    )
    assert board["rmse"].is_monotonic_increasing and board["rank"].tolist() == list(range(1, 8))
    assert any("Default model: **lightgbm**" in m.value for m in at.markdown)

    at.selectbox(key="rank_by").set_value("test.overall.r2").run()
    board = frame_with(at, "rank")
    assert board.columns[7] == "r2" and board["r2"].is_monotonic_decreasing
    assert board["model"].iloc[0] == max(stored, key=lambda name: stored[name]["r2"])


def test_unreachable_router_is_a_clear_message(ui_app: Callable[..., AppTest]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    at = ui_app(url, "any-key", timeout_seconds=2)
    assert any(f"Cannot reach the router at {url}" in e for e in errors(at))
    at.button(key="predict").click().run()
    assert not at.exception
    assert sum("Cannot reach the router" in e for e in errors(at)) == 2
    assert "Traceback" not in " ".join(errors(at))


def test_wrong_api_key_is_a_clear_message(ready_router: RouterHandle, ui_app: Callable[..., AppTest]) -> None:
    at = ui_app(ready_router.url, "not-a-key")
    assert not at.exception
    [message] = errors(at)
    assert "refused the UI's API key (HTTP 401" in message and "WINEMEUP_UI_API_KEY" in message


def test_unavailable_model_is_a_clear_message_and_others_still_compare(
    router: Callable[..., RouterHandle],
    model_store: Path,
    ui_app: Callable[..., AppTest],
    models_ready: Callable[..., dict[str, Any]],
) -> None:
    dead_runner = f"http://127.0.0.1:{closed_port()}"
    handle = router(
        model_store=model_store,
        models=["lightgbm", "catboost", "svr"],
        placements={"svr": "runner"},
        runner_urls={"svr": dead_runner},
    )
    models_ready(handle, {"lightgbm", "catboost"})
    at = ui_app(handle.url, handle.api_key)
    at.selectbox(key="model").set_value("svr")
    at.button(key="predict").click().run()
    assert not at.exception
    assert any(e.startswith("Model svr is unavailable right now") for e in errors(at))
    at.button(key="compare").click().run()
    table = at.session_state["comparison"][1]
    assert table.loc[table["model"] == "svr", "error"].str.contains("unavailable").all()
    assert table.loc[table["model"] != "svr", "score"].notna().all()

    # a model the router does not serve (e.g. a stale list): the client names the way out
    with RouterClient(handle.url, handle.api_key) as client, pytest.raises(UnknownModelError) as caught:
        client.predict(SCHEMA.example(), model="xgboost")
    assert caught.value.status == 404 and "does not serve model xgboost" in caught.value.user_message


def test_a_csv_over_the_row_limit_is_refused_before_anything_is_sent(
    ready_router: RouterHandle, ui_app: Callable[..., AppTest]
) -> None:
    at = ui_app(ready_router.url, ready_router.api_key, max_csv_rows=2, max_paste_characters=5000)
    assert at.text_area(key="batch_text").max_chars == 5000
    at.radio(key="batch_wine_type").set_value("white")
    at.text_area(key="batch_text").input(UCI_HEADER + "\n" + "\n".join(WHITE_ROWS) + "\n")
    at.button(key="score_batch").click().run()
    assert not at.exception
    [message] = errors(at)
    assert message == (
        "This file cannot be read: The file has 3 rows; at most 2 are scored at once. "
        "Split it into files of at most that many rows."
    )
    assert "Rows read" not in metrics(at) and "batch_outcome" not in at.session_state
