"""`make run` serves the blend training declares (leaderboard.json's ``declare_ensemble``)."""

from __future__ import annotations

import json
from pathlib import Path

from services.router.settings import RouterSettings
from services.stack.launcher import declared_ensembles

BLEND = {"name": "blend", "members": {"extra_trees": 0.512, "svr": 0.488}, "on_member_down": "fail"}


def _board(folder: Path, declared: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leaderboard.json").write_text(json.dumps({"declare_ensemble": declared}))
    return folder


def test_the_first_readable_leaderboard_declares_the_blend(tmp_path: Path) -> None:
    run = _board(tmp_path / "reports", BLEND)
    committed = _board(tmp_path / "docs", {**BLEND, "name": "older"})
    assert declared_ensembles([tmp_path / "absent", run, committed], ["extra_trees", "svr"]) == [BLEND]
    # The router takes the declaration as it is.
    settings = RouterSettings(
        api_keys="k",
        admin_api_keys="a",
        models=["extra_trees", "svr"],
        default_model="blend",
        ensembles=[BLEND],
    )  # type: ignore[call-arg]
    assert settings.ensembles == [BLEND]


def test_no_blend_when_a_member_is_not_served_or_none_is_declared(tmp_path: Path) -> None:
    run = _board(tmp_path / "reports", BLEND)
    assert declared_ensembles([run], ["extra_trees", "lightgbm"]) == []
    assert declared_ensembles([_board(tmp_path / "none", None)], ["extra_trees", "svr"]) == []
    assert declared_ensembles([tmp_path / "absent"], ["extra_trees", "svr"]) == []
