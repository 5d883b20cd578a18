"""Runners hardened against abuse, over real HTTP against real ``bentoml serve`` processes.

- Only the router may call: every route but the probes and ``/metrics`` needs the shared
  secret, and the metrics answer on a port of their own.
- Every error, BentoML's own validation errors included, is the one body shape.
- A row outside the schema's ranges (1e300) is a 422 naming the field, on JSON and binary routes.
- Explanations are bounded: a row cap, 429 with Retry-After while the explainer is busy, a
  deadline that stops the work, and predictions keep their latency during an explain flood.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.runner.fleet import RunnerFleet
from services.runner.middleware import TOKEN_HEADER
from tests.support.runners import runner_fleet
from winemeup.api import ErrorBody
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "integration-test-runner-token"
ROW = SCHEMA.encode(SCHEMA.example())
EXPLAIN_TIMEOUT = 2.0
AUTH = {TOKEN_HEADER: TOKEN}


@pytest.fixture(scope="module")
def fleet(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFleet]:
    """extra_trees (costly explanations) and lightgbm, both requiring the token."""
    env = {"WINEMEUP_RUNNER_EXPLAIN_TIMEOUT_SECONDS": str(EXPLAIN_TIMEOUT)}
    fleet = runner_fleet(
        model_store, tmp_path_factory.mktemp("hardened"), ["extra_trees", "lightgbm"], env, token=TOKEN
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


def _assert_one_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error", "code", "details"}, body
    ErrorBody.model_validate(body)
    assert "pydantic.dev" not in response.text
    return body


ROUTES = [
    ("/predict", {"rows": [ROW]}),
    ("/predict_one", {"features": SCHEMA.example()}),
    ("/explain", {"rows": [ROW]}),
    ("/insight", {}),
    ("/metadata", {}),
]


@pytest.mark.parametrize(("route", "body"), ROUTES, ids=[r for r, _ in ROUTES])
def test_a_runner_answers_only_with_the_token(
    fleet: RunnerFleet, client: httpx.Client, route: str, body: dict[str, Any]
) -> None:
    url = fleet.url("lightgbm") + route
    for headers in ({}, {TOKEN_HEADER: "x" * len(TOKEN)}):
        refused = client.post(url, json=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert _assert_one_shape(refused)["code"] == "unauthenticated"
    assert client.post(url, json=body, headers=AUTH).status_code == 200


def test_binary_predict_needs_the_token(fleet: RunnerFleet, client: httpx.Client) -> None:
    """The router's route is answered ahead of BentoML's stack, with the same 401 as every route."""
    url = fleet.url("lightgbm") + "/binary/predict"
    payload = np.array([ROW]).tobytes()
    for headers, reason in (
        ([], "missing"),
        ([(TOKEN_HEADER, "x" * len(TOKEN))], "not the runner's token"),
        ([(TOKEN_HEADER, TOKEN), (TOKEN_HEADER, TOKEN)], "given twice"),
    ):
        refused = client.post(url, content=payload, headers=headers)
        assert refused.status_code == 401, refused.text
        assert _assert_one_shape(refused) == {
            "error": f"this runner answers only the router: {TOKEN_HEADER} {reason}",
            "code": "unauthenticated",
            "details": [{"field": TOKEN_HEADER, "problem": reason}],
        }
    answer = client.post(url, content=payload, headers=AUTH)
    assert answer.status_code == 200 and len(answer.content) == 8


def _binary_requests(text: str) -> Counter[str]:
    """``winemeup_runner_binary_requests_total`` by status code, from a metrics exposition."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("winemeup_runner_binary_requests_total{"):
            code = line.split('http_response_code="', 1)[1].split('"', 1)[0]
            counts[code] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_binary_predict_errors_take_the_one_shape_and_are_counted(
    fleet: RunnerFleet, client: httpx.Client
) -> None:
    """Errors of the router's route: 413 and 422 in the one body shape, and every answer counted
    by status on /metrics and on the metrics port (BentoML's request metrics no longer see it)."""
    base = fleet.url("lightgbm")
    url = base + "/binary/predict"
    counted = {
        where: _binary_requests(client.get(where).text)
        for where in (base + "/metrics", fleet.metrics_url("lightgbm"))
    }
    too_many = client.post(url, content=np.zeros((10_001, len(ROW))).tobytes(), headers=AUTH)
    assert too_many.status_code == 413, too_many.text[:300]
    assert _assert_one_shape(too_many)["code"] == "payload_too_large"
    out_of_range = client.post(url, content=np.array([[*ROW[:11], 0.5]]).tobytes(), headers=AUTH)
    assert out_of_range.status_code == 422, out_of_range.text
    assert _assert_one_shape(out_of_range)["details"] == [
        {"field": "rows[0][11]", "problem": "wine_type must be one of the codes 0, 1, got 0.5"}
    ]
    assert client.post(url, content=np.array([ROW]).tobytes()).status_code == 401
    for _ in range(3):
        assert client.post(url, content=np.array([ROW, ROW]).tobytes(), headers=AUTH).status_code == 200
    for where, before in counted.items():
        scraped = client.get(where).text
        grown = _binary_requests(scraped)
        grown.subtract(before)
        assert +grown == Counter({"200": 3, "413": 1, "422": 1, "401": 1}), (where, grown)
        assert "winemeup_runner_binary_request_duration_seconds_bucket" in scraped


def test_probes_and_metrics_need_no_token_and_metrics_have_their_own_port(
    fleet: RunnerFleet, client: httpx.Client
) -> None:
    base = fleet.url("lightgbm")
    assert client.get(base + "/readyz").status_code == 200
    assert client.get(base + "/livez").status_code == 200
    client.post(base + "/predict", json={"rows": [ROW]}, headers=AUTH)
    scraped = client.get(fleet.metrics_url("lightgbm"))
    assert scraped.status_code == 200
    counted = [
        line
        for line in scraped.text.splitlines()
        if line.startswith("bentoml_service_request_total") and 'endpoint="/predict"' in line
    ]
    assert counted, scraped.text[:2000]
    # The metrics port serves metrics only: nothing there scores a wine.
    metrics_base = fleet.metrics_url("lightgbm").removesuffix("/metrics")
    assert client.post(metrics_base + "/predict", json={"rows": [ROW]}, headers=AUTH).status_code in (
        404,
        501,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"rows": "not a list"}, "rows", id="not-a-list"),
        pytest.param({"rows": [["7.4x", *ROW[1:]]]}, "rows[0][0]", id="string"),
        pytest.param({}, "rows", id="missing"),
    ],
)
def test_bentoml_validation_errors_take_the_one_shape(
    fleet: RunnerFleet, client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = client.post(fleet.url("lightgbm") + "/predict", json=body, headers=AUTH)
    assert answer.status_code == 400
    error = _assert_one_shape(answer)
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]


