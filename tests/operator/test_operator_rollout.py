"""The operator drives a WineModel's rollout through a REAL router serving a REAL candidate.

The model store holds the stable LightGBM version (copied from the session's store) and a
candidate retrained here (``python -m training train lightgbm --fast --candidate --seed 7``).
One real router serves both (``candidates`` setting, the candidate loaded inline) and runs the
rollout and its gate on live traffic of fresh random wines; the operator's passes
(``kube.Operator.run_pass``) apply ``spec.rollout`` with ``PUT /v1/rollouts`` and copy the
router's step, phase and the gate's decision into the WineModel's status.

What is NOT real: the Kubernetes API server (the FAKE in-memory ``FakeCluster`` of
``test_operator_with_router``, as there).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.operator.kube import Operator
from services.operator.release import ReleaseContext
from services.operator.resources import WINEMODELS, WINETRAFFICS
from services.operator.rollout import in_force, rollout_outcome, rollout_request
from services.operator.status import condition
from services.operator.traffic import RouterAdmin
from tests.chart.chart_render import helm_template, parse
from tests.operator.test_operator_with_router import FakeCluster
from tests.support.router import RouterHandle, launch_router
from tests.support.waiting import wait_until
from training.candidates import train_version
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "lightgbm"
CHART = Path(__file__).resolve().parents[2] / "charts" / "winemeup"
# Loose thresholds: this test is about the operator, not the gate (tests/integration covers it).
GATE = {"minWinesCompared": 80, "maxMeanAbsScoreDifference": 0.6, "minGradeAgreement": 0.5,
        "maxP99LatencyRatio": 50, "maxErrorRate": 0.05}  # fmt: skip


@pytest.fixture(scope="module")
def store(model_store: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A BentoML home with the stable LightGBM and a candidate retrained with another seed."""
    root = tmp_path_factory.mktemp("operator-rollout")
    home = root / "bentoml"
    shutil.copytree(model_store / "models" / MODEL, home / "models" / MODEL, symlinks=True)
    stable = (home / "models" / MODEL / "latest").read_text().strip()
    candidate = train_version(MODEL, home, data_dir, root / "reports", "--candidate", "--seed", "7")
    assert candidate != stable
    assert (home / "models" / MODEL / "latest").read_text().strip() == stable
    return {"home": home, "stable": stable, "candidate": candidate, "root": root}


@pytest.fixture(scope="module")
def router(store: dict[str, Any]) -> Iterator[RouterHandle]:
    handle = launch_router(
        store["root"], store["home"], models=[MODEL], default_model=MODEL,
        candidates={MODEL: {"version": store["candidate"]}}, rollout_interval_seconds=0.3,
        batch_max_rows=1000, rate_limit_enabled=False,
    )  # fmt: skip
    try:
        handle.wait_ready()

        def both_ready() -> bool:
            models = httpx.get(handle.url + "/v1/models", headers=handle.headers(), timeout=10).json()
            versions = next(m for m in models["models"] if m["name"] == MODEL).get("versions") or []
            return len(versions) == 2 and all(v["status"] == "ready" for v in versions)

        wait_until(both_ready, 60, interval=0.2, message=handle.process.log_tail)
        yield handle
    finally:
        handle.process.stop()


class CountingAdmin(RouterAdmin):
    """The real RouterAdmin, counting its PUT /v1/rollouts (a pass must not restart a rollout)."""

    puts: int = 0

    def put_rollout(self, base_url: str, body: Any) -> tuple[int | None, str]:
        self.puts += 1
        return super().put_rollout(base_url, body)


def _operator(router: RouterHandle, spec: dict[str, Any]) -> tuple[Operator, FakeCluster, CountingAdmin]:
    docs = parse(helm_template("-f", str(CHART / "ci" / "operator-values.yaml")))
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    release = ReleaseContext.model_validate_json(config["data"]["release.json"])
    release = release.model_copy(update={"router_url": router.url})
    rendered = next(d for d in docs if d["kind"] == "WineModel" and d["metadata"]["name"] == MODEL)
    wm = dict(rendered, metadata=rendered["metadata"] | {"generation": 1, "uid": "uid-lgbm"})
    wm["spec"] = {**rendered["spec"], **spec}
    # xgboost asks for a candidate the router does not serve.
    other = dict(wm, metadata=wm["metadata"] | {"name": "xgboost", "uid": "uid-xgb"}, spec=dict(wm["spec"]))
    other["spec"].pop("image", None)
    cluster = FakeCluster("winemeup", {WINEMODELS: [wm, other], WINETRAFFICS: []}, [router.url])
    admin = CountingAdmin(router.admin_key)
    return Operator(cluster, release, admin), cluster, admin  # type: ignore[arg-type]


def _status(cluster: FakeCluster, name: str = MODEL) -> dict[str, Any]:
    return next(w["status"] for w in cluster.items[WINEMODELS] if w["metadata"]["name"] == name)


def _set_spec(cluster: FakeCluster, **spec: Any) -> None:
    wm = next(w for w in cluster.items[WINEMODELS] if w["metadata"]["name"] == MODEL)
    wm["spec"] = {**wm["spec"], **spec}
    wm["metadata"]["generation"] += 1


