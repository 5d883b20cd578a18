"""Every rendered manifest is valid Kubernetes (strict) for 1.29 and 1.35; custom resources
are valid against the prometheus-operator CRDs; alert expressions pass `promtool check rules`."""

from __future__ import annotations

import subprocess
from copy import deepcopy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_render import CRD_DIR, require, which

from tests.support.crd import crd_validator

pytestmark = pytest.mark.chart

# The newest schemas kubernetes-validate 1.37 bundles for these minors (it ships x.y.0 only).
KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")
CUSTOM_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
# Validated against their own CRDs in tests/operator (KEDA's from ../shared/schemas, ours from
# charts/winemeup-crds).
OPERATOR_KINDS = {"ScaledObject", "WineModel", "WineTraffic"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes_strict(renders, version: str) -> None:
    problems = []
    checked = 0
    for render in renders.values():
        for doc in render.docs:
            if doc["kind"] in CUSTOM_KINDS or doc["kind"] in OPERATOR_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{render.name}: {doc['kind']}/{doc['metadata']['name']}: {e.message}")
    assert not problems, "\n".join(problems)
    assert checked > 100


def _crd_validator(plural: str) -> jsonschema.Draft7Validator:
    path = require(CRD_DIR / f"monitoring.coreos.com_{plural}.yaml", "prometheus-operator CRD schemas")
    return crd_validator(yaml.safe_load(Path(path).read_text()), "v1")


def test_custom_resources_are_valid_against_their_crds(renders) -> None:
    validators = {kind: _crd_validator(plural) for kind, plural in CUSTOM_KINDS.items()}
    seen = {kind: 0 for kind in CUSTOM_KINDS}
    problems = []
    for render in renders.values():
        for doc in render.docs:
            if doc["kind"] not in CUSTOM_KINDS:
                continue
            seen[doc["kind"]] += 1
            for error in validators[doc["kind"]].iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                problems.append(
                    f"{render.name}: {doc['kind']}/{doc['metadata']['name']} at {path}: {error.message}"
                )
    assert not problems, "\n".join(problems)
    assert all(seen.values()), f"some custom resource kind was never rendered: {seen}"


def test_crd_check_catches_a_misspelt_field(renders) -> None:
    """The CRD validation above is strict: a typo in a ServiceMonitor does not slip through."""
    validator = _crd_validator("servicemonitors")
    monitor = deepcopy(renders["all-features"].of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert list(validator.iter_errors(monitor))


def test_alert_rules_pass_promtool(renders, tmp_path: Path) -> None:
    promtool = which("promtool")
    rules = [d for r in renders.values() for d in r.of_kind("PrometheusRule")]
    assert rules
    for number, rule in enumerate(rules):
        path = tmp_path / f"rules-{number}.yaml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "WineMeUpHighErrorRate",
        "WineMeUpHighLatency",
        "WineMeUpCacheHitRatioCollapse",
        "WineMeUpRunnerDown",
    } <= alerts


def test_alerts_fire_on_the_series_they_are_meant_for(renders, tmp_path: Path) -> None:
    """`promtool test rules`: 10% 5xx fires the error alert, /readyz 503s during start-up do
    not; a cache hit ratio of 5% under traffic fires the collapse alert; a runner target that
    is down fires RunnerDown."""
    promtool = which("promtool")
    rule = renders["all-features"].of_kind("PrometheusRule")[0]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    router = 'namespace="winemeup", service="wm-winemeup-router"'
    requests = "winemeup_router_requests_total"
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'{requests}{{{router}, route="/v1/predict", status_class="2xx"}}',
                        "values": "0+90x30",
                    },
                    {
                        "series": f'{requests}{{{router}, route="/v1/predict", status_class="5xx"}}',
                        "values": "0+10x30",
                    },
                    {
                        "series": f'{requests}{{{router}, route="/readyz", status_class="5xx"}}',
                        "values": "0+1000x30",
                    },
                    {
                        "series": f'winemeup_router_cache_hits_total{{{router}, backend="redis"}}',
                        "values": "0+6x30",
                    },
                    {
                        "series": f'winemeup_router_cache_misses_total{{{router}, backend="redis"}}',
                        "values": "0+114x30",
                    },
                    {"series": f"up{{{router}}}", "values": "1x30"},
                    {
                        "series": 'up{namespace="winemeup", container="runner", model="svr", pod="svr-0"}',
                        "values": "0x30",
                    },
                    {
                        "series": 'up{namespace="winemeup", container="runner", model="xgboost", pod="x-0"}',
                        "values": "1x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "WineMeUpHighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "team": "ml-platform"},
                                # 10%: the /readyz 503s are not counted (they would make it 92%).
                                "exp_annotations": {
                                    "description": "10% of router requests in winemeup answered 5xx"
                                    " over the last 5 minutes.",
                                    "summary": "More than 5% of WineMeUp requests fail with 5xx.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "25m",
                        "alertname": "WineMeUpCacheHitRatioCollapse",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "team": "ml-platform"},
                                "exp_annotations": {
                                    "description": "Cache hit ratio in winemeup is 5%: was Redis flushed"
                                    " or restarted, or did the traffic change?",
                                    "summary": "WineMeUp cache hit ratio collapsed below 0.2.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "WineMeUpRunnerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "team": "ml-platform",
                                    "namespace": "winemeup",
                                    "container": "runner",
                                    "model": "svr",
                                    "pod": "svr-0",
                                },
                                "exp_annotations": {
                                    "description": "Runner pod svr-0 (model svr) in winemeup does not"
                                    " answer /metrics.",
                                    "summary": "A WineMeUp runner is down.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "20m", "alertname": "WineMeUpRouterDown", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
