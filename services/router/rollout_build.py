"""The candidates and rollouts the router's settings configure (inline or behind a runner)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from services.router import metrics
from services.router.models import InlineModel, ServedModel
from services.router.predictor import Predictor
from services.router.rollout_figures import FigureStore, MemoryFigures
from services.router.rollout_redis import RedisFigures
from services.router.rollout_serving import Rollouts
from services.router.runner_http import RunnerTransport
from services.router.runners import RunnerClient, RunnerModel
from services.router.settings import RouterSettings
from services.router.shared_state import SharedRecords
from winemeup.runtimes import load_runtime


def build_candidates(s: RouterSettings, transport: RunnerTransport) -> dict[str, ServedModel]:
    """The candidate version of each model the settings name: behind its runner, or inline."""
    token = s.runner_token.get_secret_value() if s.runner_token is not None else None
    candidates: dict[str, ServedModel] = {}
    for name, spec in s.candidates.items():
        model: ServedModel
        if spec.get("url"):
            client = RunnerClient(transport, spec["url"], s.runner_timeout_seconds, token)
            model = RunnerModel(
                name,
                client,
                s.health_interval_seconds,
                s.microbatch_max_rows,
                s.microbatch_wait_ms,
                s.runner_max_inflight_calls,
            )
        else:
            loader = functools.partial(
                load_runtime,
                version=spec["version"],
                batch_threads=s.inline_threads,
                path=s.serving_path,
                store=s.model_store,
            )
            model = InlineModel(
                name,
                s.inline_thread_min_rows,
                s.health_interval_seconds,
                loader=loader,
                loop_max_seconds=s.inline_loop_max_seconds,
                store=s.model_store,
            )
        # Its own readiness series: the stable version keeps the model's.
        model._ready_gauge = metrics.MODEL_READY.labels(f"{name}:candidate", model.placement)
        candidates[name] = model
    return candidates


def build_rollouts(
    s: RouterSettings, names: list[str], stable: Callable[[str], ServedModel | None], predictor: Predictor,
    records: SharedRecords, transport: RunnerTransport,
) -> Rollouts:  # fmt: skip
    """The rollouts the settings configure, with their candidates, sharing figures like ``records``."""
    figures: FigureStore = MemoryFigures()
    client = getattr(records, "client", None)
    if records.shared and client is not None:
        figures = RedisFigures(client)
    return Rollouts(
        names,
        stable,
        build_candidates(s, transport),
        {name: spec["version"] for name, spec in s.candidates.items()},
        predictor,
        records,
        figures,
        s.rollouts,
        s.rollout_interval_seconds,
        s.shadow_max_inflight,
    )
