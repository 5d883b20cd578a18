"""The rollout core: policy validation naming the field, figures that merge, stickiness, the gate."""

from __future__ import annotations

import numpy as np
import pytest

from services.router.policies import PolicyError
from services.router.rollout import Gate, RolloutPolicy, RolloutState, decide, parse_steps
from services.router.rollout_figures import StepFigures, VersionFigures


def random_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 10.0, size=(n, 12))


SERVED = {"lightgbm": ("s1", "c1"), "xgboost": ("x1", None)}


def policy(**doc: object) -> RolloutPolicy:
    return RolloutPolicy.from_dict({"model": "lightgbm", **doc}, SERVED)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"model": "nope"}, "model"),
        ({"model": "xgboost"}, "model"),
        ({"model": "lightgbm", "candidateVersion": "c2"}, "candidateVersion"),
        ({"model": "lightgbm", "steps": [10, 10, 100]}, "steps[1]"),
        ({"model": "lightgbm", "steps": [50, 10, 100]}, "steps[1]"),
        ({"model": "lightgbm", "steps": [10, "shadow", 100]}, "steps[1]"),
        ({"model": "lightgbm", "steps": [10, 50]}, "steps"),
        ({"model": "lightgbm", "steps": [0, 100]}, "steps[0]"),
        ({"model": "lightgbm", "steps": []}, "steps"),
        ({"model": "lightgbm", "gate": {"maxErrorRate": 1.5}}, "gate.maxErrorRate"),
        ({"model": "lightgbm", "gate": {"maxP99LatencyRatio": 0.5}}, "gate.maxP99LatencyRatio"),
        ({"model": "lightgbm", "gate": {"minGradeAgreement": -0.1}}, "gate.minGradeAgreement"),
        ({"model": "lightgbm", "gate": {"minWinesCompared": 0}}, "gate.minWinesCompared"),
        ({"model": "lightgbm", "gate": {"minWinesCompared": 2.5}}, "gate.minWinesCompared"),
        ({"model": "lightgbm", "gate": {"maxMeanAbsScoreDifference": float("nan")}},
         "gate.maxMeanAbsScoreDifference"),
        ({"model": "lightgbm", "gate": {"tolerance": 1}}, "gate.tolerance"),
        ({"model": "lightgbm", "auto": "yes"}, "auto"),
        ({"model": "lightgbm", "minStepSeconds": -1}, "minStepSeconds"),
        ({"model": "lightgbm", "colour": "red"}, "colour"),
    ],
)  # fmt: skip
def test_bad_policies_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as e:
        RolloutPolicy.from_dict(doc, SERVED)
    assert e.value.field == field


def test_a_policy_round_trips_through_its_record() -> None:
    p = policy(steps=["shadow", 5, 25, 100], auto=True, gate={"minWinesCompared": 50}, minStepSeconds=3)
    assert p.gate.min_wines_compared == 50 and p.gate.max_error_rate == Gate().max_error_rate
    assert (p.candidate, p.stable) == ("c1", "s1")
    state = RolloutState(p, 2, "running", 7, 12.5, ({"step": 5, "action": "advance"},))
    assert RolloutState.from_record(state.to_record()) == state
    assert parse_steps(None) == ("shadow", 10, 50, 100)


def test_the_candidate_share_is_sticky_monotonic_and_close_to_the_step() -> None:
    rows = random_rows(10_000, seed=3)
    p = policy(steps=["shadow", 10, 50, 100])
    masks = [RolloutState(p, i).to_candidate(rows) for i in range(4)]
    assert not masks[0].any() and masks[3].all()
    assert abs(masks[1].mean() * 100 - 10) < 1.5 and abs(masks[2].mean() * 100 - 50) < 1.5
    assert not (masks[1] & ~masks[2]).any(), "a wine on the candidate at 10 % left it at 50 %"
    again = RolloutState(p, 1).to_candidate(rows[::-1].copy())[::-1]
    assert (again == masks[1]).all(), "the choice depends on the wine alone"
    assert not RolloutState(p, 2, "rolled_back").to_candidate(rows).any()
    assert RolloutState(p, 1, "promoted").to_candidate(rows).all()


