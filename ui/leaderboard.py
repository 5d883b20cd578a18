"""The model leaderboard: a pure function of GET /v1/models behind the Models tab.

Training stores its evaluation figures in each model's metadata; the router passes them
through GET /v1/models as ``metrics`` (possibly nested, e.g. ``{"test": {"rmse": 0.6}}``).
Nested keys are flattened to dotted names; which metric ranks the board is decided by name
(errors rank ascending, R² and accuracies descending).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ui.client import ModelEntry

Direction = Literal["lower", "higher"]

_LOWER = ("rmse", "mae", "mse", "error", "loss", "seconds", "mape")
_HIGHER = ("r2", "accuracy", "acc", "within", "spearman", "pearson", "kappa")
_PREFERENCE = ("rmse", "mae", "r2")


@dataclass(frozen=True)
class Leaderboard:
    """Rows (one per model, best first), the numeric metric columns and the ranking metric."""

    rows: list[dict[str, Any]]
    metrics: list[str]
    rank_by: str | None
    direction: Direction | None

    @property
    def rankable(self) -> list[str]:
        """Metrics that can rank the board (errors, R², accuracies; not spreads or counts)."""
        return [m for m in self.metrics if metric_direction(m) is not None]

    @property
    def headline(self) -> list[str]:
        """The rankable metrics beside ``rank_by`` (same protocol and scope), for the main table."""
        if self.rank_by is None:
            return []
        prefix = self.rank_by.rpartition(".")[0]
        return [m for m in self.rankable if m.rpartition(".")[0] == prefix]


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics mapping under dotted names; the rest is dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def metric_direction(name: str) -> Direction | None:
    """Whether smaller or larger is better for a metric, judged by its last name segment.

    Spreads (``rmse_std``) and counts (``n``) rank nothing and get None.
    """
    leaf = name.rsplit(".", 1)[-1].lower()
    if leaf.endswith("_std") or leaf == "n":
        return None
    if any(leaf == t or leaf.startswith(t + "_") or leaf.endswith("_" + t) for t in _LOWER):
        return "lower"
    if any(leaf == t or leaf.startswith(t + "_") or leaf.endswith("_" + t) for t in _HIGHER):
        return "higher"
    return None


def choose_rank_metric(metrics: Sequence[str]) -> str | None:
    """The metric to rank by: test/validation RMSE first, then MAE, then R², else the first known."""

    def score(name: str) -> tuple[int, int, str]:
        lowered = name.lower()
        leaf = lowered.rsplit(".", 1)[-1]
        pref = next((i for i, p in enumerate(_PREFERENCE) if leaf == p or leaf.endswith("_" + p)), 99)
        split = 0 if "test" in lowered else 1 if ("val" in lowered or "cv" in lowered) else 2
        scope = 0 if ("overall" in lowered or lowered.count(".") == 0) else 1
        return (pref, split * 2 + scope, name)

    ranked = sorted((m for m in metrics if metric_direction(m) is not None), key=score)
    return ranked[0] if ranked else None


def build_leaderboard(
    models: Sequence[ModelEntry], default_model: str | None, rank_by: str | None = None
) -> Leaderboard:
    """One row per model with its metrics, best first by ``rank_by`` (chosen when None)."""
    flat = {m.name: flatten_metrics(m.metrics) for m in models}
    metrics = sorted({k for values in flat.values() for k in values})
    if rank_by is None or rank_by not in metrics:
        rank_by = choose_rank_metric(metrics) or (metrics[0] if metrics else None)
    direction = metric_direction(rank_by) if rank_by else None
    rows = [
        {
            "model": m.name,
            "default": m.name == default_model,
            "framework": m.framework,
            "version": m.version or "",
            "placement": m.placement,
            "status": m.status,
            **flat[m.name],
        }
        for m in models
    ]
    if rank_by is not None:
        sign = -1.0 if direction == "higher" else 1.0
        key = rank_by
        rows.sort(key=lambda r: (key not in r, sign * _number(r.get(key)), str(r["model"])))
        for place, row in enumerate(rows, start=1):
            row["rank"] = place if key in row else None
    return Leaderboard(rows, metrics, rank_by, direction)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
