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


@pytest.fixture(autouse=True)
def _open_runner(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every test but the token tests runs as a developer's open runner."""
    monkeypatch.delenv("WINEMEUP_RUNNER_TOKEN", raising=False)
    if "token" not in request.node.name:
        monkeypatch.setenv("WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED", "true")
    else:
        monkeypatch.delenv("WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED", raising=False)


def test_a_runner_without_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="WINEMEUP_RUNNER_TOKEN is not set"):
        RunnerSettings(model="svr")
    monkeypatch.setenv("WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED", "true")
    assert RunnerSettings(model="svr").token is None


def test_the_token_is_secret_and_not_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINEMEUP_RUNNER_TOKEN", "short")
    with pytest.raises(ValidationError, match="at least 16"):
        RunnerSettings(model="svr")
    monkeypatch.setenv("WINEMEUP_RUNNER_TOKEN", "s3cret-" * 4)
    settings = RunnerSettings(model="svr")
    assert settings.token is not None and settings.token.get_secret_value() == "s3cret-" * 4
    assert "s3cret" not in repr(settings)