def test_figures_merge_across_replicas_and_through_records() -> None:
    a, b = StepFigures(), StepFigures()
    a.compare([5.2, 6.1], [5.4, 6.0])
    b.compare([7.0], [4.0])
    for i in range(199):
        a.stable.observe(0.001)
        b.candidate.observe(0.002 if i < 198 else 0.5)  # one slow call in 199: not the p99
    b.candidate.observe(None, failed=True)
    total = StepFigures.merged(
        [StepFigures.from_record(a.to_record()), StepFigures.from_record(b.to_record())]
    )
    assert total.compared == 3 and total.agreeing == 2
    assert total.mean_abs_difference == pytest.approx((0.2 + 0.1 + 3.0) / 3)
    assert total.candidate.calls == 200 and total.candidate.error_rate == pytest.approx(0.005)
    p99 = total.stable.quantile(0.99)
    assert p99 is not None and 0.001 <= p99 <= 0.00116
    assert total.p99_ratio == pytest.approx(2.0, rel=0.3)


def test_version_figures_quantile_is_an_upper_bound_within_fifteen_percent() -> None:
    f = VersionFigures()
    for seconds in np.linspace(0.001, 0.010, 1000):
        f.observe(float(seconds))
    p99 = f.quantile(0.99)
    assert p99 is not None and 0.0099 <= p99 <= 0.0099 * 1.15


def figures(compared: int, diff: float, agree: float, calls: int, errors: int = 0) -> StepFigures:
    f = StepFigures(compared=compared, agreeing=round(agree * compared), abs_difference_sum=diff * compared)
    for i in range(calls):
        f.candidate.observe(0.002, failed=i < errors)
        f.stable.observe(0.002)
    return f


def test_the_gate_holds_advances_promotes_and_rolls_back() -> None:
    p = policy(gate={"minWinesCompared": 100}, minStepSeconds=10)
    state = RolloutState(p, 0, since=0.0)
    good = figures(150, 0.05, 0.95, 150)
    assert decide(state, figures(50, 0.05, 0.95, 50), True, now=100).action == "hold"
    held = decide(state, good, True, now=5)
    assert held.action == "hold" and "minStepSeconds" in held.reason
    d = decide(state, good, True, now=100)
    assert d.action == "advance" and d.figures["winesCompared"] == 150 and all(c.ok for c in d.checks)
    last = RolloutState(p, 3)
    assert decide(last, good, True, now=100).action == "promote"
    bad = decide(state, figures(150, 0.9, 0.4, 150), True, now=0)
    assert bad.action == "rollback" and "meanAbsScoreDifference" in bad.reason
    assert "gradeAgreement" in bad.reason
    failing = decide(state, figures(0, 0.0, 0.0, 150, errors=30), True, now=100)
    assert failing.action == "rollback" and "error rate" in failing.reason
    slow = figures(150, 0.05, 0.95, 0)
    for _ in range(150):
        slow.stable.observe(0.001)
        slow.candidate.observe(0.05)
    assert decide(state, slow, True, now=100).action == "rollback"
    down = decide(state, good, False, "runner unreachable", now=100)
    assert down.action == "hold" and "runner unreachable" in down.reason


def test_actions_move_the_state_and_keep_history() -> None:
    p = policy(steps=["shadow", 50, 100])
    s = RolloutState(p)
    d = decide(s, figures(300, 0.01, 1.0, 300), True, now=1)
    s1 = s.after("advance", 1.0, d)
    assert (s1.step, s1.epoch, s1.since) == (50, 1, 1.0)
    assert s1.history[0]["step"] == "shadow" and s1.history[0]["figures"]["winesCompared"] == 300
    s2 = s1.after("advance", 2.0).after("advance", 3.0)
    assert (s2.phase, s2.step, s2.candidate_percent) == ("promoted", 100, 100.0)
    assert s2.after("rollback", 4.0) is s2, "a finished rollout does not move"
    back = s1.after("rollback", 5.0)
    assert (back.phase, back.candidate_percent, back.history[-1]["step"]) == ("rolled_back", 0.0, 50)
    assert s1.after("hold", 9.0) is s1
