"""RunnerSettings: the environment wins over constructor (bento) arguments."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.runner.settings import RunnerSettings


def test_constructor_arguments_are_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WINEMEUP_RUNNER_MODEL", raising=False)
    monkeypatch.delenv("WINEMEUP_RUNNER_VERSION", raising=False)
    settings = RunnerSettings(model="svr", version="abc")
    assert (settings.model, settings.version) == ("svr", "abc")


def test_environment_overrides_bento_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINEMEUP_RUNNER_MODEL", "catboost")
    monkeypatch.setenv("WINEMEUP_RUNNER_BATCH_MAX_ROWS", "7")
    settings = RunnerSettings(model="svr")
    assert settings.model == "catboost"
    assert settings.batch_max_rows == 7


def test_unknown_model_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINEMEUP_RUNNER_MODEL", "linear")
    with pytest.raises(ValidationError, match="unknown model 'linear'"):
        RunnerSettings()
