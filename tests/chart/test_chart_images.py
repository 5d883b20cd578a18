"""Static checks of the Dockerfiles (no container engine here to build them): multi-stage,
Python 3.11 slim base (the locks' Python), its own pinned lock, a non-root numeric USER matching the chart's
securityContext, copied paths that exist, and entry points that exist in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from chart_render import CHART, REPO_ROOT

pytestmark = pytest.mark.chart

DOCKER = REPO_ROOT / "docker"
ENTRYPOINT_FILES = {
    "router.Dockerfile": REPO_ROOT / "services" / "router" / "__main__.py",
    "runner.Dockerfile": REPO_ROOT / "services" / "runner" / "service.py",
    "ui.Dockerfile": REPO_ROOT / "ui" / "app.py",
}


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _stage_users(steps: list[tuple[str, str]]) -> list[tuple[str, str | None, bool]]:
    """(stage name, the user it runs as, whether it has a CMD) per stage; a stage built FROM
    another stage inherits its user, one FROM an image runs as root (None) until a USER."""
    stages: list[tuple[str, str | None, bool]] = []
    users: dict[str, str | None] = {}
    for kw, rest in steps:
        if kw == "FROM":
            words = rest.split()
            base = words[0]
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            stages.append((stage, users.get(base), False))
        elif stages and kw in ("USER", "CMD"):
            stage, user, runs = stages[-1]
            stages[-1] = (stage, rest if kw == "USER" else user, runs or kw == "CMD")
        if stages:
            users[stages[-1][0]] = stages[-1][1]
    return stages


def test_stage_users_follow_the_stages() -> None:
    steps = [("FROM", "python AS runtime"), ("USER", "1:1"), ("FROM", "runtime AS a"), ("CMD", "x"),
             ("FROM", "python AS b"), ("CMD", "y")]  # fmt: skip
    assert _stage_users(steps) == [("runtime", "1:1", False), ("a", "1:1", True), ("b", None, True)]


@pytest.mark.parametrize("name", sorted(ENTRYPOINT_FILES))
def test_dockerfile_is_multistage_non_root_and_pinned(name: str) -> None:
    steps = _instructions(DOCKER / name)
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    # The Python the locks are resolved on (requirements/compile.sh), and only the image's own lock.
    assert any(kw == "ARG" and rest.startswith("PYTHON_IMAGE=python:3.11-slim") for kw, rest in steps)
    pip = [rest for kw, rest in steps if kw == "RUN" and "pip install" in rest]
    assert any(
        all(flag in rest for flag in ("--no-deps", "--require-hashes", "--requirement")) for rest in pip
    )
    users = [rest for kw, rest in steps if kw == "USER"]
    uid = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    assert users and users[-1] == f"{uid}:{uid}", "the last USER must be the chart's non-root UID"
    # Every stage that runs something (a CMD: the router image has two targets) runs as that user.
    served = {stage: user for stage, user, runs in _stage_users(steps) if runs}
    assert served, f"{name}: no stage has a CMD"
    assert served == dict.fromkeys(served, f"{uid}:{uid}"), f"{name}: stages run as {served}"
    for kw, rest in steps:
        if kw == "COPY" and "--from=" not in rest:
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            for source in sources:
                if "${" in source or source.startswith("build/"):
                    continue  # model exports are made at build time (k8s/export-models.sh)
                assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    assert ENTRYPOINT_FILES[name].exists(), f"{name} starts {ENTRYPOINT_FILES[name]}, which is missing"


def test_runner_image_serves_the_service_class_the_bentos_use() -> None:
    cmd = next(rest for kw, rest in _instructions(DOCKER / "runner.Dockerfile") if kw == "CMD")
    bentofile = REPO_ROOT / "bentos" / "bentofile.yaml"
    if bentofile.exists():
        assert yaml.safe_load(bentofile.read_text())["service"] in cmd
    assert '"--port", "3000"' in cmd


def test_router_models_stage_uses_the_store_path_the_chart_sets() -> None:
    text = (DOCKER / "router.Dockerfile").read_text()
    configmap = (CHART / "templates" / "router-configmap.yaml").read_text()
    store = re.search(r'WINEMEUP_ROUTER_MODEL_STORE: "([^"]+)"', configmap)
    assert store is not None
    assert f"WINEMEUP_ROUTER_MODEL_STORE={store.group(1)}" in text
    assert f"{store.group(1)}/models/" in text
