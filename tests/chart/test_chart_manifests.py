"""k8s/manifests/winemeup.yaml is what k8s/render-manifests.sh renders from the chart today."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from chart_render import REPO_ROOT, tool

pytestmark = pytest.mark.chart

MANIFESTS = REPO_ROOT / "k8s" / "manifests" / "winemeup.yaml"


def test_plain_manifests_are_current() -> None:
    helm = tool("helm")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s" / "render-manifests.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HELM": str(helm), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr + "\n(regenerate with: make manifests)"
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    assert "Secret" not in kinds, "the plain manifests must not carry API keys"
    assert "Pod" not in kinds, "helm test hooks do not belong in plain manifests"
    assert all(d["metadata"].get("namespace") == "winemeup" for d in docs)
