"""Traffic policies and ensembles: pure decisions, no HTTP, Redis or models.

* :class:`Split` (canary): a model name resolves to a weighted choice among models. The
  choice is sticky per wine: a hash of the canonical feature row picks the bucket, so the
  same wine always reaches the same model, on every replica.
* :class:`Shadow`: a share of a model's traffic is also sent, after the answer, to another
  model; which requests are shadowed is also decided by the row's hash.
* :class:`Ensemble`: a served model that blends its members' scores with fixed weights; its
  version is derived from the members' versions, so a cache key can never outlive a member.

Every constructor validates and raises :class:`PolicyError` with the field and the problem;
``from_dict`` reads the JSON shape the admin API and the chart values use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

BUCKETS = 10_000
"""Resolution of splits and shadow fractions: 0.01 %."""


class PolicyError(ValueError):
    """A policy that cannot be applied; ``field`` names what is wrong."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def row_buckets(rows: np.ndarray, salt: str) -> np.ndarray:
    """A stable bucket in ``[0, BUCKETS)`` per row: BLAKE2b of the float64 row and ``salt``."""
    matrix = np.ascontiguousarray(rows, dtype="<f8")
    key = salt.encode()
    out = np.empty(matrix.shape[0], dtype=np.int64)
    for i in range(matrix.shape[0]):
        digest = hashlib.blake2b(matrix[i].tobytes(), digest_size=8, key=key).digest()
        out[i] = int.from_bytes(digest, "little") % BUCKETS
    return out


def _known(name: str, where: str, known: Iterable[str]) -> None:
    names = set(known)
    if name not in names:
        raise PolicyError(where, f"unknown model {name!r}; known: {', '.join(sorted(names))}")


@dataclass(frozen=True)
class Split:
    """``name`` answers with one of ``weights``' models, chosen per wine, weights in percent."""

    name: str
    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        if not self.weights:
            raise PolicyError("weights", "name at least one model")
        for model, weight in self.weights.items():
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
                raise PolicyError(f"weights.{model}", f"must be a number >= 0, got {weight!r}")
        total = sum(self.weights.values())
        if abs(total - 100.0) > 1e-9:
            raise PolicyError("weights", f"must add up to 100 (percent), got {total:g}")

    def members(self) -> list[str]:
        """The models this split may answer with."""
        return list(self.weights)

    def validate(self, known: Iterable[str]) -> None:
        known = list(known)
        for model in self.weights:
            _known(model, f"weights.{model}", known)

    def choose(self, rows: np.ndarray) -> list[str]:
        """The model that answers each row (sticky: the same row always gets the same model)."""
        buckets = row_buckets(rows, f"split:{self.name}")
        names = list(self.weights)
        edges = np.cumsum([self.weights[m] * BUCKETS / 100.0 for m in names])
        picks = np.searchsorted(edges, buckets, side="right")
        return [names[min(int(p), len(names) - 1)] for p in picks]

    @classmethod
    def from_dict(cls, name: str, doc: Any) -> Split:
        if not isinstance(doc, Mapping):
            raise PolicyError("split", "must be an object mapping model names to percentages")
        return cls(name, dict(doc))

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)


@dataclass(frozen=True)
class Shadow:
    """A ``fraction`` (0..1) of the traffic to ``source`` is also scored by ``target``, after answering."""

    source: str
    target: str
    fraction: float

    def __post_init__(self) -> None:
        if not isinstance(self.fraction, int | float) or not 0.0 <= float(self.fraction) <= 1.0:
            raise PolicyError("fraction", f"must be between 0 and 1, got {self.fraction!r}")
        if self.source == self.target:
            raise PolicyError("target", "a model cannot shadow itself")

    def members(self) -> list[str]:
        """The served model and its shadow."""
        return [self.source, self.target]

    def validate(self, known: Iterable[str]) -> None:
        known = list(known)
        _known(self.source, "model", known)
        _known(self.target, "target", known)

    def selects(self, rows: np.ndarray) -> np.ndarray:
        """Which rows are shadowed (a boolean mask; sticky per row)."""
        return row_buckets(rows, f"shadow:{self.source}") < round(self.fraction * BUCKETS)

    @classmethod
    def from_dict(cls, source: str, doc: Any) -> Shadow:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("target"), str):
            raise PolicyError("shadow", 'must be an object {"target": <model>, "fraction": <0..1>}')
        return cls(source, doc["target"], doc.get("fraction", 1.0))

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "fraction": self.fraction}


OnMemberDown = Literal["fail", "renormalize"]


@dataclass(frozen=True)
class Ensemble:
    """A served model blending its members' scores: ``sum(w_i * s_i) / sum(w_i)``."""

    name: str
    members: Mapping[str, float]
    on_member_down: OnMemberDown = "fail"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise PolicyError("members", "an ensemble needs at least two members")
        for model, weight in self.members.items():
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                raise PolicyError(f"members.{model}", f"weight must be a number > 0, got {weight!r}")
        if self.on_member_down not in ("fail", "renormalize"):
            raise PolicyError(
                "on_member_down", f"must be 'fail' or 'renormalize', got {self.on_member_down!r}"
            )

    def validate(self, known: Iterable[str]) -> None:
        known = list(known)
        if self.name in known:
            raise PolicyError("name", f"{self.name!r} is already a model")
        for model in self.members:
            _known(model, f"members.{model}", known)

    def member_names(self) -> list[str]:
        """The blended models."""
        return list(self.members)

    def version(self, member_versions: Mapping[str, str]) -> str:
        """A version derived from the versions and weights of the members given.

        Every member when all answer; with ``renormalize`` and a member down, the members
        that answered: a blend of fewer members gets its own version, so its scores are
        cached apart from the full blend's.
        """
        present = sorted(m for m in self.members if m in member_versions)
        text = ";".join(f"{m}={member_versions[m]}*{self.members[m]!r}" for m in present)
        return "e" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def blend(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted mean over the members present in ``scores`` (all of them unless renormalising)."""
        missing = [m for m in self.members if m not in scores]
        if missing and (self.on_member_down == "fail" or len(missing) == len(self.members)):
            raise PolicyError("members", f"members {missing} are unavailable")
        present = [m for m in self.members if m in scores]
        total = sum(self.members[m] for m in present)
        return sum(np.asarray(scores[m], dtype=np.float64) * (self.members[m] / total) for m in present)  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, doc: Any) -> Ensemble:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
            raise PolicyError(
                "ensemble", 'must be an object {"name", "members": {model: weight}, "on_member_down"}'
            )
        members = doc.get("members")
        if not isinstance(members, Mapping):
            raise PolicyError("members", "must be an object mapping model names to weights")
        return cls(
            doc["name"], dict(members), doc.get("on_member_down", "fail"), str(doc.get("description", ""))
        )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": dict(self.members), "on_member_down": self.on_member_down}


@dataclass(frozen=True)
class TrafficRule:
    """What happens to the traffic of one served name: a canary split, a shadow, or both."""

    name: str
    split: Split | None = None
    shadow: Shadow | None = None

    def members(self) -> list[str]:
        """Every model the rule may send traffic to."""
        names = [self.name]
        if self.split is not None:
            names += self.split.members()
        if self.shadow is not None:
            names.append(self.shadow.target)
        return list(dict.fromkeys(names))
