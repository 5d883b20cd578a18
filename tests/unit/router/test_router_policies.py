"""Canary splits, shadow selection and ensembles: the pure decisions the router applies."""

from __future__ import annotations

import numpy as np
import pytest

from services.router.policies import Ensemble, PolicyError, Shadow, Split
from winemeup.schema import SCHEMA

KNOWN = ("lightgbm", "xgboost", "catboost", "svr")


def distinct_wines(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.tile(np.asarray(SCHEMA.encode(SCHEMA.example()), dtype=np.float64), (n, 1))
    rows[:, 10] = rng.uniform(8.0, 14.0, size=n)  # alcohol
    rows[:, 3] = rng.uniform(1.0, 15.0, size=n)  # residual sugar
    assert len(np.unique(rows, axis=0)) == n
    return rows


def test_a_90_10_split_sends_10_percent_and_sticks_per_wine() -> None:
    split = Split("lightgbm", {"lightgbm": 90, "xgboost": 10})
    wines = distinct_wines(10_000, seed=11)

    first = split.choose(wines)
    again = split.choose(wines[::-1])[::-1]

    share = first.count("xgboost") / len(first)
    assert 0.085 <= share <= 0.115, share
    assert first == again  # sticky: order and batch do not matter
    assert split.choose(wines[:1]) == first[:1]


def test_split_weights_must_add_up_and_name_known_models() -> None:
    with pytest.raises(PolicyError, match="must add up to 100"):
        Split("lightgbm", {"lightgbm": 90, "xgboost": 5})
    with pytest.raises(PolicyError, match=r"weights.xgboost: must be a number >= 0"):
        Split("lightgbm", {"lightgbm": 110, "xgboost": -10})
    with pytest.raises(PolicyError, match="unknown model 'xgbost'") as caught:
        Split("lightgbm", {"lightgbm": 90, "xgbost": 10}).validate(KNOWN)
    assert caught.value.field == "weights.xgbost"


def test_shadow_selects_its_fraction_stickily() -> None:
    shadow = Shadow("lightgbm", "svr", 0.25)
    wines = distinct_wines(8_000, seed=5)

    mask = shadow.selects(wines)

    assert 0.23 <= mask.mean() <= 0.27
    np.testing.assert_array_equal(mask, shadow.selects(wines))
    assert not Shadow("lightgbm", "svr", 0.0).selects(wines).any()
    assert Shadow("lightgbm", "svr", 1.0).selects(wines).all()
    with pytest.raises(PolicyError, match="between 0 and 1"):
        Shadow("lightgbm", "svr", 1.5)
    with pytest.raises(PolicyError, match="cannot shadow itself"):
        Shadow("svr", "svr", 0.5)


def test_ensemble_version_follows_every_member_version() -> None:
    blend = Ensemble("blend", {"lightgbm": 2.0, "svr": 1.0})
    v1 = blend.version({"lightgbm": "a", "svr": "b"})

    assert v1 == blend.version({"svr": "b", "lightgbm": "a"})
    assert v1 != blend.version({"lightgbm": "a", "svr": "c"})
    assert v1 != Ensemble("blend", {"lightgbm": 1.0, "svr": 1.0}).version({"lightgbm": "a", "svr": "b"})


def test_ensemble_blends_and_handles_a_member_down() -> None:
    scores = {"lightgbm": np.array([6.0, 4.0]), "svr": np.array([3.0, 7.0])}
    strict = Ensemble("blend", {"lightgbm": 2.0, "svr": 1.0})
    lenient = Ensemble("blend", {"lightgbm": 2.0, "svr": 1.0}, on_member_down="renormalize")

    np.testing.assert_allclose(strict.blend(scores), [5.0, 5.0])
    with pytest.raises(PolicyError, match=r"members \['svr'\] are unavailable"):
        strict.blend({"lightgbm": scores["lightgbm"]})
    np.testing.assert_allclose(lenient.blend({"lightgbm": scores["lightgbm"]}), [6.0, 4.0])
    with pytest.raises(PolicyError):
        lenient.blend({})


def test_ensemble_declarations_are_validated() -> None:
    with pytest.raises(PolicyError, match="at least two members"):
        Ensemble.from_dict({"name": "solo", "members": {"svr": 1}})
    with pytest.raises(PolicyError, match="weight must be a number > 0"):
        Ensemble.from_dict({"name": "b", "members": {"svr": 1, "lightgbm": 0}})
    with pytest.raises(PolicyError, match="'fail' or 'renormalize'"):
        Ensemble.from_dict({"name": "b", "members": {"svr": 1, "lightgbm": 1}, "on_member_down": "ignore"})
    with pytest.raises(PolicyError, match="already a model"):
        Ensemble("svr", {"svr": 1, "lightgbm": 1}).validate(KNOWN)
    assert Ensemble.from_dict({"name": "b", "members": {"svr": 1, "lightgbm": 3}}).as_dict() == {
        "name": "b",
        "members": {"svr": 1, "lightgbm": 3},
        "on_member_down": "fail",
    }
