"""Rollouts at serving time: a candidate version beside the stable one, routed, compared, gated.

The rules are pure (:mod:`services.router.rollout`); here they meet served models:

* :meth:`Rollouts.predict`: the candidate answers its step's share of wines (sticky per wine),
  the stable version the rest. A candidate that fails or is down has its rows answered by the
  stable version: it never costs a request. After the answer the other version scores the same
  wines (bounded; shed beyond ``max_inflight``) and the pairs go into the step's figures.
* Every ``interval`` s each replica publishes its figures to a
  :class:`~services.router.rollout_figures.FigureStore`, merges every replica's and asks the
  gate; with ``auto`` it acts and writes the shared record ``rollouts`` all replicas follow.
* Promote and roll back are changes of share (all to the candidate, all to the stable version).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from services.router import metrics
from services.router.models import READY, ServedModel
from services.router.policies import PolicyError
from services.router.predictor import BatchResult, Predictor
from services.router.rollout import Action, Decision, RolloutPolicy, RolloutState, decide
from services.router.rollout_figures import FigureStore, StepFigures
from services.router.shared_state import Record, SharedRecords

logger = logging.getLogger(__name__)

ROLLOUT_RECORD = "rollouts"
"""Name of the shared record of every model's rollout state."""


@dataclass(slots=True)
class Routed:
    """Rows answered under a rollout: scores, cached flags, the version answering most rows and
    (when both versions answered) each row's version."""

    scores: list[float]
    cached: list[bool]
    version: str
    row_versions: list[str] | None


@dataclass
class _Live:
    """One model's rollout on this replica: the state in force and this step's local figures."""

    state: RolloutState
    figures: StepFigures = field(default_factory=StepFigures)
    merged: StepFigures = field(default_factory=StepFigures)
    decision: Decision | None = None
    shed: int = 0


