"""WineTraffic acceptance and the Lease decision: pure functions, table tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.operator.lease import LeaseAction, decide, lease_spec
from services.operator.resources import FAMILIES, WINEMODEL_NAMES, model_of
from services.operator.traffic import ReplicaView, accept, convergence, policy_document
from winemeup.runtimes import MODEL_NAMES

READY = {"lightgbm", "xgboost", "catboost"}


def test_the_operator_knows_the_seven_families_the_runtimes_serve() -> None:
    assert FAMILIES == MODEL_NAMES
    assert [model_of(n) for n in WINEMODEL_NAMES] == list(MODEL_NAMES)
    assert model_of("random_forest") is None and model_of("gpt") is None


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 5}}},
            "spec.splits.lightgbm: weights add up to 95, not 100",
        ),
        (
            {"splits": {"lightgbm": {"lightgbm": 90, "xgbost": 10}}},
            "spec.splits.lightgbm.xgbost: 'xgbost' is not a model family",
        ),
        (
            {"splits": {"lightgbm": {"lightgbm": 90, "svr": 10}}},
            "spec.splits.lightgbm.svr: model svr is not Ready",
        ),
        ({"default": "svr"}, "spec.default: model svr is not Ready"),
        (
            {"shadows": {"lightgbm": {"target": "catboost", "fraction": 1.5}}},
            "spec.shadows.lightgbm.fraction: must be 0..1",
        ),
        ({"shadows": {"lightgbm": {"target": "lightgbm", "fraction": 0.1}}}, "a model cannot shadow itself"),
        (
            {"splits": {"lightgbm": {"lightgbm": -10, "xgboost": 110}}},
            "spec.splits.lightgbm.lightgbm: weight must be a number >= 0",
        ),
    ],
)
def test_a_bad_winetraffic_is_not_accepted_and_says_why(spec, problem) -> None:
    accepted = accept(spec, READY)
    assert (accepted.status, accepted.reason) == ("False", "Invalid")
    assert problem in accepted.message
    assert "the router keeps its current policy" in accepted.message


def test_a_good_winetraffic_is_accepted_and_becomes_one_put_body() -> None:
    spec = {
        "default": "lightgbm",
        "splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}},
        "shadows": {"lightgbm": {"target": "catboost", "fraction": 0.1}},
    }
    assert accept(spec, READY).status == "True"
    assert policy_document(spec) == {
        "splits": {"lightgbm": {"lightgbm": 90.0, "xgboost": 10.0}},
        "shadows": {"lightgbm": {"target": "catboost", "fraction": 0.1}},
    }
    # Sections left out are cleared, not kept: the WineTraffic is the whole policy.
    assert policy_document({"default": "xgboost"}) == {"splits": {}, "shadows": {}}


def test_convergence_needs_every_replica() -> None:
    spec = {"default": "lightgbm", "splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}}}
    doc = policy_document(spec)
    good = ReplicaView("http://10.0.0.1:8000", doc | {"served_rows": {}}, "lightgbm")
    stale = ReplicaView("http://10.0.0.2:8000", {"splits": {}, "shadows": {}}, "lightgbm")
    down = ReplicaView("http://10.0.0.3:8000", error="ConnectError: refused")
    cond, replicas = convergence(spec, [good])
    assert (cond.status, cond.reason) == ("True", "AllReplicas")
    cond, replicas = convergence(spec, [good, stale, down])
    assert (cond.status, cond.reason) == ("False", "ReplicasDiffer")
    assert "2 of 3" in cond.message and "10.0.0.2" in cond.message and "refused" in cond.message
    assert [r["converged"] for r in replicas] == [True, False, False]
    assert convergence(spec, [])[0].status == "Unknown"


T0 = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "now", "action"),
    [
        (None, T0, LeaseAction.CREATE),
        (
            {"holderIdentity": "op-a", "renewTime": T0, "leaseDurationSeconds": 15},
            T0 + timedelta(seconds=5),
            LeaseAction.RENEW,
        ),
        (
            {"holderIdentity": "op-b", "renewTime": T0, "leaseDurationSeconds": 15},
            T0 + timedelta(seconds=14),
            LeaseAction.WAIT,
        ),
        (
            {"holderIdentity": "op-b", "renewTime": T0, "leaseDurationSeconds": 15},
            T0 + timedelta(seconds=16),
            LeaseAction.TAKE_OVER,
        ),
        ({"holderIdentity": None, "renewTime": None, "leaseDurationSeconds": 15}, T0, LeaseAction.TAKE_OVER),
    ],
)
def test_lease_decision(spec, now, action) -> None:
    assert decide(spec, "op-a", now) is action


def test_a_take_over_counts_a_transition() -> None:
    old = {"holderIdentity": "op-b", "renewTime": T0, "leaseDurationSeconds": 15, "leaseTransitions": 2}
    new = lease_spec(LeaseAction.TAKE_OVER, old, "op-a", T0 + timedelta(seconds=20), 15)
    assert new["holderIdentity"] == "op-a" and new["leaseTransitions"] == 3
    assert lease_spec(LeaseAction.RENEW, new, "op-a", T0 + timedelta(seconds=25), 15)["leaseTransitions"] == 3
