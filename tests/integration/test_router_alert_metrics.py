"""Every router metric the chart's alerts and dashboard query exists in what a real router
serves on /metrics, with the labels the queries select on.

A router is started (one inline LightGBM model in a small store made here), answers one
prediction, and its /metrics text is parsed. The alert expressions come from the chart rendered
with the PrometheusRule on, the dashboard's from its JSON. Names from other exporters
(kube-state-metrics, redis_exporter, Prometheus' own `up`) are listed and left to them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.binaries import require_path
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "winemeup"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
OTHER_EXPORTERS = ("kube_", "redis_", "up")
NAME = re.compile(r"\b([a-z_:][a-z0-9_:]*)\s*\{")
SELECTOR = re.compile(r"\b(winemeup_router_[a-z0-9_]+)\s*\{([^}]*)\}")


def _tiny_store(home: Path) -> None:
    code = (
        "import numpy as np, lightgbm as lgb, bentoml\n"
        "X = np.random.default_rng(0).random((200, 12)); y = 3 + 5 * X[:, 10]\n"
        "b = lgb.train({'verbose': -1, 'num_leaves': 4}, lgb.Dataset(X, y), num_boost_round=5)\n"
        "bentoml.lightgbm.save_model('lightgbm', b, labels={'framework': 'lightgbm'},\n"
        "                            metadata={'metrics': {}})\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)


def _queries() -> list[str]:
    require_path(HELM, "run scripts/install-k8s-tools.sh (or make k8s-tools)")
    rendered = subprocess.run(
        [str(HELM), "template", "wm", str(CHART), "--show-only", "templates/prometheusrule.yaml",
         "--set", "metrics.prometheusRule.enabled=true"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    rule = yaml.safe_load(rendered)
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    board = json.loads((CHART / "dashboards" / "winemeup.json").read_text())
    exprs += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return exprs


def _exported(text: str) -> dict[str, set[str]]:
    """Series name -> label names seen, from a Prometheus text exposition. A labelled counter
    that has not counted yet prints only its # TYPE line: it exists, with no labels seen."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            for suffix in suffixes:
                out.setdefault(name + suffix, set())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_alert_and_dashboard_metrics_exist_in_the_real_router(
    router: Callable[..., Any], tmp_path: Path
) -> None:
    queries = _queries()
    home = tmp_path / "store"
    _tiny_store(home)
    handle = router(home, models=["lightgbm"], default_model="lightgbm")
    handle.wait_ready()
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=10) as client:
        assert client.post("/v1/predict", json={"features": SCHEMA.example()}).status_code == 200
        assert client.post("/v1/predict", json={"features": SCHEMA.example()}).json()["cached"] is True
        exported = _exported(client.get("/metrics").text)

    used = {name for expr in queries for name in NAME.findall(expr)}
    used |= {name for expr in queries for name in re.findall(r"\b(winemeup_router_[a-z0-9_]+)", expr)}
    ours = {n for n in used if n.startswith("winemeup_")}
    others = used - ours
    assert {"winemeup_router_model_ready", "winemeup_router_default_model"} <= ours
    missing = sorted(n for n in ours if n not in exported)
    assert not missing, f"queried but not served by the router: {missing}"
    assert all(n.startswith(OTHER_EXPORTERS) for n in others), f"metrics from nowhere: {sorted(others)}"

    # The labels a query selects or groups on must exist on that metric (the chart adds
    # namespace/service/pod/container at scrape time).
    scrape_labels = {"namespace", "service", "pod", "container", "job", "instance", "le"}
    for expr in queries:
        for name, selector in SELECTOR.findall(expr):
            labels = {m.group(1) for m in re.finditer(r"([a-z_]+)\s*(?:=~|!=|!~|=)", selector)}
            if not exported[name]:
                continue  # declared, no sample yet: its labels are not visible
            unknown = labels - exported[name] - scrape_labels
            assert not unknown, f"{name} has no label {sorted(unknown)} (query: {expr.strip()[:120]})"
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in grouping.split(",") if x.strip()):
                names = [n for n, _ in SELECTOR.findall(expr)]
                visible = [n for n in names if exported.get(n)]
                assert label in scrape_labels or not visible or any(label in exported[n] for n in visible), (
                    f"grouping by {label} that no queried metric has: {expr.strip()[:120]}"
                )