def _wines(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` fresh random wines around the schema's example (every one unseen by the cache)."""
    out = []
    for _ in range(n):
        wine = dict(SCHEMA.example())
        for name in ("alcohol", "volatile_acidity", "sulphates", "residual_sugar", "total_sulfur_dioxide"):
            wine[name] = round(float(wine[name]) * rng.uniform(0.7, 1.3), 6)
        out.append(wine)
    return out


def _send(router: RouterHandle, rng: random.Random) -> None:
    answer = httpx.post(
        router.url + "/v1/predict/batch",
        json={"instances": _wines(40, rng)},
        headers=router.headers(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def test_pure_rollout_request_in_force_and_outcome() -> None:
    spec = {"candidate": {"version": "v2", "image": "x"}, "rollout": {"steps": ["shadow", 100], "gate": GATE}}
    request = rollout_request(MODEL, spec)
    assert request == {"model": MODEL, "auto": False, "candidateVersion": "v2", "steps": ["shadow", 100],
                       "gate": GATE}  # fmt: skip
    entry = {"candidateVersion": "v2", "steps": ["shadow", 100], "auto": False, "gate": {**GATE, "extra": 1}}
    assert in_force(request, entry)
    assert not in_force(request, None)
    assert not in_force(request, entry | {"auto": True})
    assert not in_force(request, entry | {"candidateVersion": "v3"})
    assert not in_force(request, entry | {"gate": {**GATE, "minWinesCompared": 81}})
    decision = {"action": "rollback", "reason": "meanAbsScoreDifference 0.43 vs 0.3"}
    rolled_back = {"phase": "rolled_back", "step": "shadow", "candidatePercent": 0, "candidateVersion": "v2",
                   "decision": decision}  # fmt: skip
    cond, status = rollout_outcome(rolled_back)
    assert (cond.status, cond.reason) == ("False", "RolledBack")
    assert "meanAbsScoreDifference 0.43" in cond.message and status["decision"] == "rollback"


def test_the_operator_applies_reports_and_never_restarts_a_rollout(
    router: RouterHandle, store: dict[str, Any]
) -> None:
    rng = random.Random(17)
    candidate = {"version": store["candidate"], "image": "winemeup-runner-lightgbm:candidate"}
    spec = {"candidate": candidate, "rollout": {"steps": ["shadow", 50, 100], "auto": False, "gate": GATE}}
    operator, cluster, admin = _operator(router, spec)

    # Pass 1: the rollout is applied at its first step; the candidate the router doesn't serve
    # (xgboost) is reported, not sent.
    operator.run_pass()
    status = _status(cluster)
    rollout = condition(status, "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("True", "Running"), rollout["message"]
    assert (
        status["rollout"]["step"] == "shadow" and status["rollout"]["candidateVersion"] == store["candidate"]
    )
    assert sorted(status["servedVersions"]) == sorted([store["stable"], store["candidate"]])
    assert admin.puts == 1
    other = condition(_status(cluster, "xgboost"), "Rollout")
    assert (other["status"], other["reason"]) == ("False", "CandidateNotServed")

    # auto false: the gate decides (hold until enough wines, then advance, with its figures) but
    # nobody acts; the passes send nothing.
    def decided() -> bool:
        _send(router, rng)
        operator.run_pass()
        return _status(cluster)["rollout"]["decision"] not in ("none", "hold")

    wait_until(decided, 120, interval=0.05, message=lambda: str(_status(cluster).get("rollout")))
    status = _status(cluster)
    assert status["rollout"]["decision"] == "advance", status["rollout"]
    assert status["rollout"]["step"] == "shadow" and status["rollout"]["figures"]["winesCompared"] >= 80
    assert admin.puts == 1, "a pass restarted the rollout in force"

    # An admin rolls it back: the operator reports it (False, RolledBack) and does not restart it.
    back = httpx.post(
        router.url + "/v1/rollouts/rollback", json={"model": MODEL}, headers=router.headers(admin=True)
    )
    assert back.status_code == 200, back.text
    operator.run_pass()
    rollout = condition(_status(cluster), "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("False", "RolledBack")
    assert admin.puts == 1

    # A changed spec (auto) is a new rollout: applied once, then the gate promotes by itself.
    _set_spec(cluster, rollout={**spec["rollout"], "auto": True})

    def promoted() -> bool:
        _send(router, rng)
        operator.run_pass()
        return _status(cluster)["rollout"]["phase"] == "promoted"

    wait_until(promoted, 180, interval=0.05, message=lambda: str(_status(cluster).get("rollout")))
    assert admin.puts == 2
    rollout = condition(_status(cluster), "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("True", "Promoted"), rollout["message"]
    history = httpx.get(router.url + "/v1/rollouts", headers=router.headers()).json()["rollouts"][MODEL][
        "history"
    ]
    assert [h["step"] for h in history] == ["shadow", 50, 100]

    # A version the router does not serve: refused with the router's 422 naming the field; the
    # router keeps the promoted rollout.
    _set_spec(cluster, candidate={**candidate, "version": "not-served"})
    operator.run_pass()
    rollout = condition(_status(cluster), "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("False", "RouterRefused")
    assert "candidateVersion" in rollout["message"] and "not-served" in rollout["message"]
    after = httpx.get(router.url + "/v1/rollouts", headers=router.headers()).json()["rollouts"][MODEL]
    assert after["phase"] == "promoted" and [h["step"] for h in after["history"]] == ["shadow", 50, 100]
