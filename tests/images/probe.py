"""Runs INSIDE a fresh environment built from one image's lock (tests/images/lock_envs.py):
imports the image's entry module and loads what it loads at start, as the container would.

    python probe.py runner MODEL [MODEL ...]   services.runner.service, then each model through
                                               the serving paths the lock supports
    python probe.py router [MODEL ...]         the router app as `python -m services.router`
                                               builds it, its start-up and shutdown included;
                                               then each model as for a runner (inline models)
    python probe.py ui                         ui/app.py as `streamlit run` runs it (AppTest)
    python probe.py operator                   `python -m services.operator` without a cluster:
                                               settings, release context, the Kubernetes
                                               client's modules, then its clean refusal

Only the standard library, the lock's packages and the code the image copies (PYTHONPATH) are
importable here: never import from tests/ or from the dev environment. Prints one line per
check; any failure exits non-zero with the traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys

ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4, 1.0]
"""One model-input row (schema order, wine_type red = 1.0)."""


def probe_runner(models: list[str]) -> None:
    """The runner image: `bentoml serve services.runner.service:ModelRunner` imports the module
    (with WINEMEUP_RUNNER_MODEL set), and the service loads its model at start."""
    os.environ["WINEMEUP_RUNNER_MODEL"] = models[0]
    importlib.import_module("services.runner.service")
    # What `bentoml serve` itself imports to run that service in a worker.
    importlib.import_module("_bentoml_impl.server.app")
    importlib.import_module("_bentoml_impl.worker.service")
    print(f"imported services.runner.service (WINEMEUP_RUNNER_MODEL={models[0]})")
    load_models(models)


def load_models(models: list[str]) -> None:
    """Each model through every serving path the environment supports: predict and explain a row."""
    from winemeup.runtimes import FRAMEWORK_OF_MODEL, ExplainUnavailable, load_runtime

    for model in models:
        framework = FRAMEWORK_OF_MODEL[model]
        # A lock without the framework serves the ONNX artifact only (runner-accelerated).
        has_framework = importlib.util.find_spec(framework) is not None
        for path in ("auto", "framework") if has_framework else ("onnx",):
            runtime = load_runtime(model, path=path)  # type: ignore[arg-type]
            score = float(runtime.predict([ROW])[0])
            try:
                explained = f"explained ({type(runtime.explain([ROW])).__name__})"
            except ExplainUnavailable as e:
                if has_framework:
                    raise
                explained = f"no explanation without {framework} ({e})"
            served = runtime.info.serving.get("path")
            print(f"{model} ({path}): served by {served}, score {score:.3f}, {explained}")


def probe_router(models: list[str]) -> None:
    """The router image: `python -m services.router` reads RouterSettings, builds the app and
    serves it with uvicorn (uvloop, httptools); start-up loads inline models."""
    importlib.import_module("services.router.__main__")
    for module in ("uvloop", "httptools"):  # uvicorn.run(loop="uvloop", http="httptools")
        importlib.import_module(module)
    from services.router.app import create_app
    from services.router.settings import RouterSettings

    app = create_app(RouterSettings())  # type: ignore[call-arg]

    async def lifespan() -> None:
        sent = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        received: list[dict[str, str]] = []

        async def receive() -> dict[str, str]:
            return sent.pop(0) if sent else await asyncio.Future()

        async def send(message: dict[str, str]) -> None:
            received.append(message)

        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
        failed = [m for m in received if m["type"].endswith(".failed")]
        if failed:
            raise SystemExit(f"router lifespan failed: {failed}")
        print(f"router lifespan: {', '.join(m['type'] for m in received)}")

    import uvloop

    uvloop.run(lifespan())
    if models:
        load_models(models)


def probe_ui() -> None:
    """The UI image: `streamlit run ui/app.py` runs the page script; AppTest runs it the same way."""
    from streamlit.testing.v1 import AppTest

    # Relative to the working directory, as `streamlit run ui/app.py` in /app reads it.
    at = AppTest.from_file(os.path.abspath("ui/app.py"), default_timeout=90).run()
    if at.exception:
        raise SystemExit(f"ui/app.py raised: {[e.value for e in at.exception]}")
    print(f"ui/app.py ran: {len(at.main)} elements on the page")


def probe_operator() -> None:
    """The operator image: ``python -m services.operator`` reads its settings and the release
    context, imports what ``kube.Cluster`` imports, and, with no in-cluster configuration here,
    stops with exit status 2 and one line saying so (never a traceback)."""
    import contextlib
    import io
    import logging

    for module in ("client", "config", "dynamic", "dynamic.exceptions", "client.exceptions"):
        importlib.import_module(f"kubernetes.{module}")
    importlib.import_module("urllib3.exceptions")
    from services.operator import __main__ as entry
    from services.operator import metrics

    assert b"winemeup_operator_leader" in metrics.exposition()
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, force=True)
        status = entry.main()
    text = log.getvalue()
    if status != 2 or "no in-cluster Kubernetes configuration" not in text or "Traceback" in text:
        raise SystemExit(f"operator start without a cluster: exit {status}, log:\n{text}")
    print(f"operator refused to start without a cluster: exit {status}, {text.strip().splitlines()[-1]}")


def main(argv: list[str]) -> None:
    what, *args = argv
    if what == "runner":
        probe_runner(args)
    elif what == "router":
        probe_router(args)
    elif what == "ui":
        probe_ui()
    elif what == "operator":
        probe_operator()
    else:
        raise SystemExit(f"unknown probe {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
