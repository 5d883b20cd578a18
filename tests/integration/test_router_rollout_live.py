"""Rollouts of a candidate version on real routers, real model versions and a real Redis.

The model store holds three LightGBM versions trained here: the stable one, an equivalent
retrain (another seed, ``--candidate``) and a deliberately bad one (``--candidate`` on the same
wines with their quality labels shuffled).

* Bad rollouts are 422s naming the field, and the rollout in force is kept.
* Both versions are listed (/v1/models, /v2/models/{name}) and reachable by version.
* Stickiness and shares: 10,000 random wines at each step; every wine keeps its version when
  asked again, a wine on the candidate stays on it at the next step, and the share is within
  1.5 points of the step.
* The gate, driven by live traffic of fresh random wines: the bad candidate is rolled back by
  itself, the good one promoted by itself, on two router replicas sharing one Redis that agree
  on every step and decision.
* Under wrk load, a promote and then a roll back: no non-2xx answer and no connection error.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks.load import RANDOM_RANGES, predict_body, wrk
from tests.support.binaries import require_binary
from tests.support.redis import launch_redis
from tests.support.router import RouterHandle, launch_router
from tests.support.runners import runner_fleet
from tests.support.waiting import wait_until
from training.candidates import shuffled_labels, train_version
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "lightgbm"


@pytest.fixture(scope="module")
def versions(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with the stable, a retrained (good) and a shuffled-label (bad) LightGBM version."""
    root = tmp_path_factory.mktemp("rollout-store")
    home = root / "bentoml"
    reports = root / "reports"
    stable = train_version(MODEL, home, data_dir, reports)
    good = train_version(MODEL, home, data_dir, reports, "--candidate", "--seed", "7")
    shuffled = shuffled_labels(data_dir, root / "shuffled")
    bad = train_version(MODEL, home, shuffled, reports, "--candidate", "--seed", "11", "--no-verify")
    assert (home / "models" / MODEL / "latest").read_text().strip() == stable, "a candidate became latest"
    return {"home": home, "stable": stable, "good": good, "bad": bad}


