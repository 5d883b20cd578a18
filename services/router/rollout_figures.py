"""Figures of one rollout step: both versions' calls and the wines both scored; they merge.

Kept per replica and merged across replicas (a sum of counts), so every replica's gate reads
the same wines: calls and failures per version, a latency histogram with fixed bounds (its
p99 is known within 15 %), and for the wines both versions scored, the absolute score
difference and whether the rounded grades agree. Also the :class:`FigureStore` interface
through which replicas share them (memory here; Redis in :mod:`~services.router.rollout_redis`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from winemeup.schema import quality_grade

# Latency histogram shared by every replica: fixed, geometric bucket bounds so figures merge by
# adding counts. 0.1 ms .. ~30 s, 15 % apart (a p99 is known within 15 %).
LATENCY_BOUNDS: tuple[float, ...] = tuple(1e-4 * 1.15**i for i in range(91))


@dataclass
class VersionFigures:
    """Calls to one version at one step: how many, how many failed, their latency histogram."""

    calls: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))

    def observe(self, seconds: float | None, failed: bool = False, rows: int = 1) -> None:
        """One call of ``rows`` wines (its latency, when it reached the model rather than the cache).

        ``calls`` and ``errors`` count wines, so an error rate is the share of wines failed.
        """
        self.calls += rows
        if failed:
            self.errors += rows
        if seconds is not None:
            self.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def merge(self, other: VersionFigures) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile of timed calls (None: none timed)."""
        total = sum(self.latency)
        if not total:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for i, count in enumerate(self.latency):
            seen += count
            if seen >= rank:
                return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
        return LATENCY_BOUNDS[-1]

    def to_record(self) -> dict[str, Any]:
        # Sparse histogram: most buckets are empty.
        return {
            "calls": self.calls,
            "errors": self.errors,
            "latency": {str(i): c for i, c in enumerate(self.latency) if c},
        }

    @classmethod
    def from_record(cls, doc: Any) -> VersionFigures:
        figures = cls()
        if not isinstance(doc, Mapping):
            return figures
        figures.calls = int(doc.get("calls") or 0)
        figures.errors = int(doc.get("errors") or 0)
        for key, count in (doc.get("latency") or {}).items():
            index = int(key)
            if 0 <= index < len(figures.latency):
                figures.latency[index] += int(count)
        return figures


@dataclass
class StepFigures:
    """What the gate reads at one step: both versions' calls and the wines both scored."""

    stable: VersionFigures = field(default_factory=VersionFigures)
    candidate: VersionFigures = field(default_factory=VersionFigures)
    compared: int = 0
    agreeing: int = 0
    abs_difference_sum: float = 0.0

    def compare(self, stable_scores: Sequence[float], candidate_scores: Sequence[float]) -> None:
        """Add wines both versions scored (same wines, same order)."""
        a = np.asarray(stable_scores, dtype=np.float64)
        b = np.asarray(candidate_scores, dtype=np.float64)
        self.compared += len(a)
        self.abs_difference_sum += float(np.abs(a - b).sum())
        self.agreeing += sum(
            quality_grade(x) == quality_grade(y) for x, y in zip(a.tolist(), b.tolist(), strict=True)
        )

    def merge(self, other: StepFigures) -> None:
        self.stable.merge(other.stable)
        self.candidate.merge(other.candidate)
        self.compared += other.compared
        self.agreeing += other.agreeing
        self.abs_difference_sum += other.abs_difference_sum

    @classmethod
    def merged(cls, parts: Iterable[StepFigures]) -> StepFigures:
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    @property
    def mean_abs_difference(self) -> float | None:
        return self.abs_difference_sum / self.compared if self.compared else None

    @property
    def grade_agreement(self) -> float | None:
        return self.agreeing / self.compared if self.compared else None

    @property
    def p99_ratio(self) -> float | None:
        stable, candidate = self.stable.quantile(0.99), self.candidate.quantile(0.99)
        if stable is None or candidate is None:
            return None
        return candidate / stable

    def summary(self) -> dict[str, Any]:
        """The figures as the API, the UI and the metrics show them."""
        p99_stable, p99_candidate = self.stable.quantile(0.99), self.candidate.quantile(0.99)
        return {
            "winesCompared": self.compared,
            "meanAbsScoreDifference": self.mean_abs_difference,
            "gradeAgreement": self.grade_agreement,
            "stableWines": self.stable.calls,
            "candidateWines": self.candidate.calls,
            "candidateErrorRate": self.candidate.error_rate,
            "stableErrorRate": self.stable.error_rate,
            "stableP99Seconds": p99_stable,
            "candidateP99Seconds": p99_candidate,
            "p99LatencyRatio": self.p99_ratio,
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "stable": self.stable.to_record(),
            "candidate": self.candidate.to_record(),
            "compared": self.compared,
            "agreeing": self.agreeing,
            "abs_difference_sum": self.abs_difference_sum,
        }

    @classmethod
    def from_record(cls, doc: Any) -> StepFigures:
        if not isinstance(doc, Mapping):
            return cls()
        return cls(
            VersionFigures.from_record(doc.get("stable")),
            VersionFigures.from_record(doc.get("candidate")),
            int(doc.get("compared") or 0),
            int(doc.get("agreeing") or 0),
            float(doc.get("abs_difference_sum") or 0.0),
        )


class FigureStore(Protocol):
    """Per-replica figures of one (model, epoch), gathered by every replica. Never raises."""

    async def publish(self, model: str, epoch: int, replica: str, figures: Mapping[str, Any]) -> None:
        """Store this replica's figures of the step (replacing the previous ones)."""
        ...

    async def gather(self, model: str, epoch: int) -> list[Mapping[str, Any]]:
        """Every replica's figures of the step."""
        ...


class MemoryFigures:
    """Figures of this process only (one replica)."""

    def __init__(self) -> None:
        self._figures: dict[tuple[str, int], dict[str, Mapping[str, Any]]] = {}

    async def publish(self, model: str, epoch: int, replica: str, figures: Mapping[str, Any]) -> None:
        self._figures.setdefault((model, epoch), {})[replica] = figures

    async def gather(self, model: str, epoch: int) -> list[Mapping[str, Any]]:
        return list(self._figures.get((model, epoch), {}).values())
