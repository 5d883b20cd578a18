"""The router's OpenAPI document says what the router does: schemathesis, every check, 0 failures.

Schemathesis reads a real router's ``/openapi.json``, generates valid and invalid requests
for every operation and checks every answer against the document (status codes, content
types, response schemas, headers, that invalid data is rejected and valid data accepted, that
a missing key is refused). The example count is bounded so the run takes well under a minute.

The cross-field rule (free SO2 must not exceed total SO2) cannot be said in JSON Schema: the
document states it in the description, and ``schemathesis.toml`` lets schema-valid data get
its 422 on the predict routes. Schemathesis runs twice: with an admin key and with a user key.

Every route of the router's dispatch table (walked, not listed by hand) is guarded as it
says: without a key 401, an admin route with a user key 403, and a route is open only when
it is a probe, the metrics or the API's own documents.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.router.app import create_app
from services.router.settings import RouterSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 20
"""Examples per operation and phase: about 10-20 s here for the whole API (~700 requests)."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""Where the one expected 422 of schema-valid data (the cross-field rule) is declared."""
MODELS = ["lightgbm", "xgboost"]
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/v2/health/live",
    "/v2/health/ready",
}
"""The only routes a request without a key may use: probes, metrics and the API's documents."""


@pytest.fixture(scope="module")
def contract_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-contract"),
        model_store,
        models=MODELS,
        default_model="lightgbm",
        preload_inline_models=True,
        batch_max_rows=20,
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


@pytest.mark.parametrize("admin", [True, False], ids=["admin key", "user key"])
def test_schemathesis_finds_no_mismatch(contract_router: Any, tmp_path: Path, admin: bool) -> None:
    """With an admin key every operation is reachable; with a user key the admin operations
    must answer their documented 403 and the others as with the admin key."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is part of the dev requirements (requirements/dev.in)"
    argv = [
        cli,
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{contract_router.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--header",
        f"X-API-Key: {contract_router.admin_key if admin else contract_router.api_key}",
        "--request-timeout",
        "10",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found mismatches:\n{output[-8000:]}"
    assert "No issues found" in output or " passed" in output, output[-4000:]


def route_table(model_store: Path) -> list[tuple[str, str, str]]:
    """(method, path, auth) of every route the router dispatches, read from its own tables
    (/v1 and operations by path, /v2 by template) of an app built like the contract router."""
    app = create_app(
        RouterSettings(api_keys="user", admin_api_keys="admin", models=MODELS, model_store=model_store)  # type: ignore[call-arg]
    )
    return [
        (method, path, route.auth)
        for table in (app._table, app._v2_table)  # the dispatch tables themselves, not a copy
        for path, methods in table.items()
        for method, route in methods.items()
    ]


def test_every_route_is_guarded_as_the_table_says(contract_router: Any, model_store: Path) -> None:
    routes = route_table(model_store)
    assert {auth for _, _, auth in routes} == {"open", "user", "admin"}
    assert {path for _, path, auth in routes if auth == "open"} <= OPEN_PATHS
    # A route that changes the router is an admin route.
    assert all(auth == "admin" for method, _, auth in routes if method in ("PUT", "PATCH", "DELETE"))
    keys = {"none": None, "user": contract_router.api_key, "admin": contract_router.admin_key}
    refused = []
    with httpx.Client(base_url=contract_router.url, timeout=10) as client:
        for method, template, auth in routes:
            path = re.sub(r"\{name\}", "lightgbm", re.sub(r"\{version\}", "1", template))
            for holder, key in keys.items():
                headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
                status = client.request(method, path, content=b"{}", headers=headers).status_code
                if auth == "open":
                    want_refused = None
                elif holder == "none":
                    want_refused = 401
                elif holder == "user" and auth == "admin":
                    want_refused = 403
                else:
                    want_refused = None
                if want_refused is not None and status != want_refused:
                    refused.append(f"{method} {path} with {holder} key: {status}, expected {want_refused}")
                if want_refused is None and status in (401, 403):
                    refused.append(f"{method} {path} with {holder} key: {status}, expected no refusal")
    assert not refused, "\n".join(refused)
    assert any(auth == "admin" for _, _, auth in routes)
