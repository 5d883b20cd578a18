"""Each image's lock holds what its entry point imports and loads at start.

For every image the chart runs, a fresh environment built from that image's own lock (and
nothing else: not the dev venv) runs tests/images/probe.py with only the code the image copies
on its path. The dev venv has everything installed together, so a lock that lacks a package
(orjson in the runner locks, PyYAML in the UI lock, both found by running the images) passes
every other test and fails here, without a container engine.

Environments are cached by lock hash under ~/.cache/winemeup/lock-envs/ (tests/images/lock_envs.py).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.images.lock_envs import REPO_ROOT, LockEnvError, lock_env, uv_binary
from tests.support.binaries import in_ci, require_binary

pytestmark = [pytest.mark.images, pytest.mark.slow]

SKLEARN_MODELS = ("random_forest", "extra_trees", "hist_gradient_boosting", "svr")
ALL_MODELS = ("lightgbm", "xgboost", "catboost", *SKLEARN_MODELS)


@dataclass(frozen=True)
class ImageLock:
    """One lock and the image(s) built from it: what the image copies and how it starts."""

    lock: str
    copies: tuple[str, ...]
    """Top-level source folders the Dockerfile copies into /app."""
    probe: tuple[str, ...]
    """Arguments of tests/images/probe.py."""
    env: dict[str, str] = field(default_factory=dict)


IMAGE_LOCKS = [
    # docker/router.Dockerfile --target router: every model in a runner.
    ImageLock(
        "router",
        ("winemeup", "services"),
        ("router",),
        {"WINEMEUP_ROUTER_PLACEMENT": "runner",
         "WINEMEUP_ROUTER_RUNNER_URLS": '{"lightgbm": "http://127.0.0.1:9"}',
         "WINEMEUP_ROUTER_MODELS": "lightgbm"},
    ),
    # --target router-models: every model inline, from the baked-in store, both serving paths.
    ImageLock(
        "router-models",
        ("winemeup", "services"),
        ("router", *ALL_MODELS),
        {"WINEMEUP_ROUTER_PLACEMENT": "inline", "WINEMEUP_ROUTER_PRELOAD_INLINE_MODELS": "true"},
    ),
    # docker/runner.Dockerfile: MODEL's framework lock (the default), or runner-accelerated.
    ImageLock("runner-lightgbm", ("winemeup", "services"), ("runner", "lightgbm")),
    ImageLock("runner-xgboost", ("winemeup", "services"), ("runner", "xgboost")),
    ImageLock("runner-catboost", ("winemeup", "services"), ("runner", "catboost")),
    ImageLock("runner-sklearn", ("winemeup", "services"), ("runner", *SKLEARN_MODELS)),
    ImageLock("runner-accelerated", ("winemeup", "services"), ("runner", *ALL_MODELS)),
    # docker/ui.Dockerfile: `streamlit run ui/app.py`, the router unreachable.
    ImageLock("ui", ("winemeup", "ui"), ("ui",), {"WINEMEUP_UI_ROUTER_URL": "http://127.0.0.1:9"}),
    # docker/operator.Dockerfile: `python -m services.operator` (services/operator only), with the
    # release context the chart renders and no cluster.
    ImageLock("operator", ("services",), ("operator",),
              {"WINEMEUP_OPERATOR_NAMESPACE": "winemeup",
               "WINEMEUP_OPERATOR_ADMIN_API_KEY": "image-check-admin"}),
]  # fmt: skip


def operator_release_file(tmp_path: Path) -> Path:
    """The release context (release.json) of the chart in operator mode, as its ConfigMap holds it."""
    from tests.chart.chart_render import helm_template, parse

    chart_ci = REPO_ROOT / "charts" / "winemeup" / "ci" / "operator-values.yaml"
    docs = parse(helm_template("-f", str(chart_ci)))
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    path = tmp_path / "release.json"
    path.write_text(config["data"]["release.json"])
    return path


def python311() -> str:
    """A Python 3.11 interpreter (the images' and the locks' version)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    return require_binary("python3.11", "the locks are resolved for Python 3.11: install it")


def app_dir(tmp_path: Path, copies: tuple[str, ...]) -> Path:
    """A folder holding only the source folders the image copies into /app."""
    app = tmp_path / "app"
    app.mkdir()
    for name in copies:
        (app / name).symlink_to(REPO_ROOT / name, target_is_directory=True)
    return app


@pytest.mark.parametrize("image", IMAGE_LOCKS, ids=lambda image: image.lock)
def test_lock_imports_entry_point(image: ImageLock, model_store: Path, tmp_path: Path) -> None:
    uv = uv_binary()
    if uv is None:
        require_binary("uv", "make venv installs it into .venv")
        raise AssertionError("unreachable")
    try:
        env_dir, seconds = lock_env(image.lock, python311(), uv)
    except LockEnvError as e:
        # A lock that does not install (a missing hash, a package gone from the index) is a
        # failure; no network and an empty cache is not this test's business outside CI.
        if "Failed to fetch" in str(e) and not in_ci():
            pytest.skip(f"cannot download the packages of requirements/{image.lock}.lock: {e}")
        raise
    if seconds:
        print(f"built the {image.lock} environment in {seconds:.0f} s")
    app = app_dir(tmp_path, image.copies)
    env = {
        # As in the image: only the copied code on the path, a throwaway home, no dev venv.
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(app),
        "HOME": str(tmp_path),
        "BENTOML_HOME": str(model_store),
        "BENTOML_DO_NOT_TRACK": "True",
        "WINEMEUP_ROUTER_MODEL_STORE": str(model_store),
        "WINEMEUP_ROUTER_API_KEYS": "image-check-key",
        "WINEMEUP_ROUTER_ADMIN_API_KEYS": "image-check-admin",
        "WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED": "true",
        "WINEMEUP_UI_API_KEY": "image-check-key",
        **image.env,
    }
    if image.lock == "operator":
        env["WINEMEUP_OPERATOR_RELEASE_FILE"] = str(operator_release_file(tmp_path))
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-s", str(Path(__file__).with_name("probe.py")), *image.probe],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"an image built from requirements/{image.lock}.lock would fail at start:\n"
        f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    what, *models = image.probe
    expected = {"runner": "imported services.runner.service", "router": "lifespan.startup.complete",
                "ui": "ui/app.py ran",
                "operator": "operator refused to start without a cluster"}[what]  # fmt: skip
    assert expected in result.stdout, result.stdout
    for model in models:
        assert f"{model} (" in result.stdout, f"{model} was not loaded:\n{result.stdout}"
