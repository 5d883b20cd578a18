"""``make kind-deploy-operator`` (``WINEMEUP_KIND_OPERATOR=true k8s/kind-deploy.sh``), run.

No docker daemon or kind cluster runs here, so the script runs in a copy of the repository's
k8s/ and charts/ with STUBS on PATH for docker, kind and kubectl (each records its arguments and
succeeds) and a helm that renders with the real binary (``helm template``) and records the rest.
What this shows: the images the script builds and loads in operator mode (the operator's and
one runner per WineModel), the order of the installs (the CRDs chart first, established, then
the release with ``runners.managedBy=operator``), and the wait for every WineModel before
``helm test``. What it cannot show: any of it on a real cluster (the kind workflow runs that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.chart_render import tool

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
STUB = """#!/bin/sh
echo "{name} $*" >> "$CALLS"
case "{name} $1 $2" in
  "kind get clusters") echo winemeup ;;
  "helm template"*) exec "$REAL_HELM" "$@" ;;
esac
exit 0
"""


def _run(tmp_path: Path, operator: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "k8s", repo / "k8s", ignore=shutil.ignore_patterns("manifests"))
    shutil.copytree(REPO / "charts", repo / "charts")
    (repo / "k8s" / "export-models.sh").write_text("#!/bin/sh\nexit 0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "kind", "kubectl", "helm"):
        stub = bin_dir / name
        stub.write_text(STUB.replace("{name}", name))
        stub.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "REAL_HELM": str(tool("helm")),
        "IMAGE_TAG": "t1",
        "BENTOML_HOME": str(tmp_path / "no-store"),
        "WINEMEUP_ENGINE": "docker",
        "WINEMEUP_KIND_OPERATOR": operator,
    }
    done = subprocess.run(
        ["bash", str(repo / "k8s" / "kind-deploy.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    return done, calls.read_text().splitlines()


def test_operator_mode_builds_loads_and_installs_in_order(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "true")
    assert done.returncode == 0, done.stderr[-3000:]
    builds = [c for c in calls if c.startswith("docker build")]
    assert any("docker/operator.Dockerfile" in c and "-t winemeup-operator:t1" in c for c in builds), builds
    runners = sorted(c.split("MODEL=")[1].split()[0] for c in builds if "MODEL=" in c)
    assert runners == sorted(
        ["catboost", "extra_trees", "hist_gradient_boosting", "lightgbm", "random_forest", "svr", "xgboost"]
    )
    load = next(c for c in calls if c.startswith("kind load docker-image"))
    assert "winemeup-operator:t1" in load and "winemeup-runner-lightgbm:t1" in load
    installs = [c for c in calls if c.startswith("helm upgrade --install")]
    assert [c.split()[3] for c in installs] == ["winemeup-crds", "winemeup"], installs
    assert "runners.managedBy=operator" in installs[1] and "operator.image.tag=t1" in installs[1]
    wait = next(i for i, c in enumerate(calls) if "wait --for condition=Ready winemodels --all" in c)
    established = next(i for i, c in enumerate(calls) if "condition=established" in c)
    release = calls.index(installs[1])
    assert established < release < wait < next(i for i, c in enumerate(calls) if c.startswith("helm test"))
    assert "next: make e2e-operator" in done.stderr


def test_helm_mode_is_unchanged_and_a_bad_switch_is_refused(tmp_path: Path) -> None:
    done, calls = _run(tmp_path / "helm", "false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(
        "winemeup-crds" in c or "operator" in c for c in calls if not c.startswith("helm template")
    )
    done, _ = _run(tmp_path / "bad", "yes")
    assert done.returncode == 2 and "WINEMEUP_KIND_OPERATOR=yes: expected true or false" in done.stderr