def _fingerprint(doc: Any) -> str:
    return hashlib.blake2b(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


class Rollouts:
    """Every model's candidate and rollout on this replica, shared with the others."""

    def __init__(
        self,
        names: list[str],
        stable: Callable[[str], ServedModel | None],
        candidates: Mapping[str, ServedModel],
        candidate_versions: Mapping[str, str],
        predictor: Predictor,
        records: SharedRecords,
        figures: FigureStore,
        configured: Mapping[str, Any],
        interval: float = 1.0,
        max_inflight: int = 64,
        clock: Callable[[], float] = time.time,
    ):
        self.names = list(names)
        self.stable = stable
        self.candidates = dict(candidates)
        self.candidate_versions = dict(candidate_versions)
        self.predictor = predictor
        self.records = records
        self.figure_store = figures
        self.interval = interval
        self.max_inflight = max_inflight
        self.clock = clock
        self.replica = uuid.uuid4().hex[:12]
        self.live: dict[str, _Live] = {}
        self.deleted: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.configured_doc = dict(configured)
        self.configured = _fingerprint(
            {"rollouts": self.configured_doc, "candidates": self.candidate_versions}
        )
        for name, doc in self.configured_doc.items():
            try:
                policy = RolloutPolicy.from_dict({"model": name, **doc}, self._served())
            except PolicyError as e:
                raise ValueError(f"rollouts.{name}.{e.field}: {e.problem}") from e
            self.live[name] = _Live(RolloutState(policy, since=self.clock()))
        self._publish_metrics()

    # ---- what is served ---------------------------------------------------------------------

    def _served(self) -> dict[str, tuple[str | None, str | None]]:
        """Each model's (stable, candidate) versions; a model without a candidate has None."""
        served: dict[str, tuple[str | None, str | None]] = {}
        for name in self.names:
            stable = self.stable(name)
            served[name] = (stable.version if stable else None, self.candidate_versions.get(name))
        return served

    def state(self, name: str) -> RolloutState | None:
        live = self.live.get(name)
        return live.state if live is not None else None

    def active(self, name: str) -> bool:
        """True when ``name``'s rows go through :meth:`predict` (a rollout running or promoted)."""
        live = self.live.get(name)
        return live is not None and live.state.phase != "rolled_back" and name in self.candidates

    def serving(self, model: ServedModel) -> ServedModel:
        """The model object that answers for ``model`` once its rollout is over (the promoted candidate)."""
        live = self.live.get(model.name)
        if live is not None and live.state.phase == "promoted" and model.name in self.candidates:
            return self.candidates[model.name]
        return model

    def version_of(self, name: str, version: str) -> ServedModel | None:
        """The model object serving ``name`` at ``version`` (stable or candidate), or None."""
        stable = self.stable(name)
        if stable is None:
            return None
        serving = self.serving(stable)
        candidate = self.candidates.get(name)
        for model in (serving, candidate):
            if model is not None and model.version == version:
                return model
        return None

    def versions(self, name: str) -> list[dict[str, Any]] | None:
        """The versions of ``name`` served now (stable, then candidate), or None without a candidate."""
        stable, candidate = self.stable(name), self.candidates.get(name)
        if stable is None or candidate is None:
            return None
        live = self.live.get(name)
        phase = live.state.phase if live is not None else None
        entries = []
        if phase != "promoted":
            entries.append({"version": stable.version, "role": "stable", "status": stable.status,
                            "placement": stable.placement})  # fmt: skip
        role = "stable" if phase == "promoted" else "candidate"
        entries.append({"version": candidate.version, "role": role, "status": candidate.status,
                        "placement": candidate.placement})  # fmt: skip
        return entries

    def _candidate_ready(self, live: _Live) -> tuple[bool, str]:
        candidate = self.candidates[live.state.policy.model]
        if candidate.status != READY:
            return False, f"candidate {candidate.status}: {candidate.reason or 'not ready'}"
        if candidate.version != live.state.policy.candidate:
            return False, (
                f"the candidate serves version {candidate.version!r}, "
                f"the rollout names {live.state.policy.candidate!r}"
            )
        return True, ""

    # ---- serving ----------------------------------------------------------------------------

    async def _timed(self, model: ServedModel, rows: np.ndarray) -> tuple[BatchResult, float | None]:
        started = time.perf_counter()
        result = await self.predictor.predict_many(model, rows)
        elapsed = time.perf_counter() - started
        return result, None if any(result.cached) else elapsed

    async def predict(self, stable: ServedModel, matrix: np.ndarray) -> Routed:
        """Scores of ``matrix`` sent to ``stable``'s name under its rollout (see the module doc)."""
        name = stable.name
        live = self.live[name]
        candidate = self.candidates[name]
        if live.state.phase == "promoted":
            result = await self.predictor.predict_many(candidate, matrix)
            return Routed(result.scores, result.cached, result.version, None)
        ready, _ = self._candidate_ready(live)
        mask = live.state.to_candidate(matrix) if ready else np.zeros(matrix.shape[0], dtype=bool)
        n = matrix.shape[0]
        scores = [0.0] * n
        cached = [False] * n
        versions: list[str] = [""] * n
        figures = live.figures
        to_candidate = np.flatnonzero(mask)
        to_stable = np.flatnonzero(~mask)
        candidate_result: BatchResult | None = None
        if to_candidate.size:
            try:
                candidate_result, seconds = await self._timed(candidate, matrix[to_candidate])
                figures.candidate.observe(seconds, rows=to_candidate.size)
            except Exception as e:  # the candidate never fails a request: the stable version answers
                figures.candidate.observe(None, failed=True, rows=to_candidate.size)
                metrics.ROLLOUT_FALLBACKS.labels(name).inc()
                logger.debug("candidate of %s failed on %d rows: %s", name, to_candidate.size, e)
                to_stable = np.arange(n)
        if to_stable.size:
            stable_result, seconds = await self._timed(stable, matrix[to_stable])
            figures.stable.observe(seconds, rows=to_stable.size)
            for i, s, c in zip(to_stable.tolist(), stable_result.scores, stable_result.cached, strict=True):
                scores[i], cached[i], versions[i] = s, c, stable_result.version
            if live.state.comparing and live.state.step == "shadow":
                self._compare(live, candidate, matrix[to_stable], stable_result.scores, served_by_stable=True)
        if candidate_result is not None and to_stable.size < n:
            for i, s, c in zip(
                to_candidate.tolist(), candidate_result.scores, candidate_result.cached, strict=True
            ):
                scores[i], cached[i], versions[i] = s, c, candidate_result.version
            if live.state.comparing:
                self._compare(
                    live, stable, matrix[to_candidate], candidate_result.scores, served_by_stable=False
                )
        main = max(set(versions), key=versions.count)
        return Routed(scores, cached, main, versions if len(set(versions)) > 1 else None)

    def _compare(
        self, live: _Live, other: ServedModel, rows: np.ndarray, served: list[float], served_by_stable: bool
    ) -> None:
        """After the answer, score ``rows`` with ``other`` too and add the pairs (shed when busy)."""
        if len(self._tasks) >= self.max_inflight:
            live.shed += 1
            metrics.ROLLOUT_COMPARISONS_SHED.labels(live.state.policy.model).inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._score_pair(live, other, rows, served, served_by_stable)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score_pair(
        self, live: _Live, other: ServedModel, rows: np.ndarray, served: list[float], served_by_stable: bool
    ) -> None:
        epoch = live.state.epoch
        side = live.figures.candidate if served_by_stable else live.figures.stable
        try:
            result, seconds = await self._timed(other, rows)
        except Exception as e:  # a comparison never fails anything but itself
            if epoch == live.state.epoch:
                side.observe(None, failed=True, rows=rows.shape[0])
            logger.debug("rollout comparison on %s failed: %s", other.name, e)
            return
        if epoch != live.state.epoch:  # the step changed meanwhile: these pairs belong to no step
            return
        side.observe(seconds, rows=rows.shape[0])
        if served_by_stable:
            live.figures.compare(served, result.scores)
        else:
            live.figures.compare(result.scores, served)

    # ---- the gate ---------------------------------------------------------------------------

    async def evaluate(self) -> None:
        """Publish this replica's figures, merge every replica's, decide, act when ``auto``."""
        for name, live in list(self.live.items()):
            state = live.state
            if state.phase != "running" or name not in self.candidates:
                continue
            await self.figure_store.publish(name, state.epoch, self.replica, live.figures.to_record())
            parts = await self.figure_store.gather(name, state.epoch)
            if live.state is not state:  # adopted another state meanwhile
                continue
            live.merged = StepFigures.merged(StepFigures.from_record(p) for p in parts)
            ready, reason = self._candidate_ready(live)
            live.decision = decide(state, live.merged, ready, reason, self.clock())
            self._publish_decision(live)
            if state.policy.auto and live.decision.action != "hold":
                await self._act(name, live.decision.action, live.decision, state.epoch)

    async def _act(
        self, name: str, action: Action, decision: Decision | None, epoch: int | None = None
    ) -> RolloutState:
        await self._sync_once()  # another replica may have moved it already
        live = self.live.get(name)
        if live is None:
            raise PolicyError("model", f"no rollout of {name!r}")
        if epoch is not None and live.state.epoch != epoch:
            return live.state  # decided on a step that is no longer in force
        new = live.state.after(action, self.clock(), decision)
        if new is live.state:
            return new
        logger.info(
            "rollout of %s: %s at step %s (%s)",
            name,
            action,
            live.state.step,
            decision.reason if decision is not None else "admin request",
        )
        self._install(name, new)
        await self._write()
        return new

    def _install(self, name: str, state: RolloutState) -> None:
        live = self.live.get(name)
        if live is not None and live.state.epoch == state.epoch and live.state == state:
            return
        self.live[name] = _Live(state)
        self.deleted.pop(name, None)
        self._publish_metrics()

    # ---- admin operations -------------------------------------------------------------------

    def _next_epoch(self, name: str) -> int:
        live = self.live.get(name)
        return max(live.state.epoch if live else -1, self.deleted.get(name, -1)) + 1

    async def put(self, doc: Any) -> RolloutState:
        """Start (or replace) a model's rollout at its first step; PolicyError names the field."""
        await self._sync_once()
        served = self._served()
        policy = RolloutPolicy.from_dict(doc, served)
        state = RolloutState(policy, epoch=self._next_epoch(policy.model), since=self.clock())
        self._install(policy.model, state)
        await self._write()
        return state

    async def delete(self, name: str) -> None:
        """Remove a model's rollout: every wine goes to the stable version (PolicyError: none)."""
        await self._sync_once()
        if name not in self.live:
            raise PolicyError("model", f"no rollout of {name!r}; rollouts: {', '.join(self.live) or 'none'}")
        self.deleted[name] = self._next_epoch(name)
        del self.live[name]
        self._publish_metrics()
        await self._write()

    async def act(self, name: str, action: Action) -> RolloutState:
        """An admin's promote, roll back or advance (PolicyError: no running rollout)."""
        await self._sync_once()
        live = self.live.get(name)
        if live is None:
            raise PolicyError("model", f"no rollout of {name!r}; rollouts: {', '.join(self.live) or 'none'}")
        if live.state.phase != "running":
            raise PolicyError(
                "model", f"the rollout of {name!r} is over ({live.state.phase.replace('_', ' ')})"
            )
        return await self._act(name, action, None)

    # ---- sharing ----------------------------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        states: dict[str, Any] = {name: live.state.to_record() for name, live in self.live.items()}
        for name, epoch in self.deleted.items():
            states[name] = {"deleted": True, "epoch": epoch}
        return {"configured": self.configured, "states": states}

    async def _write(self) -> None:
        if self.records.shared:
            await self.records.write(ROLLOUT_RECORD, self._document())

    def adopt(self, record: Record) -> None:
        """Adopt every model's state that is newer in the shared record (made over our configuration)."""
        if record.get("configured") != self.configured:
            return
        states = record.get("states")
        if not isinstance(states, Mapping):
            return
        for name, doc in states.items():
            if not isinstance(doc, Mapping) or name not in self.candidates:
                continue
            epoch = doc.get("epoch")
            if not isinstance(epoch, int):
                continue
            live = self.live.get(name)
            mine = max(live.state.epoch if live else -1, self.deleted.get(name, -1))
            if epoch <= mine:
                continue
            if doc.get("deleted"):
                self.live.pop(name, None)
                self.deleted[name] = epoch
                self._publish_metrics()
                logger.info("rollout of %s removed on another replica", name)
                continue
            try:
                state = RolloutState.from_record(doc)
            except PolicyError as e:
                logger.warning("ignoring the shared rollout of %s: %s", name, e)
                continue
            self._install(name, state)
            logger.info("rollout of %s at step %s (%s), from another replica", name, state.step, state.phase)

    async def _sync_once(self) -> None:
        if self.records.shared:
            record = await self.records.read(ROLLOUT_RECORD)
            if record is not None:
                self.adopt(record)

    def _publish_metrics(self) -> None:
        metrics.set_rollout_states(
            {n: (live.state.candidate_percent, live.state.phase) for n, live in self.live.items()}
        )

    def _publish_decision(self, live: _Live) -> None:
        if live.decision is not None:
            metrics.set_rollout_decision(live.state.policy.model, live.decision.action, live.merged.summary())

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the candidates, adopt the shared states, then decide every ``interval`` seconds."""
        for candidate in self.candidates.values():
            await candidate.start()
            warming = asyncio.ensure_future(candidate.warm())
            self._tasks.add(warming)
            warming.add_done_callback(self._tasks.discard)
        if self.records.shared:
            record = await self.records.read(ROLLOUT_RECORD)
            if record is not None and record.get("configured") == self.configured:
                self.adopt(record)
            elif self.live:
                await self._write()  # the configured rollouts start here, for every replica
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.evaluate()
            except Exception:  # a gate bug must not stop the gate
                logger.exception("evaluating the rollouts failed")

    async def close(self) -> None:
        """Stop the gate, wait for comparisons, stop the candidates' probes."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for candidate in self.candidates.values():
            await candidate.close()
