"""One client must never take a model away from the others: limits of a real router, real runners.

* ``/v2`` rows reach the drift window (both protocols go through one data plane).
* Oversized ``/v2`` requests, refused by the router or by the runner, never mark the model
  down: another client predicting on the same model at the same time sees no error.
* Explanations are bounded: a row cap (422 naming ``explain_max_rows``) and a bound in flight
  per model (429 with ``Retry-After``); predictions keep their latency meanwhile.
* Every 5xx body is generic (no host, port, path or upstream body) and carries no more than
  the request id, which the router's log line with the details carries too.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.runner.fleet import RunnerFleet
from tests.support.router import RouterHandle
from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()
RUNNER_MAX_ROWS = 100
ROUTER_MAX_ROWS = 300
EXPLAIN_MAX_ROWS = 5
RUNNER_TOKEN = "runner-token-of-the-limits-tests-0123"
"""The runners require it: every prediction below proves the router sends it."""
_LEAKS = re.compile(r"127\.0\.0\.1|localhost|https?://|:\d{4,5}\b|/tmp/|/home/|/work/|Traceback")


def fresh_wine(i: int) -> dict[str, Any]:
    """A wine no earlier request sent (so it misses the cache): alcohol varies in tiny steps."""
    return {**EXAMPLE, "alcohol": round(9.0 + (i % 40_000) * 1e-4, 6), "ph": 3.0 + (i // 40_000) * 0.01}


def matrix_request(rows: int, offset: int = 0) -> dict[str, Any]:
    """A V2 infer body of ``rows`` wines in the matrix layout (JSON tensor data)."""
    data = [v for i in range(rows) for v in SCHEMA.encode(fresh_wine(offset + i))]
    return {"inputs": [{"name": "features", "datatype": "FP64", "shape": [rows, len(SCHEMA)], "data": data}]}


EXPLAIN_FLOOD = """
import json, sys, threading, time
import httpx
url, key = sys.argv[1], sys.argv[2]
stop, statuses, retry_after, told = threading.Event(), [], [], threading.Event()
features = json.loads(sys.argv[3])
def worker(w):
    with httpx.Client(headers={"X-API-Key": key}, timeout=60) as client:
        i = 0
        while not stop.is_set():
            wine = {**features, "alcohol": 10.0 + (w * 10_000 + i) * 1e-4}
            answer = client.post(url + "/v1/explain", json={"features": wine, "model": "svr"})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                retry_after.append(answer.headers.get("retry-after", ""))
                if statuses.count(429) >= 4 and not told.is_set():
                    told.set()
                    print("refusing", flush=True)
                time.sleep(0.01)
            i += 1
threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
for t in threads:
    t.start()
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
if not told.is_set():
    print("no refusal", flush=True)
