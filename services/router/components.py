"""The router's parts built from its settings: cache, shared records, models and registry.

The one place that chooses implementations (Redis or memory, inline or runner); the HTTP
adapter receives what this builds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from services.router.cache import MemoryCache, PredictionCache, TieredCache
from services.router.drift import DriftMonitor
from services.router.ensemble import build_ensembles
from services.router.explain import Explainer, ExplanationCache
from services.router.lru import MemoryLRU
from services.router.model_insight import ModelInsight
from services.router.models import InlineModel, RunnerClient, RunnerModel, ServedModel
from services.router.policies import PolicyError
from services.router.redis_cache import RedisCache
from services.router.redis_connection import redis_client
from services.router.redis_records import RedisRecords
from services.router.registry import ModelRegistry
from services.router.runner_session import RecyclingSession
from services.router.settings import RouterSettings
from services.router.shared_state import MemoryRecords, SharedRecords
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


@dataclass
class Components:
    """What the HTTP adapter serves with; ``close()`` releases it all but the registry's models."""

    cache: PredictionCache
    registry: ModelRegistry
    session: Any = None
    insight: ModelInsight | None = None
    explainer: Explainer | None = None
    drift: DriftMonitor | None = None

    async def close(self) -> None:
        """Close the runner session and the caches (the registry is closed by its owner)."""
        if self.drift is not None:
            await self.drift.stop()
        if self.session is not None:
            await self.session.close()
        await self.cache.close()
        if self.explainer is not None:
            await self.explainer.cache.close()


def _runner_session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60, ttl_dns_cache=300),
        json_serialize=lambda o: orjson.dumps(o).decode(),
    )


def build_models(s: RouterSettings, session: Any) -> list[ServedModel]:
    """One served model per configured name, inline or behind its runner."""
    models: list[ServedModel] = []
    loader = functools.partial(
        load_runtime, batch_threads=s.inline_threads, path=s.serving_path, store=s.model_store
    )
    for name in s.models:
        if s.placement_of(name) == "runner":
            client = RunnerClient(session, s.runner_urls[name], s.runner_timeout_seconds)
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


def served_models(s: RouterSettings, session: Any) -> list[ServedModel]:
    """The configured models, then the ensembles of them the settings declare."""
    models = build_models(s, session)
    try:
        return [*models, *build_ensembles(s.ensembles, models)]
    except PolicyError as e:
        raise ValueError(f"WINEMEUP_ROUTER_ENSEMBLES: {e}") from e


def build(s: RouterSettings) -> Components:
    """Cache, runner session, models and registry for ``s`` (call inside the event loop)."""
    session = None
    if any(s.placement_of(m) == "runner" for m in s.models):
        # Renewed by age so that runner pods added by a scale-out get connections too.
        session = RecyclingSession(
            _runner_session, s.runner_connection_max_age_seconds, s.runner_timeout_seconds + 1.0
        )
    registry = ModelRegistry(
        served_models(s, session), s.default_model, build_shared_records(s), s.default_sync_seconds
    )
    return Components(
        build_cache(s),
        registry,
        session,
        ModelInsight(s.runner_timeout_seconds),
        Explainer(build_explanation_cache(s), s.explain_timeout_seconds),
        DriftMonitor(s.drift_window_rows, s.drift_interval_seconds, s.drift_psi_threshold, s.drift_enabled),
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
