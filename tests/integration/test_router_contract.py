"""The router's OpenAPI document says what the router does: schemathesis, every check, 0 failures.

Schemathesis reads a real router's ``/openapi.json``, generates valid and invalid requests
for every operation and checks every answer against the document (status codes, content
types, response schemas, headers, that invalid data is rejected and valid data accepted, that
a missing key is refused). The example count is bounded so the run takes well under a minute.

The cross-field rule (free SO2 must not exceed total SO2) cannot be said in JSON Schema: the
document states it in the description, and ``schemathesis.toml`` lets schema-valid data get
its 422 on the predict routes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 20
"""Examples per operation and phase: about 10-20 s here for the whole API (~700 requests)."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""Where the one expected 422 of schema-valid data (the cross-field rule) is declared."""


@pytest.fixture(scope="module")
def contract_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-contract"),
        model_store,
        models=["lightgbm", "xgboost"],
        default_model="lightgbm",
        preload_inline_models=True,
        batch_max_rows=20,
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


def test_schemathesis_finds_no_mismatch(contract_router: Any, tmp_path: Path) -> None:
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
        f"X-API-Key: {contract_router.admin_key}",
        "--request-timeout",
        "10",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found mismatches:\n{output[-8000:]}"
    assert "No issues found" in output or " passed" in output, output[-4000:]
