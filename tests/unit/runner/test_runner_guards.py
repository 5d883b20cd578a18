"""The runner's guards, in process: schema ranges on rows, bounded explanations, one error body.

The same guards run over real HTTP against real runner processes in
tests/integration/test_runner_hardening.py (same guards, real processes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from services.runner.binary import BinaryPredictApp
from services.runner.core import ExplainBusyError, ModelServer, OutOfRangeError, check_rows, decode_rows
from services.runner.errors import InvalidRowsError
from services.runner.explainer import ExplainDeadlineError, explain_in_chunks
from services.runner.middleware import (
    TOKEN_HEADER,
    BinaryRouteMiddleware,
    ErrorBodyMiddleware,
    RunnerTokenMiddleware,
    normalise_error,
)
from winemeup.api import ErrorBody
from winemeup.runtimes import ModelInfo
from winemeup.runtimes.base import Explanation
from winemeup.runtimes.sklearn import SklearnRuntime
from winemeup.schema import SCHEMA

ROW = SCHEMA.encode(SCHEMA.example())
TOKEN = "unit-test-runner-token"


def _with(column: str, value: float) -> list[float]:
    row = list(ROW)
    row[SCHEMA.names.index(column)] = value
    return row


@pytest.mark.parametrize(
    ("row", "field", "named"),
    [
        pytest.param(_with("fixed_acidity", 1e300), "rows[0][0]", "fixed_acidity", id="1e300"),
        pytest.param(_with("ph", -3.0), "rows[0][8]", "ph", id="negative-ph"),
        pytest.param(_with("wine_type", 0.5), "rows[0][11]", "wine_type", id="not-a-category-code"),
        pytest.param(
            _with("free_sulfur_dioxide", 200.0), "rows[0][5]", "must not exceed", id="free-above-total"
        ),
    ],
)
def test_rows_outside_the_schema_ranges_are_422_naming_the_field(
    row: list[float], field: str, named: str
) -> None:
    for check in (
        lambda: check_rows([ROW, row], 10),
        lambda: decode_rows(np.array([ROW, row]).tobytes(), 10),
    ):
        with pytest.raises(OutOfRangeError) as info:
            check()
        assert info.value.status == 422
        assert [d.field for d in info.value.details] == [field.replace("[0]", "[1]", 1)]
        assert named in info.value.details[0].problem
    assert check_rows([ROW], 1).tolist() == [ROW]


FIELDS = {name: i for i, name in enumerate(SCHEMA.names)}


@pytest.mark.parametrize("size", [2, 20], ids=["small-batch", "large-batch"])
@pytest.mark.parametrize(
    ("row", "error", "message", "problem"),
    [
        pytest.param(
            _with("ph", float("nan")),
            InvalidRowsError,
            "rows must hold finite numbers",
            ("ph", "must be a finite number"),
            id="nan",
        ),
        pytest.param(
            _with("alcohol", float("inf")),
            InvalidRowsError,
            "rows must hold finite numbers",
            ("alcohol", "must be a finite number"),
            id="inf",
        ),
        pytest.param(
            _with("wine_type", float("nan")),
            InvalidRowsError,
            "rows must hold finite numbers",
            ("wine_type", "must be a finite number"),
            id="nan-category",
        ),
        pytest.param(
            _with("wine_type", 0.5),
            OutOfRangeError,
            "1 invalid field: rows[{r}][11]: wine_type must be one of the codes 0, 1, got 0.5",
            ("wine_type", "wine_type must be one of the codes 0, 1, got 0.5"),
            id="category-0.5",
        ),
        pytest.param(
            _with("free_sulfur_dioxide", 34.5),
            OutOfRangeError,
            "1 invalid field: rows[{r}][5]: free_sulfur_dioxide must not exceed total_sulfur_dioxide "
            "(34.5 > 34)",
            ("free_sulfur_dioxide", "free_sulfur_dioxide must not exceed total_sulfur_dioxide (34.5 > 34)"),
            id="crossed-fields",
        ),
        pytest.param(
            _with("density", 0.9799),
            OutOfRangeError,
            "1 invalid field: rows[{r}][7]: density must be between 0.98 and 1.05 g/cm³, got 0.9799",
            ("density", "density must be between 0.98 and 1.05 g/cm³, got 0.9799"),
            id="just-below-the-range",
        ),
    ],
)
def test_binary_rows_fail_with_the_same_errors_in_small_and_large_batches(
    size: int, row: list[float], error: type[Exception], message: str, problem: tuple[str, str]
) -> None:
    """Valid batches take a fast check (value by value up to 8 rows, array comparisons above);
    any other batch gets the full checks and their errors, whatever its size."""
    last = size - 1
    body = np.array([ROW] * last + [row]).tobytes()
    with pytest.raises(error) as info:
        decode_rows(body, 100)
    column, text = problem
    assert str(info.value) == message.format(r=last)
    assert [(d.field, d.problem) for d in info.value.details] == [  # type: ignore[attr-defined]
        (f"rows[{last}][{FIELDS[column]}]", text)
    ]


@pytest.mark.parametrize("size", [0, 1, 2, 8, 9, 64])
def test_valid_binary_rows_pass_at_every_batch_size(size: int) -> None:
    """Values on the range bounds, -0.0 as a category code and equal crossed fields are valid."""
    edges = [
        ROW,
        _with("ph", 2.5),
        _with("ph", 4.5),
        _with("wine_type", -0.0),
        _with("wine_type", 0.0),
        _with("free_sulfur_dioxide", 34.0),
        _with("citric_acid", 0.0),
    ]
    rows = np.array([edges[i % len(edges)] for i in range(size)]).reshape(size, len(SCHEMA))
    decoded = decode_rows(rows.tobytes(), 100)
    assert decoded.shape == (size, len(SCHEMA)) and decoded.tobytes() == rows.tobytes()
    assert check_rows(rows.tolist(), 100).tobytes() == rows.tobytes()


def test_many_bad_values_are_named_up_to_ten() -> None:
    with pytest.raises(OutOfRangeError) as info:
        check_rows([_with("alcohol", 99.0)] * 50, 50)
    assert len(info.value.details) == 10
    assert "10 invalid fields" in info.value.message


class SlowRuntime(SklearnRuntime):
    """A real forest runtime whose explanations take ``seconds_per_row`` (a costly model)."""

    seconds_per_row = 0.02
    calls = 0

    def _explain(self, rows: np.ndarray) -> Explanation:
        type(self).calls += 1
        time.sleep(self.seconds_per_row * len(rows))
        return Explanation(
            "test", np.zeros(len(rows)), np.zeros((len(rows), len(SCHEMA))), self.predict(rows)
        )


@pytest.fixture(scope="module")
def slow_runtime() -> SlowRuntime:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(100, len(SCHEMA)))
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, x[:, 10])
    info = ModelInfo(name="random_forest", version="v1", framework="sklearn", labels={}, metadata={})
    return SlowRuntime(forest, info)


def test_explain_stops_at_its_deadline_between_chunks(slow_runtime: SlowRuntime) -> None:
    matrix = np.array([ROW] * 100)
    started = time.monotonic()
    with pytest.raises(ExplainDeadlineError, match=r"stopped after \d+ of 100 rows") as info:
        explain_in_chunks(slow_runtime, matrix, timeout=0.3)
    took = time.monotonic() - started
    # 100 rows would take 2 s; the work stopped within a chunk (~50 ms) of its 0.3 s deadline.
    assert 0.3 <= took < 0.3 + 0.5, took
    assert info.value.status == 503
    whole = explain_in_chunks(slow_runtime, matrix[:5], timeout=5)
    assert whole.contributions.shape == (5, len(SCHEMA)) and len(whole.scores) == 5


def test_explain_stops_when_cancelled(slow_runtime: SlowRuntime) -> None:
    cancelled = threading.Event()
    threading.Timer(0.1, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(ExplainDeadlineError):
        explain_in_chunks(slow_runtime, np.array([ROW] * 100), timeout=10, cancelled=cancelled.is_set)
    assert time.monotonic() - started < 1.0


def test_explanations_in_flight_are_bounded_and_rows_capped(slow_runtime: SlowRuntime) -> None:
    server = ModelServer(
        "random_forest",
        lambda: slow_runtime,
        batch_max_rows=1000,
        explain_max_rows=50,
        explain_timeout_seconds=3,
    )
    server.load()
    with pytest.raises(Exception, match="explain_max_rows=50") as too_many:
        server.explain([ROW] * 51)
    assert getattr(too_many.value, "status", None) == 413
    first = threading.Thread(target=server.explain, args=([ROW] * 40,))
    first.start()
    deadline = time.monotonic() + 5
    while not server.explain_busy and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(ExplainBusyError) as busy:
        server.explain([ROW])
    first.join()
    assert busy.value.status == 429
    assert (b"retry-after", b"3") in busy.value.headers()
    # The slot is back once the first explanation is done; predictions never waited for it.
    assert len(server.explain([ROW])["scores"]) == 1


@pytest.mark.parametrize(
    ("status", "body", "code", "fields"),
    [
        pytest.param(
            400,
            b'{"error": "1 validation error for Input", "detail": [{"type": "float_type", '
            b'"loc": ["rows", 0, 3], "msg": "Input should be a valid number", '
            b'"url": "https://errors.pydantic.dev/2/v/float_type"}]}',
            "validation_error",
            ["rows[0][3]"],
            id="pydantic",
        ),
        pytest.param(400, b'[{"error": "bad input"}]', "malformed_request", [], id="list-wrapped"),
        pytest.param(404, b"Not Found", "not_found", [], id="plain-text"),
        pytest.param(500, b'{"error": "Traceback at /srv/x.py"}', "internal_error", [], id="500"),
        pytest.param(
            422,
            b'{"error": "x", "code": "validation_error", "details": []}',
            "validation_error",
            [],
            id="ours",
        ),
    ],
)
def test_every_error_body_takes_the_one_shape(status: int, body: bytes, code: str, fields: list[str]) -> None:
    doc = normalise_error(status, body)
    assert ErrorBody.model_validate(doc).code == code
    assert [d["field"] for d in doc["details"]] == fields
    assert "pydantic.dev" not in str(doc) and "/srv/" not in str(doc)


def _app() -> Any:
    async def predict(request: Request) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["rows"], "msg": "Field required"}]}, status_code=400)

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("/srv/secret/path")

    async def readyz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("\n")

    routes = [Route("/predict", predict, methods=["POST"]), Route("/boom", boom), Route("/readyz", readyz)]
    inner = RunnerTokenMiddleware(Starlette(routes=routes), token=TOKEN)
    return ErrorBodyMiddleware(inner)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param([], "missing", id="missing"),
        pytest.param([(TOKEN_HEADER, "not-the-token-at-all")], "not the runner's token", id="wrong"),
        pytest.param([(TOKEN_HEADER, TOKEN), (TOKEN_HEADER, TOKEN)], "given twice", id="twice"),
    ],
)
def test_calls_without_the_token_get_401_in_the_one_shape(
    headers: list[tuple[str, str]], reason: str
) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_app()), base_url="http://runner"
        ) as c:
            answer = await c.post("/predict", headers=headers)
            assert answer.status_code == 401
            assert answer.json()["code"] == "unauthenticated" and reason in answer.json()["error"]
            assert (await c.get("/readyz")).status_code == 200  # probes need no token

    asyncio.run(scenario())


def test_errors_behind_the_token_are_rewritten() -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        headers = {TOKEN_HEADER: TOKEN}
        async with httpx.AsyncClient(transport=transport, base_url="http://runner", headers=headers) as c:
            invalid = await c.post("/predict")
            assert invalid.status_code == 400
            assert invalid.json() == {
                "error": "1 invalid field: rows: Field required",
                "code": "validation_error",
                "details": [{"field": "rows", "problem": "Field required"}],
            }
            crashed = await c.get("/boom")
            assert crashed.status_code == 500 and crashed.json()["code"] == "internal_error"
            assert "/srv/" not in crashed.text
            missing = await c.get("/nope")
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    asyncio.run(scenario())


class BrokenRuntime(SklearnRuntime):
    """A real linear runtime that fails on rows whose fixed acidity is 19.5 (a model bug)."""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if (rows[:, 0] == 19.5).any():
            raise ValueError("/srv/secret/path: model exploded")
        return super().predict(rows)


class RecordedMetrics:
    """Keeps what BinaryRouteMiddleware counts (the Prometheus ones run in the integration tests)."""

    def __init__(self) -> None:
        self.answers: list[int] = []

    def observe(self, status: int, seconds: float) -> None:
        assert 0 <= seconds < 5
        self.answers.append(status)


def test_binary_route_is_answered_ahead_of_the_stack_with_its_guards() -> None:
    """The token, the one error shape (500 included) and the count, without the wrapped app."""
    x = np.random.default_rng(0).uniform(0, 1, size=(50, len(SCHEMA)))
    info = ModelInfo(name="svr", version="v7", framework="sklearn", labels={}, metadata={})
    server = ModelServer("svr", lambda: BrokenRuntime(LinearRegression().fit(x, x[:, 10]), info), 100)
    server.load()
    binary = BinaryPredictApp(max_body_bytes=100 * len(SCHEMA) * 8)
    binary.server = server
    metrics = RecordedMetrics()
    app: Any = BinaryRouteMiddleware(_app(), binary.answer, token=TOKEN, metrics=metrics)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner") as c:
            auth = {TOKEN_HEADER: TOKEN}
            scored = await c.post("/binary/predict", content=np.array([ROW, ROW]).tobytes(), headers=auth)
            assert scored.status_code == 200 and scored.headers["x-model-version"] == "v7"
            assert len(np.frombuffer(scored.content, dtype="<f8")) == 2
            refused = await c.post("/binary/predict", content=np.array([ROW]).tobytes())
            assert refused.status_code == 401 and refused.json()["details"] == [
                {"field": TOKEN_HEADER, "problem": "missing"}
            ]
            crashed = await c.post(
                "/binary/predict", content=np.array([_with("fixed_acidity", 19.5)]).tobytes(), headers=auth
            )
            assert crashed.status_code == 500
            assert ErrorBody.model_validate(crashed.json()).code == "internal_error"
            assert "/srv/" not in crashed.text
            # Every other request goes through the wrapped app, its guards and its error shape.
            assert (await c.post("/predict")).status_code == 401
            assert (await c.post("/predict", headers=auth)).json()["code"] == "validation_error"
            assert (await c.get("/readyz")).status_code == 200

    asyncio.run(scenario())
    assert metrics.answers == [200, 401, 500]