def test_unknown_routes_take_the_one_shape(fleet: RunnerFleet, client: httpx.Client) -> None:
    answer = client.post(fleet.url("lightgbm") + "/no-such-route", json={}, headers=AUTH)
    assert answer.status_code == 404
    assert _assert_one_shape(answer)["code"] == "not_found"


def test_a_row_of_1e300_does_not_score(fleet: RunnerFleet, client: httpx.Client) -> None:
    row = [1e300, *ROW[1:]]
    for answer in (
        client.post(fleet.url("lightgbm") + "/predict", json={"rows": [ROW, row]}, headers=AUTH),
        client.post(
            fleet.url("lightgbm") + "/binary/predict", content=np.array([ROW, row]).tobytes(), headers=AUTH
        ),
        client.post(fleet.url("extra_trees") + "/explain", json={"rows": [row]}, headers=AUTH),
    ):
        assert answer.status_code == 422, answer.text
        error = _assert_one_shape(answer)
        assert error["details"][0]["field"] in ("rows[1][0]", "rows[0][0]")
        assert "fixed_acidity" in error["details"][0]["problem"]


def test_explain_rows_are_capped(fleet: RunnerFleet, client: httpx.Client) -> None:
    answer = client.post(fleet.url("lightgbm") + "/explain", json={"rows": [ROW] * 101}, headers=AUTH)
    assert answer.status_code == 413
    assert "explain_max_rows=100" in _assert_one_shape(answer)["error"]


