"""The drift alert against the router's real /metrics: red wines sent as "white" fire it.

A router serves the red data set labelled white; its ``/metrics`` (the drift gauges after an
aggregation) become promtool input series with the labels the ServiceMonitor adds, and
``promtool test rules`` evaluates the chart's rendered ``WineMeUpInputDrift`` over them.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.chart_render import NAMESPACE, RELEASE, helm_template, parse
from tests.support.binaries import require_binary
from tests.support.waiting import wait_until
from tests.support.wines import read_wines

pytestmark = pytest.mark.integration

THRESHOLD = 0.25
MIN_ROWS = 500
SERIES = ("winemeup_router_drift_psi", "winemeup_router_drift_window_rows")


def _drift_rule() -> dict[str, Any]:
    render = parse(
        helm_template(
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set-json",
            f"router.drift.psiThreshold={THRESHOLD}",
            "--set-json",
            f"metrics.prometheusRule.driftMinRows={MIN_ROWS}",
            "--set",
            "metrics.prometheusRule.driftFor=30m",
        )
    )
    rule = next(doc for doc in render if doc["kind"] == "PrometheusRule")
    group = next(g for g in rule["spec"]["groups"] if g["name"] == "winemeup.drift")
    return {"groups": [group]}


def _input_series(metrics_text: str) -> tuple[list[dict[str, str]], dict[tuple[str, str], float]]:
    """promtool input series of the drift gauges (pod labels added) and PSI by (feature, type)."""
    scraped = f'namespace="{NAMESPACE}", service="{RELEASE}-winemeup-router", pod="router-a"'
    inputs, psi = [], {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name not in SERIES or math.isnan(sample.value):
                continue
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            inputs.append(
                {"series": f"{sample.name}{{{scraped}, {labels}}}", "values": f"{sample.value!r}x45"}
            )
            if sample.name == SERIES[0]:
                psi[(sample.labels["feature"], sample.labels["wine_type"])] = sample.value
    return inputs, psi


def test_red_wines_sent_as_white_fire_the_drift_alert(
    model_store: Path, data_dir: Path, router: Callable[..., Any], tmp_path: Path
) -> None:
    promtool = require_binary("promtool", "apt-get install prometheus")
    handle = router(
        model_store=model_store, models=["lightgbm"], drift_interval_seconds=0.3, drift_window_rows=1000
    )
    handle.wait_ready()
    reds = read_wines(data_dir, "red", as_type="white")
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=60) as client:
        assert client.post("/v1/predict/batch", json={"instances": reds}).status_code == 200

        def aggregated() -> str | None:
            """The metrics once the white window holds the rows sent."""
            text = client.get("/metrics").text
            return text if 'winemeup_router_drift_window_rows{wine_type="white"} 1000.0' in text else None

        text = wait_until(aggregated, 20, interval=0.3)
    inputs, psi = _input_series(text)
    drifted = sorted(key for key, value in psi.items() if value > THRESHOLD)
    assert drifted and all(wine_type == "white" for _, wine_type in drifted)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_drift_rule()))
    expected = [
        {
            "exp_labels": {"severity": "warning", "feature": feature, "wine_type": wine_type},
            "exp_annotations": {
                "summary": "Served wines no longer look like the training data.",
                "description": f"PSI of {feature} for {wine_type} wines in {NAMESPACE} is "
                f"{psi[(feature, wine_type)]:.2f} (threshold {THRESHOLD}): check the data feeding the "
                "API (a mislabelled wine type?) before trusting the scores.",
            },
        }
        for feature, wine_type in drifted
    ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "WineMeUpInputDrift", "exp_alerts": []},
                    {"eval_time": "35m", "alertname": "WineMeUpInputDrift", "exp_alerts": expected},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
