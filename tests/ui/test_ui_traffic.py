"""The Models tab's traffic tables, built from what GET /v1/traffic and GET /v1/models answer."""

from __future__ import annotations

from ui.traffic_view import ensemble_table, shadow_table, split_table
from winemeup.api import ModelList, TrafficPolicies

POLICIES = TrafficPolicies.model_validate(
    {
        "splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}},
        "shadows": {"lightgbm": {"target": "catboost", "fraction": 0.25}},
        "shared": True,
        "served_rows": {"lightgbm": {"lightgbm": 880, "xgboost": 120}},
        "shadow_stats": [
            {
                "model": "lightgbm",
                "shadow": "catboost",
                "rows": 200,
                "grade_agreement": 0.915,
                "mean_difference": -0.0123456,
                "shed_calls": 3,
                "failed_calls": 0,
            }
        ],
    }
)


def test_the_split_table_shows_configured_and_served_shares() -> None:
    table = split_table(POLICIES)
    assert table.to_dict("records") == [
        {"name": "lightgbm", "model": "lightgbm", "configured %": 90, "served %": 88.0, "rows served": 880},
        {"name": "lightgbm", "model": "xgboost", "configured %": 10, "served %": 12.0, "rows served": 120},
    ]


def test_the_shadow_table_shows_agreement_difference_and_shed_calls() -> None:
    (row,) = shadow_table(POLICIES).to_dict("records")
    assert row["shadow"] == "catboost" and row["fraction"] == 0.25
    assert row["grade agreement %"] == 91.5 and row["mean difference"] == -0.0123 and row["shed calls"] == 3
    empty = TrafficPolicies.model_validate({"splits": {}, "shadows": {}, "shared": False})
    assert split_table(empty).empty and shadow_table(empty).empty


def test_the_ensemble_table_lists_members_and_weights() -> None:
    common = {"framework": None, "version": "e1", "status": "ready"}
    models = ModelList.model_validate(
        {
            "default": "lightgbm",
            "models": [
                {"name": "lightgbm", "placement": "inline", **common},
                {
                    "name": "blend",
                    "placement": "ensemble",
                    "members": {"extra_trees": 0.512, "svr": 0.488},
                    "on_member_down": "fail",
                    **common,
                },
            ],
        }
    )
    (row,) = ensemble_table(models).to_dict("records")
    assert row["ensemble"] == "blend" and row["members"] == "extra_trees × 0.512, svr × 0.488"
