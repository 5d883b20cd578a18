"""The router's parts built from its settings, put together as the data plane.

The one place that chooses implementations (Redis or memory, inline or runner); the protocol
codecs receive the :class:`~services.router.dataplane.DataPlane` this builds.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from services.router.cache import MemoryCache, PredictionCache, TieredCache
from services.router.dataplane import DataPlane, Limits
from services.router.drift import DriftMonitor
from services.router.ensemble import build_ensembles
from services.router.explain import Explainer, ExplanationCache
from services.router.lru import MemoryLRU
from services.router.model_insight import ModelInsight
from services.router.models import InlineModel, ServedModel
from services.router.policies import PolicyError
from services.router.predictor import Predictor
from services.router.redis_cache import RedisCache
from services.router.redis_connection import redis_client
from services.router.redis_records import RedisRecords
from services.router.registry import ModelRegistry
from services.router.rollout_build import build_rollouts
from services.router.runner_http import RunnerConnections, RunnerTransport
from services.router.runner_session import RecyclingSession
from services.router.runners import RunnerClient, RunnerModel
from services.router.settings import RouterSettings
from services.router.shared_state import MemoryRecords, RecordPoller, SharedRecords
from services.router.traffic import Traffic
from winemeup.runtimes import load_runtime


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def make_cache(
    redis_url: str | None,
    ttl_seconds: int,
    max_entries: int,
    timeout_seconds: float,
    backoff_seconds: float = 0.5,
    near_entries: int = 0,
    redis_password: str | None = None,
    redis_tls_ca_file: str | None = None,
) -> PredictionCache:
    """Redis (behind a near LRU of ``near_entries`` unless 0) when a URL is set, else the in-memory LRU."""
    if redis_url:
        far = RedisCache(
            redis_url,
            ttl_seconds,
            timeout_seconds,
            backoff_seconds,
            password=redis_password,
            tls_ca_file=redis_tls_ca_file,
        )
        if near_entries > 0:
            return TieredCache(MemoryLRU(near_entries, ttl_seconds), far)
        return far
    return MemoryCache(max_entries, ttl_seconds)


def build_cache(s: RouterSettings) -> PredictionCache:
    """The prediction cache the settings ask for."""
    return make_cache(
        _secret(s.redis_url),
        s.cache_ttl_seconds,
        s.cache_max_entries,
        s.redis_timeout_seconds,
        s.cache_backoff_seconds,
        s.near_cache_entries,
        _secret(s.redis_password),
        str(s.redis_tls_ca_file) if s.redis_tls_ca_file is not None else None,
    )


def build_shared_records(s: RouterSettings) -> SharedRecords:
    """Redis when the settings name one (every replica sees the records), else this process only."""
    url = _secret(s.redis_url)
    if not url:
        return MemoryRecords()
    ca = str(s.redis_tls_ca_file) if s.redis_tls_ca_file is not None else None
    return RedisRecords(url, s.redis_timeout_seconds, _secret(s.redis_password), ca)


def _runner_session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60, ttl_dns_cache=300),
        json_serialize=lambda o: orjson.dumps(o).decode(),
    )


def build_models(s: RouterSettings, transport: RunnerTransport) -> list[ServedModel]:
    """One served model per configured name, inline or behind its runner."""
    models: list[ServedModel] = []
    loader = functools.partial(
        load_runtime, batch_threads=s.inline_threads, path=s.serving_path, store=s.model_store
    )
    for name in s.models:
        if s.placement_of(name) == "runner":
            client = RunnerClient(
                transport, s.runner_urls[name], s.runner_timeout_seconds, _secret(s.runner_token)
            )
            models.append(
                RunnerModel(
                    name,
                    client,
                    s.health_interval_seconds,
                    s.microbatch_max_rows,
                    s.microbatch_wait_ms,
                    s.runner_max_inflight_calls,
                )
            )
        else:
            models.append(
                InlineModel(
                    name,
                    s.inline_thread_min_rows,
                    s.health_interval_seconds,
                    loader=loader,
                    loop_max_seconds=s.inline_loop_max_seconds,
                    store=s.model_store,
                )
            )
    return models


def served_models(s: RouterSettings, transport: RunnerTransport) -> list[ServedModel]:
    """The configured models, then the ensembles of them the settings declare."""
    models = build_models(s, transport)
    try:
        return [*models, *build_ensembles(s.ensembles, models)]
    except PolicyError as e:
        raise ValueError(f"WINEMEUP_ROUTER_ENSEMBLES: {e}") from e


def build(s: RouterSettings) -> DataPlane:
    """The data plane for ``s``: cache, runner session, models, registry, traffic, insight, drift.

    Nothing here needs a running event loop (the runner session opens on first use), so the
    application is complete from its construction; ``DataPlane.start`` starts the background work.
    """
    # Opens on first use; renewed by age so that runner pods added by a scale-out get connections too.
    transport = RunnerTransport(
        RecyclingSession(
            _runner_session, s.runner_connection_max_age_seconds, s.runner_timeout_seconds + 1.0
        ),
        RunnerConnections(s.runner_connection_max_age_seconds),
    )
    records = build_shared_records(s)
    registry = ModelRegistry(served_models(s, transport), s.default_model, records)
    cache = build_cache(s)
    predictor = Predictor(cache)
    traffic = Traffic(registry, predictor, {"splits": s.splits, "shadows": s.shadows}, s.shadow_max_inflight)
    return DataPlane(
        registry,
        traffic,
        predictor,
        cache,
        ModelInsight(s.runner_timeout_seconds),
        Explainer(build_explanation_cache(s), s.explain_timeout_seconds),
        DriftMonitor(s.drift_window_rows, s.drift_interval_seconds, s.drift_psi_threshold, s.drift_enabled),
        RecordPoller(records, s.default_sync_seconds),
        Limits(s.batch_max_rows, s.explain_max_rows, s.explain_max_inflight, s.explain_retry_seconds),
        build_rollouts(s, registry.names, registry.get, predictor, records, transport),
        closers=[transport.close],
    )


def build_explanation_cache(s: RouterSettings) -> ExplanationCache:
    """The explanation cache: an in-process LRU, with the router's Redis behind it when it has one."""
    url = _secret(s.redis_url)
    redis = None
    if url:
        ca = str(s.redis_tls_ca_file) if s.redis_tls_ca_file is not None else None
        redis = redis_client(
            url, s.redis_timeout_seconds * 10, password=_secret(s.redis_password), tls_ca_file=ca
        )
    return ExplanationCache(s.explain_cache_entries, s.cache_ttl_seconds, redis, s.cache_backoff_seconds)