def random_wines(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` fresh random red wines (each measurement drawn within the wrk benchmark's ranges)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        wine: dict[str, Any] = dict(SCHEMA.example())
        for name, (low, high) in RANDOM_RANGES.items():
            wine[name] = round(float(rng.uniform(low, high)), 6)
        out.append(wine)
    return out


def _router(tmp: Path, home: Path, candidate: str, **settings: Any) -> RouterHandle:
    router = launch_router(
        tmp, home, models=[MODEL], default_model=MODEL, candidates={MODEL: {"version": candidate}},
        batch_max_rows=10_000, rollout_interval_seconds=0.5, default_sync_seconds=0.2,
        rate_limit_enabled=False, **settings,
    )  # fmt: skip
    router.wait_ready()
    return router


@pytest.fixture
def routers(tmp_path: Path) -> Iterator[list[RouterHandle]]:
    started: list[RouterHandle] = []
    yield started
    for router in started:
        router.process.stop()


def rollouts(router: RouterHandle) -> dict[str, Any]:
    answer = httpx.get(router.url + "/v1/rollouts", headers=router.headers(), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def admin(router: RouterHandle, method: str, path: str, body: Any) -> httpx.Response:
    return httpx.request(method, router.url + path, json=body, headers=router.headers(admin=True), timeout=10)


def batch_versions(router: RouterHandle, wines: list[dict[str, Any]]) -> list[str]:
    answer = httpx.post(router.url + "/v1/predict/batch", json={"instances": wines}, headers=router.headers(),
                        timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [p.get("model_version", body["model_version"]) for p in body["predictions"]]


def test_bad_rollouts_are_422_naming_the_field(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    router = _router(tmp_path, versions["home"], versions["good"])
    routers.append(router)
    good = {"model": MODEL, "steps": ["shadow", 10, 100], "gate": {"minWinesCompared": 50}}
    assert admin(router, "PUT", "/v1/rollouts", good).status_code == 200
    for body, field in [
        ({"model": "xgboost"}, "model"),
        ({"model": MODEL, "candidateVersion": versions["bad"]}, "candidateVersion"),
        ({"model": MODEL, "steps": [50, 10, 100]}, "steps[1]"),
        ({"model": MODEL, "steps": [10, 50]}, "steps"),
        ({"model": MODEL, "gate": {"minGradeAgreement": 1.5}}, "gate.minGradeAgreement"),
        ({"model": MODEL, "gate": {"maxP99LatencyRatio": 0.5}}, "gate.maxP99LatencyRatio"),
    ]:
        answer = admin(router, "PUT", "/v1/rollouts", body)
        assert answer.status_code == 422, (body, answer.text)
        assert [d["field"] for d in answer.json()["details"]] == [field], answer.text
    kept = rollouts(router)["rollouts"][MODEL]
    assert kept["steps"] == ["shadow", 10, 100] and kept["gate"]["minWinesCompared"] == 50
    assert admin(router, "POST", "/v1/rollouts/promote", {"model": "svr"}).status_code == 422
    assert admin(router, "DELETE", "/v1/rollouts", {"model": "nope"}).status_code == 422
    user = httpx.put(router.url + "/v1/rollouts", json=good, headers=router.headers(), timeout=10)
    assert user.status_code == 403


def test_both_versions_are_listed_and_reachable(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    router = _router(tmp_path, versions["home"], versions["good"])
    routers.append(router)
    wait_until(_versions_ready(router), 60, message="candidate loads")
    listed = _listed(router)
    assert [(v["version"], v["role"]) for v in listed] == [
        (versions["stable"], "stable"),
        (versions["good"], "candidate"),
    ]
    meta = httpx.get(router.url + f"/v2/models/{MODEL}", headers=router.headers(), timeout=10).json()
    assert meta["versions"] == [versions["stable"], versions["good"]]
    row = [list(SCHEMA.encode(SCHEMA.example()))]
    infer = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, len(SCHEMA)], "data": row}]}
    scores = {}
    for version in (versions["stable"], versions["good"]):
        answer = httpx.post(router.url + f"/v2/models/{MODEL}/versions/{version}/infer", json=infer,
                            headers=router.headers(), timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        scores[version] = answer.json()["outputs"][0]["data"][0]
    assert scores[versions["stable"]] != scores[versions["good"]], "two versions, one score: one model served"
    missing = httpx.get(
        router.url + f"/v2/models/{MODEL}/versions/{versions['bad']}", headers=router.headers()
    )
    assert missing.status_code == 404


def _versions_ready(router: RouterHandle) -> Callable[[], bool]:
    return lambda: all(v["status"] == "ready" for v in _listed(router))


def _listed(router: RouterHandle) -> list[dict[str, Any]]:
    models = httpx.get(router.url + "/v1/models", headers=router.headers(), timeout=10).json()["models"]
    return next(m for m in models if m["name"] == MODEL)["versions"]


def test_each_step_is_sticky_and_within_one_and_a_half_points(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    router = _router(tmp_path, versions["home"], versions["good"])
    routers.append(router)
    wait_until(_versions_ready(router), 60, message="candidate loads")
    policy = {"model": MODEL, "steps": ["shadow", 10, 50, 100], "gate": {"minWinesCompared": 10**6}}
    assert admin(router, "PUT", "/v1/rollouts", policy).status_code == 200
    wines = random_wines(10_000, seed=21)
    on_candidate_before = None
    for step in ("shadow", 10, 50, 100):
        assert rollouts(router)["rollouts"][MODEL]["step"] == step
        first = np.array(batch_versions(router, wines)) == versions["good"]
        again = np.array(batch_versions(router, wines[::-1]))[::-1] == versions["good"]
        assert (first == again).all(), f"step {step}: a wine changed version when asked again"
        expected = 0 if step == "shadow" else step
        assert abs(first.mean() * 100 - expected) <= 1.5, (step, first.mean())
        if on_candidate_before is not None:
            assert not (on_candidate_before & ~first).any(), f"step {step}: a wine left the candidate"
        on_candidate_before = first
        one = httpx.post(router.url + "/v1/predict", json={"features": wines[0]}, headers=router.headers())
        assert one.json()["model_version"] == (versions["good"] if first[0] else versions["stable"])
        assert admin(router, "POST", "/v1/rollouts/advance", {"model": MODEL}).status_code == 200
    state = rollouts(router)["rollouts"][MODEL]
    assert state["phase"] == "promoted" and [h["step"] for h in state["history"]] == ["shadow", 10, 50, 100]


def _has_rollout(router: RouterHandle) -> Callable[[], bool]:
    return lambda: rollouts(router)["rollouts"].get(MODEL) is not None


def _all_in_phase(routers: list[RouterHandle], phase: str) -> Callable[[], bool]:
    return lambda: all(rollouts(r)["rollouts"][MODEL]["phase"] == phase for r in routers)


def _drive(routers: list[RouterHandle], until: Callable[[], bool], seed: int, timeout: float = 180) -> None:
    """Send fresh random wines (batches of 40, alternating replicas) until ``until()``."""
    rng = random.Random(seed)
    sent = 0

    def done() -> bool:
        nonlocal sent
        router = routers[sent % len(routers)]
        batch_versions(router, random_wines(40, seed=rng.randrange(2**31)))
        sent += 1
        return bool(until())

    wait_until(done, timeout, interval=0.05, message=lambda: f"{[rollouts(r) for r in routers]}")


GATE = {"minWinesCompared": 300, "maxMeanAbsScoreDifference": 0.3, "minGradeAgreement": 0.75,
        "maxP99LatencyRatio": 20, "maxErrorRate": 0.01}  # fmt: skip


def test_the_gate_rolls_back_a_bad_candidate_and_promotes_a_good_one_on_two_replicas(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    redis = launch_redis(tmp_path)
    try:
        for candidate, outcome in ((versions["bad"], "rolled_back"), (versions["good"], "promoted")):
            pair = [_router(tmp_path, versions["home"], candidate, redis_url=redis.url) for _ in range(2)]
            routers.extend(pair)
            for router in pair:
                wait_until(_versions_ready(router), 60, message="candidate loads")
            policy = {"model": MODEL, "steps": ["shadow", 10, 50, 100], "auto": True, "gate": GATE}
            assert admin(pair[0], "PUT", "/v1/rollouts", policy).status_code == 200
            wait_until(_has_rollout(pair[1]), 10, message="the second replica adopts the rollout")
            _drive(pair, _all_in_phase(pair, outcome), seed=3)
            states = [rollouts(r)["rollouts"][MODEL] for r in pair]
            assert states[0]["history"] == states[1]["history"], "the replicas disagree on the steps taken"
            assert states[0]["epoch"] == states[1]["epoch"]
            last = states[0]["history"][-1]
            print(f"\n{outcome}: stopped at step {last['step']}: {last['reason']}; figures {last['figures']}")
            if outcome == "rolled_back":
                assert last["action"] == "rollback" and last["step"] == "shadow", last
                assert set(batch_versions(pair[1], random_wines(200, seed=3))) == {versions["stable"]}
            else:
                assert [h["action"] for h in states[0]["history"]] == [
                    "advance",
                    "advance",
                    "advance",
                    "promote",
                ]
                assert set(batch_versions(pair[1], random_wines(200, seed=4))) == {versions["good"]}
            for router in pair:
                router.process.stop()
            redis.client().flushall()
    finally:
        redis.stop()


def test_promote_and_roll_back_under_load_fail_no_request(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    require_binary("wrk", "apt-get install wrk (make system-packages)")
    router = _router(tmp_path, versions["home"], versions["good"])
    routers.append(router)
    wait_until(_versions_ready(router), 60, message="candidate loads")
    results: list[Any] = []
    load = threading.Thread(
        target=lambda: results.append(
            wrk(router.url + "/v1/predict", predict_body(MODEL, vary=True), api_key=router.api_key,
                connections=4, seconds=10)
        )
    )  # fmt: skip
    load.start()
    manual = {"model": MODEL, "steps": [10, 50, 100], "gate": {"minWinesCompared": 10**6}}
    actions = [("PUT", "/v1/rollouts", manual), ("POST", "/v1/rollouts/advance", {"model": MODEL}),
               ("POST", "/v1/rollouts/promote", {"model": MODEL}),
               ("DELETE", "/v1/rollouts", {"model": MODEL}),
               ("PUT", "/v1/rollouts", manual), ("POST", "/v1/rollouts/advance", {"model": MODEL}),
               ("POST", "/v1/rollouts/rollback", {"model": MODEL})]  # fmt: skip
    for method, path, body in actions:
        threading.Event().wait(1.0)
        answer = admin(router, method, path, body)
        assert answer.status_code == 200, (path, answer.text)
    load.join(timeout=60)
    assert results, "wrk did not finish"
    result = results[0]
    print(f"\nunder load: {result.requests} requests, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
    assert result.requests > 500
    assert result.errors == 0, "non-2xx answers or connection errors while promoting or rolling back"
    state = rollouts(router)["rollouts"][MODEL]
    assert state["phase"] == "rolled_back" and state["history"][-1]["step"] == 50


def test_a_candidate_in_its_own_runner_holds_the_rollout_when_down_and_costs_no_request(
    versions: dict[str, Any], tmp_path: Path, routers: list[RouterHandle]
) -> None:
    candidate = {"WINEMEUP_RUNNER_VERSION": versions["good"]}
    fleet = runner_fleet(versions["home"], tmp_path / "runners", [MODEL], env=candidate)
    with fleet.start():
        router = launch_router(
            tmp_path, versions["home"], models=[MODEL], default_model=MODEL, rate_limit_enabled=False,
            candidates={MODEL: {"version": versions["good"], "url": fleet.url(MODEL)}},
            rollout_interval_seconds=0.5, health_interval_seconds=0.5,
        )  # fmt: skip
        routers.append(router)
        router.wait_ready()
        wait_until(_versions_ready(router), 60, message="candidate runner probed")
        assert [v["placement"] for v in _listed(router)] == ["inline", "runner"]
        policy = {"model": MODEL, "steps": [50, 100], "auto": True, "gate": {"minWinesCompared": 10**6}}
        assert admin(router, "PUT", "/v1/rollouts", policy).status_code == 200
        served = set(batch_versions(router, random_wines(400, seed=8)))
        assert served == {versions["stable"], versions["good"]}, "at 50 % both versions answer"
        fleet.kill(MODEL)

        def held() -> bool:
            batch_versions(router, random_wines(50, seed=random.randrange(2**31)))  # every answer a 200
            decision = rollouts(router)["rollouts"][MODEL]["decision"] or {}
            return decision.get("action") == "hold" and "candidate" in decision.get("reason", "")

        wait_until(held, 30, interval=0.2, message=lambda: str(rollouts(router)))
        after = batch_versions(router, random_wines(400, seed=9))
        assert set(after) == {versions["stable"]}, "while the candidate is down the stable version answers"
        state = rollouts(router)["rollouts"][MODEL]
        assert state["phase"] == "running" and state["step"] == 50
        print(f"\ncandidate runner down: {state['decision']['reason']}")
