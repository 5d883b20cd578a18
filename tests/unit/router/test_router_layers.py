"""The router's modules import only downward, and the registry knows no HTTP, Redis or cache keys."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import services.router

ROUTER = Path(services.router.__file__).parent

LAYERS = [
    # the pure core: settings, metrics, parsing, keys and cache building blocks
    "settings",
    "metrics",
    "auth",
    "validation",
    "oip",
    "oip_encode",
    "policies",
    "rollout_figures",
    "rollout",
    "cache_keys",
    "lru",
    "single_flight",
    "rate_limited_log",
    "cache",
    "shared_state",
    # adapters of the core to Redis and to models (inline, runners)
    "redis_connection",
    "resp",
    "redis_cache",
    "redis_records",
    "rollout_redis",
    "runner_session",
    "request_log",
    "models",
    "runner_http",
    "runners",
    "ensemble",
    "model_insight",
    "explain",
    "drift",
    # the registry and the predictor, then the parts built from settings
    "registry",
    "predictor",
    "traffic",
    "rollout_serving",
    "rollout_build",
    # the data plane, built from settings
    "dataplane",
    "components",
    "rate_limit",
    # the protocol codecs over HTTP, then the application and the process
    "http",
    "openapi",
    "rollout_api",
    "v1",
    "v2",
    "app",
    "__main__",
]
"""Every module of services/router, lowest first: a module imports only modules above it."""


def _router_imports(module: str) -> set[str]:
    tree = ast.parse((ROUTER / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "services.router":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("services.router."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("services.router.")}
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    modules = {p.stem for p in ROUTER.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_no_module_imports_upward() -> None:
    for rank, module in enumerate(LAYERS):
        upward = {m for m in _router_imports(module) if LAYERS.index(m) >= rank}
        assert not upward, f"{module} imports {upward}, which are not below it"


def test_the_registry_knows_no_http_redis_or_cache_keys() -> None:
    source = (ROUTER / "registry.py").read_text()
    imported = _router_imports("registry")
    assert imported <= {"metrics", "models", "shared_state"}
    for word in ("redis", "aiohttp", "KeyMaker", "Request", "Response", "orjson"):
        assert word not in source.replace("Redis in production", ""), word


CODECS = ("v1", "v2")
CODEC_MAY_IMPORT = {"dataplane", "http", "validation", "oip", "oip_encode"}
"""The data plane's interface, the HTTP primitives and the pure decoding and encoding of each protocol."""


def test_the_codecs_reach_models_only_through_the_data_plane() -> None:
    for codec in CODECS:
        imported = _router_imports(codec)
        assert imported <= CODEC_MAY_IMPORT, f"{codec} imports {imported - CODEC_MAY_IMPORT}"


def test_the_application_holds_no_feature_and_no_optional_part() -> None:
    source = (ROUTER / "app.py").read_text()
    assert len(source.splitlines()) <= 350
    assert not re.search(r"self\.\w+: [^=]*\| None", source), "a part is Optional until start-up"
    for word in ("assert ", "_Server", "self.predictor", "self.traffic", ".drift.", "_intervals", "lambda"):
        assert word not in source, word
    assert _router_imports("app").isdisjoint(
        {"models", "registry", "traffic", "predictor", "drift", "explain"}
    )


def test_no_module_is_over_450_lines() -> None:
    long = {p.name: n for p in ROUTER.glob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
