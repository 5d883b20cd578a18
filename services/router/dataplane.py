"""The data plane: what both protocols serve, whatever their wire format.

MLServer's ``handlers/dataplane.py`` and KServe's ``protocol/dataplane.py`` keep one data plane
under their REST and gRPC apps; so does the router. ``/v1`` (:mod:`~services.router.v1`) and
the Open Inference Protocol (:mod:`~services.router.v2`) are codecs: they decode a request,
call one method here and encode its result. Everything that must hold on both protocols is
done once, here:

* the model name (and an optional version) is resolved;
* the limits are checked before any model or runner is called (rows per request, rows per
  explanation, explanations in flight per model);
* single rows and batches are routed through the traffic policies (canary split, shadow);
* intervals come from the calibration of the model version that served each row;
* served rows are recorded for drift.

Knows models, traffic, insight and drift; not HTTP, headers or wire formats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.router import metrics
from services.router.cache import PredictionCache
from services.router.drift import DriftMonitor
from services.router.explain import ExplainedRows, Explainer
from services.router.model_insight import ModelInsight
from services.router.models import ServedModel
from services.router.predictor import Predictor
from services.router.registry import DEFAULT_RECORD, ModelRegistry
from services.router.rollout_serving import ROLLOUT_RECORD, Rollouts
from services.router.shared_state import RecordPoller
from services.router.traffic import TRAFFIC_RECORD, RoutedResult, Traffic
from winemeup.errors import ModelUnavailable, TooManyRequests, ValidationFailed, VersionNotServed
from winemeup.insight import DriftReference
from winemeup.schema import FieldError

__all__ = ["DataPlane", "ExplainedRows", "Labels", "Limits", "ModelView", "Prediction"]

_NO_ROWS = np.empty((0, 0))
"""The rows passed on when no interval is asked: only intervals read them."""


@dataclass(slots=True)
class Labels:
    """What the metrics of one request are labelled with, filled in as the name is resolved."""

    model: str = "none"
    placement: str = ""
    rows: int = 0
    """Rows scored or explained (charged to the key's rows budget after the answer)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one request's work, the same on every protocol."""

    batch_max_rows: int
    explain_max_rows: int
    explain_max_inflight: int
    """Explanations running at once per model; beyond it a request is refused with 429."""
    explain_retry_seconds: float = 1.0


@dataclass(slots=True)
class Prediction:
    """The scores of one request's rows, in input order, and who served them."""

    model: str
    """The name the request was resolved to."""
    served_by: str
    """The model that served the rows (the one serving most of them when a split spread them)."""
    version: str
    scores: list[float]
    cached: list[bool]
    models: list[str] | None = None
    """The model of each row, when a split spread the rows over more than one model."""
    versions: dict[str, str] | None = None
    """The version of each model in ``models``."""
    row_versions: list[str] | None = None
    """The version of each row, when a rollout's stable and candidate versions both answered."""
    level: float | None = None
    low: list[float] | None = None
    high: list[float] | None = None


@dataclass(frozen=True, slots=True)
class ModelView:
    """What a protocol may tell about one served model."""

    name: str
    version: str | None
    platform: str
    status: str
    reason: str
    members: dict[str, float] | None = None
    on_member_down: str | None = None
    split: dict[str, float] | None = None
    versions: list[dict[str, Any]] | None = None
    """The stable and candidate versions served, when the model has a candidate."""


@dataclass(slots=True)
class _Bound:
    """Explanations in flight of one model."""

    running: int = 0
    refused: int = 0


@dataclass
class DataPlane:
    """Prediction, explanation, model and policy operations shared by both protocols."""

    registry: ModelRegistry
    traffic: Traffic
    predictor: Predictor
    cache: PredictionCache
    insight: ModelInsight
    explainer: Explainer
    drift: DriftMonitor
    poller: RecordPoller
    limits: Limits
    rollouts: Rollouts
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Further resources to release at :meth:`close` (the runner session)."""
    _explaining: dict[str, _Bound] = field(default_factory=dict)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, warm_all: bool) -> None:
        """Start the models, follow the shared records, start drift monitoring."""
        self.poller.follow(DEFAULT_RECORD, self.registry.adopt_default)
        self.poller.follow(TRAFFIC_RECORD, self.traffic.adopt)
        self.poller.follow(ROLLOUT_RECORD, self.rollouts.adopt)
        await self.registry.start(warm_all=warm_all)
        await self.rollouts.start()
        await self.poller.start()
        self.drift.start(self._drift_reference)

    async def close(self) -> None:
        """Stop polling and probes; wait for shadows and cache writes; close the caches."""
        await self.poller.close()
        await self.traffic.close()
        await self.rollouts.close()
        await self.registry.close()
        await self.predictor.drain()
        await self.drift.stop()
        for close in self.closers:
            await close()
        await self.cache.close()
        await self.explainer.cache.close()

    # ---- models -----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Served model names, in configuration order."""
        return self.registry.names

    def _resolve(self, name: str | None, labels: Labels, timed: bool = True) -> ServedModel:
        """The model ``name`` resolves to; ``labels`` name it (and its placement when ``timed``:
        the latency histogram is kept for predictions, explanations and swaps)."""
        labels.model = "unknown"
        model = self.registry.resolve(name)
        labels.model = model.name
        if timed:
            labels.placement = model.placement
        return model

    def _view(self, model: ServedModel, version: str | None) -> ModelView:
        spec = getattr(model, "spec", None)
        split = self.traffic.splits.get(model.name)
        return ModelView(
            model.name,
            version,
            model.framework or model.placement,
            model.status,
            model.reason,
            dict(spec.members) if spec is not None else None,
            spec.on_member_down if spec is not None else None,
            split.as_dict() if split is not None else None,
            self.rollouts.versions(model.name),
        )

    def check_name(self, name: str, labels: Labels) -> None:
        """Nothing if ``name`` is served (an alias included); UnknownModel (404) otherwise."""
        self._resolve(name, labels, timed=False)

    def model_state(self, name: str, labels: Labels) -> ModelView:
        """A model as it is now, without waiting for it."""
        model = self._resolve(name, labels, timed=False)
        return self._view(model, model.version)

    async def model(self, name: str, version: str | None, labels: Labels) -> ModelView:
        """A model once it can answer (ModelUnavailable), at the named version (VersionNotServed)."""
        model = self._resolve(name, labels, timed=False)
        if version is not None and (named := self.rollouts.version_of(model.name, version)) is not None:
            return self._view(model, await named.ensure_ready())
        served = await self.rollouts.serving(model).ensure_ready()
        if version is not None and version != served:
            raise VersionNotServed(
                f"model '{model.name}' version '{version}' is not served; the served version is '{served}'"
            )
        return self._view(model, served)

    async def served_version(self, name: str, labels: Labels) -> str:
        """The version ``name`` serves now (waiting for a loading model; ModelUnavailable)."""
        return await self.rollouts.serving(self._resolve(name, labels)).ensure_ready()

    def model_list(self) -> dict[str, Any]:
        """The default model and every model's entry (``GET /v1/models``)."""
        entries = self.registry.describe()
        for entry in entries:
            versions = self.rollouts.versions(entry["name"])
            if versions is not None:
                entry["versions"] = versions
                entry["version"] = versions[0]["version"]
                state = self.rollouts.state(entry["name"])
                if state is not None:
                    entry["rollout"] = {"step": state.step, "phase": state.phase}
        return {"default": self.registry.default, "models": entries}

    # ---- rollouts ---------------------------------------------------------------------------

    async def _rolled(self, model: ServedModel, rows: np.ndarray, level: float | None) -> Prediction:
        """The answer of a model under a rollout: each row from the version that served it."""
        routed = await self.rollouts.predict(model, rows)
        prediction = Prediction(
            model.name,
            model.name,
            routed.version,
            routed.scores,
            routed.cached,
            row_versions=routed.row_versions,
        )
        if level is not None:
            scores = np.asarray(routed.scores, dtype=np.float64)
            low, high = np.empty(len(scores)), np.empty(len(scores))
            row_versions = np.asarray(routed.row_versions or [routed.version] * len(scores))
            for version in dict.fromkeys(row_versions.tolist()):
                at = np.flatnonzero(row_versions == version)
                served = self.rollouts.version_of(model.name, version) or model
                low[at], high[at] = await self.insight.intervals(served, version, scores[at], rows[at], level)
            prediction.level, prediction.low, prediction.high = level, low.tolist(), high.tolist()
        return prediction

    async def set_default(self, name: str, labels: Labels) -> dict[str, Any]:
        """Make ``name`` the default here and, through the shared record, on every replica."""
        self._resolve(name, labels)
        swap = await self.registry.set_default(name)
        return {
            "default": swap.model.name,
            "previous": swap.previous,
            "status": swap.model.status,
            "shared": swap.shared,
        }

    def default_ready(self) -> ServedModel:
        """The default model when this pod can serve it (NotReady while it loads here)."""
        return self.registry.default_ready()

    async def readiness(self, ping_seconds: float) -> dict[str, Any]:
        """``/readyz``: the default model's state, the models not ready, the cache's reachability."""
        state: dict[str, Any] = {"backend": self.cache.backend}
        try:
            reachable = await asyncio.wait_for(self.cache.ping(), ping_seconds)
        except TimeoutError:
            reachable = False
        if reachable is not None:
            state["reachable"] = reachable
        model = self.registry.default_ready()
        return {
            "status": "ready",
            "default_model": model.name,
            "default_model_status": model.status,
            "version": model.version,
            "models_not_ready": self.registry.not_ready(),
            "cache": state,
        }

    # ---- traffic policies and drift ---------------------------------------------------------

    def traffic_status(self) -> dict[str, Any]:
        """The policies in force and this replica's figures."""
        return {**self.traffic.status(), "shared": self.registry.shared.shared}

    async def set_traffic(self, body: bytes) -> dict[str, Any]:
        """Change the policies (422 naming the field; the policies in force are then kept)."""
        shared = await self.traffic.update_body(body)
        return {**self.traffic.document(), "shared": shared}

    def drift_report(self) -> dict[str, Any]:
        """The last aggregation of the served-rows window."""
        return self.drift.describe()

    async def _drift_reference(self) -> tuple[str, DriftReference] | None:
        """The default model's drift reference (None while it cannot be read yet)."""
        model = self.registry.resolve(None)
        version = await model.ensure_ready()
        found = await self.insight.documents(model, version)
        if found.drift_reference is None:
            return None
        return f"{model.name}:{found.version}", found.drift_reference

    # ---- predictions ------------------------------------------------------------------------

    @staticmethod
    def _check_rows(rows: int, limit: int, where: str, setting: str) -> None:
        """422 naming the field and the limit, before any model or runner is called."""
        if rows > limit:
            raise ValidationFailed(
                [FieldError(where, f"at most {limit} rows per request ({setting}), got {rows}")]
            )

    async def predict_one(
        self, name: str | None, row: list[float], labels: Labels, level: float | None = None
    ) -> Prediction:
        """The score of one wine sent to ``name`` (None: the default), routed by the policies."""
        model = self._resolve(name, labels)
        labels.rows = 1
        if self.rollouts.active(model.name):
            rolled = await self._rolled(model, np.array((row,), dtype=np.float64), level)
            self.drift.add(row)
            return rolled
        routed = await self.traffic.predict_one(model, row)
        if routed.model != model.name:  # a canary split chose another model: label by it
            labels.model, labels.placement = routed.model, self.registry.resolve(routed.model).placement
        rows = np.array((row,), dtype=np.float64) if level is not None else _NO_ROWS  # for intervals only
        prediction = await self._finish(model, routed, level, rows)
        self.drift.add(row)
        return prediction

    async def predict(
        self,
        name: str | None,
        rows: np.ndarray,
        labels: Labels,
        version: str | None = None,
        level: float | None = None,
        field_name: str = "instances",
    ) -> Prediction:
        """The scores of a batch sent to ``name``; a named version is that model's own answer."""
        self._check_rows(rows.shape[0], self.limits.batch_max_rows, field_name, "batch_max_rows")
        if version is None and rows.shape[0] == 1:
            # One row takes the single-row path whatever the protocol: its cache lookup joins
            # the other requests' lookups of this event-loop turn, and concurrent misses of it
            # are computed once.
            return await self.predict_one(name, rows[0].tolist(), labels, level)
        model = self._resolve(name, labels)
        labels.rows = rows.shape[0]
        metrics.BATCH_ROWS.observe(rows.shape[0])
        if version is not None:  # a named version is never a canary's answer
            await self.model(model.name, version, labels)
            named = self.rollouts.version_of(model.name, version) or model
            plain = await self.predictor.predict_many(named, rows)
            routed = RoutedResult(plain.scores, plain.cached, model.name, plain.version)
            prediction = await self._finish(named, routed, level, rows)
            self.drift.add_rows(rows)
            return prediction
        if self.rollouts.active(model.name):
            rolled = await self._rolled(model, rows, level)
            self.drift.add_rows(rows)
            return rolled
        else:
            routed = await self.traffic.predict_many(model, rows)
        prediction = await self._finish(model, routed, level, rows)
        self.drift.add_rows(rows)
        return prediction

    async def _finish(
        self, model: ServedModel, routed: RoutedResult, level: float | None, rows: np.ndarray
    ) -> Prediction:
        prediction = Prediction(
            model.name,
            routed.model,
            routed.version,
            routed.scores,
            routed.cached,
            routed.models,
            routed.versions,
        )
        if level is not None:
            low, high = await self._intervals(routed, rows, level)
            prediction.level, prediction.low, prediction.high = level, low.tolist(), high.tolist()
        return prediction

    async def _intervals(
        self, routed: RoutedResult, rows: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's bounds from the calibration of the model version that served it."""
        scores = np.asarray(routed.scores, dtype=np.float64)
        if routed.models is None or routed.versions is None:
            model = self.registry.resolve(routed.model)
            return await self.insight.intervals(model, routed.version, scores, rows, level)
        low, high = np.empty(len(scores)), np.empty(len(scores))
        names = np.asarray(routed.models)
        for name in dict.fromkeys(routed.models):
            at = np.flatnonzero(names == name)
            low[at], high[at] = await self.insight.intervals(
                self.registry.resolve(name), routed.versions[name], scores[at], rows[at], level
            )
        return low, high

    # ---- explanations -----------------------------------------------------------------------

    @contextmanager
    def _explain_slot(self, model: str) -> Iterator[None]:
        """Hold one of the model's explanation slots; 429 with Retry-After when none is free."""
        bound = self._explaining.setdefault(model, _Bound())
        if bound.running >= self.limits.explain_max_inflight:
            bound.refused += 1
            metrics.EXPLAIN_REFUSED.labels(model).inc()
            raise TooManyRequests(
                f"model '{model}' is already explaining {bound.running} requests "
                f"(explain_max_inflight); retry later",
                self.limits.explain_retry_seconds,
            )
        bound.running += 1
        try:
            yield
        finally:
            bound.running -= 1

    async def explain(
        self, name: str | None, rows: np.ndarray, labels: Labels, field_name: str = "instances"
    ) -> tuple[str, ExplainedRows]:
        """(model name, explanations) of rows, within the row cap and the bound in flight."""
        self._check_rows(rows.shape[0], self.limits.explain_max_rows, field_name, "explain_max_rows")
        model = self.rollouts.serving(self._resolve(name, labels))
        labels.rows = rows.shape[0]
        with self._explain_slot(model.name):
            started = time.monotonic()
            try:
                result = await self.explainer.explain(model, rows)
            except TimeoutError as e:
                waited = time.monotonic() - started
                raise ModelUnavailable(model.name, f"the explanation took over {waited:.0f}s") from e
        return model.name, result
