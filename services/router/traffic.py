"""Traffic policies at serving time: canary splits and shadows, shared between replicas.

* A **split** makes a served name answer with one of several models, chosen per wine by a
  hash of its row (:class:`~services.router.policies.Split`), so a wine always gets the same
  model on every replica. The answer names the model that served it.
* A **shadow** also scores a fraction of a model's rows with another model *after* the
  answer: the client waits for none of it. At most ``max_inflight`` shadow calls run at once;
  beyond that they are shed (``winemeup_router_shadow_shed_total``). The difference of the
  scores and whether the grades agree are metrics.

Policies come from the settings at start-up and change at runtime (``PUT /v1/traffic``). A
change is written to the shared record ``traffic-policies`` that every replica follows (through
the one :class:`~services.router.shared_state.RecordPoller`), as the hot-swapped default is;
a record made over other configured policies is ignored, so a deploy that changes them is not
overridden by an older runtime change. An invalid
change raises :class:`~services.router.policies.PolicyError` naming the field and keeps the
policies in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from services.router import metrics
from services.router.models import ServedModel
from services.router.policies import PolicyError, Shadow, Split, TrafficRule
from services.router.predictor import Predictor
from services.router.registry import ModelRegistry
from services.router.shared_state import Record
from services.router.validation import orjson_object
from winemeup.errors import ValidationFailed
from winemeup.schema import FieldError, quality_grade

logger = logging.getLogger(__name__)

TRAFFIC_RECORD = "traffic-policies"
"""Name of the shared record of the runtime traffic policies."""

Splits = dict[str, Split]
Shadows = dict[str, Shadow]


@dataclass(slots=True)
class RoutedResult:
    """Scores of a batch in input order, as served under one name (possibly by several models)."""

    scores: list[float]
    cached: list[bool]
    model: str
    """The model that served the rows (the one serving most of them when a split spread them)."""
    version: str
    models: list[str] | None = None
    """The model of each row, when a split spread the batch over more than one model."""
    versions: dict[str, str] | None = None
    """The version of each model that served rows (with ``models``)."""


def parse_policies(doc: Any, known: list[str]) -> tuple[Splits | None, Shadows | None]:
    """``{"splits"?: {name: {model: percent}}, "shadows"?: {model: {"target", "fraction"}}}``.

    A section left out is None (kept as it is). PolicyError names the field, e.g.
    ``splits.lightgbm.weights.xgbost``.
    """
    if not isinstance(doc, Mapping):
        raise PolicyError("body", 'must be an object {"splits"?: {...}, "shadows"?: {...}}')
    extra = sorted(set(doc) - {"splits", "shadows"})
    if extra:
        raise PolicyError(extra[0], "unknown field; expected 'splits' and/or 'shadows'")
    splits: Splits | None = None
    shadows: Shadows | None = None
    if doc.get("splits") is not None:
        splits = {}
        section = doc["splits"]
        if not isinstance(section, Mapping):
            raise PolicyError("splits", "must be an object mapping served names to {model: percent}")
        for name, weights in section.items():
            try:
                if name not in known:
                    raise PolicyError("name", f"unknown model {name!r}; known: {', '.join(known)}")
                split = Split.from_dict(name, weights)
                split.validate(known)
            except PolicyError as e:
                raise PolicyError(
                    f"splits.{name}" + ("" if e.field == "name" else f".{e.field}"), e.problem
                ) from e
            splits[name] = split
    if doc.get("shadows") is not None:
        shadows = {}
        section = doc["shadows"]
        if not isinstance(section, Mapping):
            raise PolicyError("shadows", 'must be an object mapping models to {"target", "fraction"}')
        for name, spec in section.items():
            try:
                shadow = Shadow.from_dict(name, spec)
                shadow.validate(known)
            except PolicyError as e:
                raise PolicyError(f"shadows.{name}.{e.field}", e.problem) from e
            shadows[name] = shadow
    return splits, shadows


def as_document(splits: Splits, shadows: Shadows) -> dict[str, Any]:
    """The JSON shape of the policies (the admin API, the settings and the shared record)."""
    return {
        "splits": {name: s.as_dict() for name, s in splits.items()},
        "shadows": {name: s.as_dict() for name, s in shadows.items()},
    }


def _fingerprint(doc: Mapping[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass(slots=True)
class ShadowStats:
    """Shadowed rows of one (model, shadow) pair on this replica since it started."""

    model: str
    shadow: str
    rows: int = 0
    agree: int = 0
    shed: int = 0
    errors: int = 0
    difference_sum: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "shadow": self.shadow,
            "rows": self.rows,
            "grade_agreement": self.agree / self.rows if self.rows else None,
            "mean_difference": self.difference_sum / self.rows if self.rows else None,
            "shed_calls": self.shed,
            "failed_calls": self.errors,
        }


class ShadowDispatcher:
    """Runs shadow calls after the answer, at most ``max_inflight`` at once; sheds the rest."""

    def __init__(self, predictor: Predictor, max_inflight: int):
        self.predictor = predictor
        self.max_inflight = max_inflight
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[tuple[str, str], ShadowStats] = {}
        """This replica's figures per (model, shadow), for GET /v1/traffic and the UI."""

    def _stats(self, shadow: Shadow) -> ShadowStats:
        key = (shadow.source, shadow.target)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = ShadowStats(shadow.source, shadow.target)
        return stats

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def submit(self, shadow: Shadow, target: ServedModel, rows: np.ndarray, served: np.ndarray) -> bool:
        """Start scoring ``rows`` with ``target``; False (and counted) when shed."""
        if len(self._tasks) >= self.max_inflight:
            metrics.SHADOW_SHED.labels(shadow.source, shadow.target).inc()
            self._stats(shadow).shed += 1
            return False
        task = asyncio.get_running_loop().create_task(self._run(shadow, target, rows, served))
        self._tasks.add(task)
        metrics.SHADOW_INFLIGHT.set(len(self._tasks))
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        metrics.SHADOW_INFLIGHT.set(len(self._tasks))

    async def _run(self, shadow: Shadow, target: ServedModel, rows: np.ndarray, served: np.ndarray) -> None:
        labels = (shadow.source, shadow.target)
        try:
            result = await self.predictor.predict_many(target, rows)
        except Exception as e:  # a shadow never fails anything but itself
            metrics.SHADOW_ERRORS.labels(*labels).inc()
            self._stats(shadow).errors += 1
            logger.debug("shadow %s -> %s failed: %s", *labels, e)
            return
        scores = np.asarray(result.scores, dtype=np.float64)
        histogram = metrics.SHADOW_SCORE_DIFFERENCE.labels(*labels)
        for diff in (scores - served).tolist():
            histogram.observe(diff)
        agree = sum(
            quality_grade(a) == quality_grade(b)
            for a, b in zip(scores.tolist(), served.tolist(), strict=True)
        )
        stats = self._stats(shadow)
        stats.rows += len(scores)
        stats.agree += agree
        stats.difference_sum += float((scores - served).sum())
        if agree:
            metrics.SHADOW_GRADES.labels(*labels, "agree").inc(agree)
        if len(scores) - agree:
            metrics.SHADOW_GRADES.labels(*labels, "disagree").inc(len(scores) - agree)

    async def drain(self) -> None:
        """Wait for running shadow calls (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Traffic:
    """The splits and shadows in force, how they route rows, and their sharing between replicas."""

    def __init__(
        self,
        registry: ModelRegistry,
        predictor: Predictor,
        configured: Mapping[str, Any],
        max_inflight: int = 64,
    ):
        self.registry = registry
        self.predictor = predictor
        self.shadows_running = ShadowDispatcher(predictor, max_inflight)
        splits, shadows = parse_policies(configured, registry.names)
        self.splits: Splits = splits or {}
        self.shadows: Shadows = shadows or {}
        self.configured = _fingerprint(as_document(self.splits, self.shadows))
        self.served_rows: dict[str, dict[str, int]] = {}
        self._publish()

    # ---- changing the policies --------------------------------------------------------------

    def _publish(self) -> None:
        """Register the rules with the registry and the gauges the dashboard reads."""
        names = set(self.splits) | set(self.shadows) | set(self.registry.policies)
        for name in names:
            split, shadow = self.splits.get(name), self.shadows.get(name)
            self.registry.set_policy(name, TrafficRule(name, split, shadow) if split or shadow else None)
        metrics.SPLIT_WEIGHT.clear()
        for name, split in self.splits.items():
            for model, weight in split.weights.items():
                metrics.SPLIT_WEIGHT.labels(name, model).set(weight)
        metrics.SHADOW_FRACTION.clear()
        for shadow in self.shadows.values():
            metrics.SHADOW_FRACTION.labels(shadow.source, shadow.target).set(shadow.fraction)

    def _apply(self, splits: Splits | None, shadows: Shadows | None, why: str) -> bool:
        changed = False
        if splits is not None and splits != self.splits:
            self.splits, changed = splits, True
        if shadows is not None and shadows != self.shadows:
            self.shadows, changed = shadows, True
        if changed:
            self._publish()
            logger.info("traffic policies now %s (%s)", orjson.dumps(self.document()).decode(), why)
        return changed

    def document(self) -> dict[str, Any]:
        """The policies in force."""
        return as_document(self.splits, self.shadows)

    def status(self) -> dict[str, Any]:
        """The policies in force and this replica's figures: rows served per split, shadow stats."""
        return {
            **self.document(),
            "served_rows": {name: dict(rows) for name, rows in self.served_rows.items()},
            "shadow_stats": [s.as_dict() for s in self.shadows_running.stats.values()],
        }

    def _count(self, name: str, model: str, rows: int) -> None:
        metrics.SERVED_ROWS.labels(name, model).inc(rows)
        served = self.served_rows.setdefault(name, {})
        served[model] = served.get(model, 0) + rows

    async def update(self, doc: Any) -> bool:
        """Apply a change (sections left out are kept); True when other replicas will adopt it.

        Raises PolicyError naming the field; nothing changes then.
        """
        splits, shadows = parse_policies(doc, self.registry.names)
        self._apply(splits, shadows, "admin request")
        shared = self.registry.shared
        record = {"configured": self.configured, **self.document()}
        return shared.shared and await shared.write(TRAFFIC_RECORD, record)

    async def update_body(self, body: bytes) -> bool:
        """:meth:`update` from a request body; a bad change is a 422 naming the field."""
        doc = orjson_object(body, ("splits", "shadows"), "'splits' and/or 'shadows'")
        try:
            return await self.update(doc)
        except PolicyError as e:
            raise ValidationFailed([FieldError(e.field, e.problem)]) from e

    def adopt(self, record: Record) -> None:
        """Adopt the policies another replica set, if they were set over our configured ones."""
        if record.get("configured") != self.configured:
            return
        try:
            splits, shadows = parse_policies(
                {"splits": record.get("splits") or {}, "shadows": record.get("shadows") or {}},
                self.registry.names,
            )
        except PolicyError as e:
            logger.warning("ignoring the shared traffic policies: %s", e)
            return
        self._apply(splits, shadows, "changed on another replica")

    async def sync(self) -> None:
        """Read the shared policies once and adopt them (the poller does this periodically)."""
        record = await self.registry.shared.read(TRAFFIC_RECORD)
        if record is not None:
            self.adopt(record)

    async def close(self) -> None:
        """Wait for running shadow calls."""
        await self.shadows_running.drain()

    # ---- serving ----------------------------------------------------------------------------

    def choose_one(self, name: str, row: list[float]) -> str:
        """The model that answers one row sent to ``name`` (``name`` itself without a split)."""
        split = self.splits.get(name)
        if split is None:
            return name
        chosen = split.choose(np.array((row,), dtype=np.float64))[0]
        self._count(name, chosen, 1)
        return chosen

    def shadow(self, model: str, rows: np.ndarray, scores: Any) -> None:
        """After the answer: score the selected rows of ``model`` with its shadow (if any)."""
        shadow = self.shadows.get(model)
        if shadow is None:
            return
        target = self.registry.get(shadow.target)
        if target is None:
            return
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        mask = shadow.selects(rows)
        if mask.any():
            served = np.asarray(scores, dtype=np.float64).reshape(-1)
            self.shadows_running.submit(shadow, target, rows[mask], served[mask])

    async def predict_one(self, model: ServedModel, row: list[float]) -> RoutedResult:
        """The score of one row sent to ``model``'s name: through its split, then its shadow."""
        name = self.choose_one(model.name, row) if self.splits else model.name
        served = model if name == model.name else self.registry.resolve(name)
        score, version, cached = await self.predictor.predict_one(served, row)
        if self.shadows:
            self.shadow(served.name, np.array((row,), dtype=np.float64), (score,))
        return RoutedResult([score], [cached], served.name, version)

    async def predict_many(self, model: ServedModel, matrix: np.ndarray) -> RoutedResult:
        """Scores of ``matrix`` sent to ``model``'s name: through its split (one call per model)."""
        split = self.splits.get(model.name)
        if split is None:
            result = await self.predictor.predict_many(model, matrix)
            self.shadow(model.name, matrix, result.scores)
            return RoutedResult(result.scores, result.cached, model.name, result.version)
        chosen = split.choose(matrix)
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(chosen):
            groups.setdefault(name, []).append(i)
        names = list(groups)
        results = await asyncio.gather(
            *(self.predictor.predict_many(self.registry.resolve(n), matrix[groups[n]]) for n in names)
        )
        scores = [0.0] * len(chosen)
        cached = [False] * len(chosen)
        for name, result in zip(names, results, strict=True):
            for i, s, c in zip(groups[name], result.scores, result.cached, strict=True):
                scores[i], cached[i] = s, c
            self._count(model.name, name, len(groups[name]))
            self.shadow(name, matrix[groups[name]], result.scores)
        main = max(names, key=lambda n: len(groups[n]))
        versions = {n: r.version for n, r in zip(names, results, strict=True)}
        if len(names) == 1:
            return RoutedResult(scores, cached, main, versions[main])
        return RoutedResult(scores, cached, main, versions[main], chosen, versions)
