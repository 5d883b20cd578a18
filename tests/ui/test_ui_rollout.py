"""The Models tab's rollout tables, built from what GET /v1/rollouts answers."""

from __future__ import annotations

from ui.rollout_view import Rollouts, history_table, rollout_table

FIGURES = {"winesCompared": 320, "meanAbsScoreDifference": 0.42954, "gradeAgreement": 0.621875,
           "candidateErrorRate": 0.0, "p99LatencyRatio": 4.0456}  # fmt: skip
ANSWER = Rollouts.model_validate(
    {
        "rollouts": {
            "lightgbm": {
                "model": "lightgbm",
                "stableVersion": "s1",
                "candidateVersion": "c1",
                "step": 0,
                "phase": "rolled_back",
                "candidatePercent": 0.0,
                "decision": {"action": "hold", "reason": "the rollout is over (rolled back)", "figures": {}},
                "figures": FIGURES,
                "history": [
                    {"step": "shadow", "action": "rollback", "reason": "the candidate fails the gate",
                     "figures": FIGURES}
                ],
            }
        },
        "candidates": ["lightgbm"],
        "shared": True,
    }
)  # fmt: skip


def test_the_rollout_table_shows_versions_step_decision_and_figures() -> None:
    (row,) = rollout_table(ANSWER).to_dict("records")
    assert (row["stable"], row["candidate"], row["phase"], row["decision"]) == (
        "s1",
        "c1",
        "rolled back",
        "hold",
    )
    assert row["grade agreement %"] == 62.2 and row["mean |difference|"] == 0.43 and row["p99 ratio"] == 4.05
    assert row["wines compared"] == 320 and row["candidate errors %"] == 0.0


def test_the_history_shows_the_step_a_rollout_stopped_at() -> None:
    (row,) = history_table(ANSWER.rollouts["lightgbm"]).to_dict("records")
    assert (row["step"], row["action"]) == ("shadow", "rollback")
    assert rollout_table(Rollouts()).empty and history_table({}).empty
