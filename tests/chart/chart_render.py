"""Helpers of the chart checks: the real helm binary, renders and where tools live.

Every test module here sets ``pytestmark = pytest.mark.chart``. The binaries come from
``.tools/bin`` (installed by ``scripts/install-k8s-tools.sh``); when one is absent the tests
that need it are skipped with a reason saying how to install it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.binaries import require_binary, require_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "winemeup"
TOOLS = REPO_ROOT / ".tools" / "bin"
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
CRD_DIR = REPO_ROOT.parent / "shared" / "schemas"
RELEASE = "wm"
NAMESPACE = "winemeup"
INSTALL_HINT = "run scripts/install-k8s-tools.sh (or make k8s-tools)"

# name -> values file (None: the chart's defaults): every file under ci/, plus the values
# k8s/kind-deploy.sh and skaffold install on kind.
VALUES_FILES: dict[str, Path | None] = (
    {"default": None}
    | {p.stem.removesuffix("-values"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
    | {"kind": REPO_ROOT / "k8s" / "values" / "winemeup-kind.yaml"}
)


def tool(name: str) -> Path:
    """A binary from .tools/bin (skips locally, fails under CI=true when missing)."""
    return require_path(TOOLS / name, INSTALL_HINT)


def helm_template(*args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    """`helm template` of the chart with extra arguments; raises with helm's stderr on failure."""
    result = subprocess.run(
        [str(tool("helm")), "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def install_notes(*args: str) -> str:
    """NOTES.txt of `helm install --dry-run=client` (no cluster: hooks, notes and every template
    render) with extra arguments; raises with helm's stderr on failure."""
    result = subprocess.run(
        [
            str(tool("helm")),
            "install",
            RELEASE,
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm install --dry-run=client {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.split("NOTES:", 1)[1]


def parse(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a render."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Render:
    """One render of the chart: its name, the values file, the YAML text and documents."""

    name: str
    values_file: Path | None
    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise KeyError(f"no {kind} {name} in render {self.name}")

    @property
    def values(self) -> dict[str, Any]:
        """The merged values of this render (chart defaults overlaid with the values file)."""
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())
        if self.values_file is None:
            return defaults
        return _merge(defaults, yaml.safe_load(self.values_file.read_text()))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def require(path: Path, what: str) -> Path:
    """A file a test needs (skips locally, fails under CI=true when absent)."""
    return require_path(path, what)


def which(name: str) -> str:
    """A binary on PATH (skips locally, fails under CI=true when missing)."""
    return require_binary(name, "Debian: apt-get install prometheus for promtool")
