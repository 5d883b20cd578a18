"""The router's modules import only downward, and the registry knows no HTTP, Redis or cache keys."""

from __future__ import annotations

import ast
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
    "policies",
    "cache_keys",
    "lru",
    "single_flight",
    "rate_limited_log",
    "cache",
    "shared_state",
    # adapters of the core to Redis and to models (inline, runners)
    "redis_connection",
    "redis_cache",
    "redis_records",
    "runner_session",
    "models",
    "ensemble",
    "model_insight",
    "explain",
    "drift",
    # the registry and the predictor, then the parts built from settings
    "registry",
    "predictor",
    "traffic",
    "v2",
    "v2_intervals",
    "openapi",
    "components",
    # the HTTP adapter and the process
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