def test_explain_deadline_stops_the_work(fleet: RunnerFleet, client: httpx.Client) -> None:
    url = fleet.url("extra_trees") + "/explain"
    started = time.monotonic()
    answer = client.post(url, json={"rows": [ROW] * 100}, headers=AUTH)
    took = time.monotonic() - started
    # A forest's TreeSHAP takes tens of ms a row here: 100 rows run past the 2 s deadline.
    assert answer.status_code == 503, answer.text[:300]
    assert _assert_one_shape(answer)["code"] == "deadline_exceeded"
    assert took < EXPLAIN_TIMEOUT + 1.5, took
    # The explainer is free again at once.
    assert client.post(url, json={"rows": [ROW] * 2}, headers=AUTH).status_code == 200


def _latencies(url: str, count: int) -> np.ndarray:
    payload = np.array([ROW]).tobytes()
    out = np.empty(count)
    with httpx.Client(timeout=10, headers=AUTH) as c:
        for i in range(count):
            started = time.perf_counter()
            assert c.post(url, content=payload).status_code == 200
            out[i] = time.perf_counter() - started
    return out


def test_an_explain_flood_gets_429_while_predictions_keep_their_latency(
    fleet: RunnerFleet, client: httpx.Client
) -> None:
    base = fleet.url("extra_trees")
    assert client.post(base + "/explain", json={"rows": [ROW]}, headers=AUTH).status_code == 200
    _latencies(base + "/binary/predict", 50)  # warm
    quiet = _latencies(base + "/binary/predict", 300)

    stop = threading.Event()
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()

    def flood() -> None:
        with httpx.Client(timeout=30, headers=AUTH) as c:
            while not stop.is_set():
                answer = c.post(base + "/explain", json={"rows": [ROW] * 5})
                statuses[answer.status_code] += 1
                if answer.status_code == 429:
                    retry_after.add(answer.headers.get("retry-after", ""))
                    time.sleep(0.01)

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    for t in flooders:
        t.start()
    try:
        time.sleep(0.3)
        busy = _latencies(base + "/binary/predict", 300)
    finally:
        stop.set()
        for t in flooders:
            t.join(timeout=30)
    # The explainer worked all along (answers or deadlines) and refused everything beyond.
    assert statuses[429] > 0 and statuses[200] + statuses[503] > 0, statuses
    assert set(statuses) <= {200, 429, 503}, statuses
    assert retry_after == {str(int(EXPLAIN_TIMEOUT))}, retry_after
    quiet_p99, busy_p99 = np.percentile(quiet, 99), np.percentile(busy, 99)
    # Measured here: p99 1.0-6 ms quiet, 5-6 ms during the flood with the explainer in its own
    # niced process; 83-233 ms when the explanations ran in a thread of the runner. The floor
    # of 15 ms keeps a fast quiet run (1.0 ms since the binary route skips BentoML's stack) from
    # failing on the flood's own cost in this process (four client threads share its GIL).
    assert busy_p99 <= max(5 * quiet_p99, 0.015), (quiet_p99, busy_p99, statuses)


def test_a_ready_runner_explains_at_once(fleet: RunnerFleet, client: httpx.Client) -> None:
    """/readyz turns 200 only once the explainer process is up: the first explanation after it
    is answered, not refused while a model loads."""
    for model in fleet.ports:
        answer = client.post(fleet.url(model) + "/explain", json={"rows": [ROW] * 3}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["contributions"]) == 3