print(json.dumps([statuses, retry_after]))
"""
"""Four clients explaining fresh wines with svr until stdin closes; says "refusing" once it saw
429s, and prints the statuses and Retry-After values it got at the end."""


def assert_generic(status: int, body: str) -> None:
    assert status < 500 or not _LEAKS.search(body), f"a {status} body leaks internals: {body}"


@pytest.fixture(scope="module")
def fleet(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFleet]:
    from tests.support.runners import runner_fleet

    fleet = runner_fleet(
        model_store,
        tmp_path_factory.mktemp("limits-runners"),
        ["svr"],
        {"WINEMEUP_RUNNER_BATCH_MAX_ROWS": str(RUNNER_MAX_ROWS)},
        token=RUNNER_TOKEN,
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def limited(
    fleet: RunnerFleet,
    model_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    router_launcher: Callable[..., RouterHandle],
) -> Iterator[RouterHandle]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-limits"),
        model_store,
        models=["lightgbm", "svr"],
        default_model="lightgbm",
        placements={"svr": "runner"},
        runner_urls={"svr": fleet.urls["svr"]},
        runner_token=RUNNER_TOKEN,
        batch_max_rows=ROUTER_MAX_ROWS,
        explain_max_rows=EXPLAIN_MAX_ROWS,
        explain_max_inflight=1,
        drift_interval_seconds=0.2,
        rate_limit_enabled=False,
    )
    try:
        handle.wait_ready()
        wait_until(
            lambda: all(m["status"] == "ready" for m in models(handle)),
            60,
            message=lambda: handle.process.log_tail(),
        )
        yield handle
    finally:
        handle.process.stop()


def models(handle: RouterHandle) -> list[dict[str, Any]]:
    answer = httpx.get(handle.url + "/v1/models", headers=handle.headers())
    entries: list[dict[str, Any]] = answer.json()["models"]
    return entries


def test_v2_rows_reach_the_drift_window(limited: RouterHandle) -> None:
    def drift() -> dict[str, Any]:
        report: dict[str, Any] = httpx.get(limited.url + "/v1/drift", headers=limited.headers()).json()
        return report

    wait_until(lambda: drift()["enabled"], 30, message=lambda: str(drift()))
    before = sum(t["rows"] for t in drift()["types"])
    answer = httpx.post(
        limited.url + "/v2/models/lightgbm/infer", json=matrix_request(7, 500_000), headers=limited.headers()
    )
    assert answer.status_code == 200, answer.text
    wait_until(
        lambda: sum(t["rows"] for t in drift()["types"]) == before + 7, 10, message=lambda: str(drift())
    )


def test_oversized_v2_requests_never_take_the_model_from_another_client(limited: RouterHandle) -> None:
    stop = threading.Event()
    abuser_statuses: list[int] = []
    good_statuses: list[int] = []

    def abuse() -> None:
        with httpx.Client(headers=limited.headers(), timeout=10) as client:
            i = 0
            while not stop.is_set():
                rows = ROUTER_MAX_ROWS + 1 if i % 2 else RUNNER_MAX_ROWS + 50  # router's 422, runner's 413
                answer = client.post(
                    limited.url + "/v2/models/svr/infer", json=matrix_request(rows, i * 1000)
                )
                abuser_statuses.append(answer.status_code)
                assert_generic(answer.status_code, answer.text)
                i += 1

    def predict() -> None:
        with httpx.Client(headers=limited.headers(), timeout=10) as client:
            i = 100_000
            while not stop.is_set():
                answer = client.post(
                    limited.url + "/v1/predict", json={"features": fresh_wine(i), "model": "svr"}
                )
                good_statuses.append(answer.status_code)
                i += 1

    threads = [threading.Thread(target=abuse), threading.Thread(target=predict)]
    for thread in threads:
        thread.start()
    time.sleep(4.0)  # the load's duration, not an ordering of events
    stop.set()
    for thread in threads:
        thread.join(15)
    assert {422, 413} <= set(abuser_statuses) <= {422, 413}, sorted(set(abuser_statuses))
    assert len(good_statuses) > 20 and set(good_statuses) == {200}, sorted(set(good_statuses))
    assert next(m for m in models(limited) if m["name"] == "svr")["status"] == "ready"


def test_oversized_v2_names_the_limit(limited: RouterHandle) -> None:
    answer = httpx.post(
        limited.url + "/v2/models/svr/infer",
        json=matrix_request(ROUTER_MAX_ROWS + 1),
        headers=limited.headers(),
    )
    assert answer.status_code == 422
    assert "batch_max_rows" in answer.json()["error"]


def test_explanations_are_capped_and_bounded_while_predictions_keep_their_latency(
    limited: RouterHandle,
) -> None:
    url = limited.url
    too_many = {"instances": [fresh_wine(200_000 + i) for i in range(EXPLAIN_MAX_ROWS + 1)], "model": "svr"}
    capped = httpx.post(url + "/v1/explain/batch", json=too_many, headers=limited.headers())
    assert capped.status_code == 422 and "explain_max_rows" in capped.text

    def predict_latencies(count: int, offset: int) -> list[float]:
        seconds = []
        with httpx.Client(headers=limited.headers(), timeout=10) as client:
            for i in range(count):
                started = time.perf_counter()
                answer = client.post(url + "/v1/predict", json={"features": fresh_wine(offset + i)})
                seconds.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
        return seconds

    alone = statistics.median(predict_latencies(200, 300_000))
    # The flood runs in a process of its own, so its client threads do not slow this one's.
    flood = subprocess.Popen(
        [sys.executable, "-c", EXPLAIN_FLOOD, url, limited.api_key, json.dumps(EXAMPLE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdin is not None and flood.stdout is not None
    try:
        assert flood.stdout.readline().strip() == "refusing", "the flood saw no 429"
        during = statistics.median(predict_latencies(200, 310_000))
    finally:
        summary, _ = flood.communicate(timeout=90)  # closing stdin stops the flood
    statuses, retry_after = json.loads(summary)
    print(f"median predict {alone * 1e3:.2f} ms alone, {during * 1e3:.2f} ms during the explain flood")
    assert 200 in statuses and statuses.count(429) >= 4, sorted(set(statuses))
    assert set(statuses) <= {200, 429}
    assert all(value.isdigit() and int(value) >= 1 for value in retry_after)
    # Refused explanations cost the router next to nothing: predictions keep their latency
    # (a ratio of medians measured the same way, on a machine shared with other work).
    assert during < alone * 3, (
        f"median predict {during * 1e3:.2f} ms during the flood, {alone * 1e3:.2f} ms alone"
    )


def test_5xx_bodies_are_generic_and_the_log_has_the_details(
    limited: RouterHandle, fleet: RunnerFleet
) -> None:
    fleet.kill("svr")
    try:
        wait_until(lambda: next(m for m in models(limited) if m["name"] == "svr")["status"] != "ready", 15)
        calls = [
            ("POST", "/v1/predict", {"features": fresh_wine(900_000), "model": "svr"}),
            ("POST", "/v1/predict/batch", {"instances": [fresh_wine(900_001)], "model": "svr"}),
            ("POST", "/v1/explain", {"features": fresh_wine(900_002), "model": "svr"}),
            ("POST", "/v2/models/svr/infer", matrix_request(2, 900_003)),
            ("GET", "/v2/models/svr/ready", None),
            ("GET", "/v2/models/svr", None),
        ]
        for method, path, body in calls:
            answer = httpx.request(
                method,
                limited.url + path,
                json=body,
                headers={**limited.headers(), "X-Request-ID": f"probe-{path}"},
            )
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert_generic(answer.status_code, answer.text)
            assert answer.headers["x-request-id"] == f"probe-{path}"
        listed = next(m for m in models(limited) if m["name"] == "svr")
        assert not _LEAKS.search(listed.get("reason", "")), listed
        wait_until(lambda: "probe-/v1/predict" in limited.process.log_tail(200), 5)
    finally:
        fleet.restart("svr")
    wait_until(lambda: next(m for m in models(limited) if m["name"] == "svr")["status"] == "ready", 30)


def test_request_ids_and_one_key_header(limited: RouterHandle) -> None:
    answer = httpx.get(limited.url + "/v1/features", headers=limited.headers())
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
    twice = httpx.get(
        limited.url + "/v1/features",
        headers=[("X-API-Key", limited.api_key), ("X-API-Key", limited.api_key)],
    )
    assert twice.status_code == 400 and "X-API-Key" in twice.json()["error"]
    swap = httpx.put(
        limited.url + "/v1/models/default", json={"model": "lightgbm"}, headers=limited.headers(True)
    )
    assert swap.status_code == 200
    log = limited.process.log_tail(200)
    assert "admin PUT /v1/models/default by key:" in log
    assert limited.admin_key not in log
