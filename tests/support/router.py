"""``python -m services.router`` in a subprocess on a free port, with fresh keys (RouterHandle)."""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from services.stack.processes import ManagedProcess, free_port, http_status
from tests.support.waiting import wait_until


@dataclass
class RouterHandle:
    """A running router subprocess: its base URL, keys and process."""

    url: str
    api_key: str
    admin_key: str
    process: ManagedProcess
    env: dict[str, str]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200 (the default model is loaded or reachable)."""
        wait_until(
            lambda: http_status(self.url + "/readyz") == 200,
            timeout,
            interval=0.1,
            message=lambda: f"{self.url}/readyz not 200:\n{self.process.log_tail()}",
        )

    def headers(self, admin: bool = False, bearer: bool = False) -> dict[str, str]:
        """Request headers carrying the ordinary (or admin) key, as X-API-Key or Bearer."""
        key = self.admin_key if admin else self.api_key
        return {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}


def router_env(
    port: int, api_key: str, admin_key: str, model_store: Path | None, **settings: object
) -> dict[str, str]:
    """The environment of a router: RouterSettings fields as ``WINEMEUP_ROUTER_*`` variables.

    Dicts are passed as JSON, lists comma-separated, None is left unset.
    """
    env: dict[str, str] = {
        "WINEMEUP_ROUTER_HOST": "127.0.0.1",
        "WINEMEUP_ROUTER_PORT": str(port),
        "WINEMEUP_ROUTER_API_KEYS": api_key,
        "WINEMEUP_ROUTER_ADMIN_API_KEYS": admin_key,
        "WINEMEUP_ROUTER_LOG_LEVEL": "info",
    }
    if model_store is not None:
        env["WINEMEUP_ROUTER_MODEL_STORE"] = str(model_store)
        env["BENTOML_HOME"] = str(model_store)
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, dict):
            text = json.dumps(value)
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"WINEMEUP_ROUTER_{key.upper()}"] = text
    return env


def launch_router(
    log_dir: Path, model_store: Path | None = None, ready_timeout: float = 60.0, **settings: object
) -> RouterHandle:
    """Start ``python -m services.router`` on a free port with fresh keys; wait for /healthz.

    Keyword arguments are RouterSettings fields (``placement="runner"``, ``redis_url=...``,
    ``runner_urls={"svr": "http://..."}``). The caller stops ``handle.process``.
    """
    port = free_port()
    api_key = "k-" + secrets.token_urlsafe(16)
    admin_key = "a-" + secrets.token_urlsafe(16)
    env = router_env(port, api_key, admin_key, model_store, **settings)
    proc = ManagedProcess(
        argv=[sys.executable, "-m", "services.router"],
        log_path=log_dir / f"router-{port}.log",
        env=env,
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=ready_timeout,
        name=f"router-{port}",
    )
    handle = RouterHandle(f"http://127.0.0.1:{port}", api_key, admin_key, proc, env)
    try:
        proc.start()
    except BaseException:
        proc.stop()
        raise
    return handle
