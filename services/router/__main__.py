"""``python -m services.router``: serve the router with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn
from pydantic import ValidationError

from services.router.app import create_app
from services.router.request_log import RequestIdFilter
from services.router.settings import RouterSettings


def main() -> int:
    """Read RouterSettings from the environment and serve until stopped."""
    try:
        settings = RouterSettings()  # type: ignore[call-arg]
    except ValidationError as e:
        # Name each bad setting and why, never its value: the input may hold API keys.
        for error in e.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            name = f"WINEMEUP_ROUTER_{where.upper()}" if where else "settings"
            print(f"invalid router {name}: {error['msg']}", file=sys.stderr)
        return 2
    # Native thread pools read these when the model libraries load (after start-up, in
    # load threads): a request-sized predict is faster single-threaded, and OpenMP pools
    # spinning on two shared cores cost tens of milliseconds per call.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(settings.inline_threads)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        # No client address is read (keys, not addresses, are what is limited): skip rewriting it.
        proxy_headers=False,
        access_log=False,
        server_header=False,
        date_header=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=75,
        # Beyond this many connections and requests at once uvicorn answers 503 at once,
        # instead of queueing without bound.
        limit_concurrency=settings.limit_concurrency,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
