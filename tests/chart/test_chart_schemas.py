"""Every rendered manifest is valid Kubernetes (strict) for 1.29 and 1.35; custom resources
are valid against the prometheus-operator CRDs; alert expressions pass `promtool check rules`."""

from __future__ import annotations

import subprocess
from copy import deepcopy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_render import CRD_DIR, require, which

pytestmark = pytest.mark.chart

# The newest schemas kubernetes-validate 1.37 bundles for these minors (it ships x.y.0 only).
KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")
CUSTOM_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes_strict(renders, version: str) -> None:
    problems = []
    checked = 0
    for render in renders.values():
        for doc in render.docs:
            if doc["kind"] in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{render.name}: {doc['kind']}/{doc['metadata']['name']}: {e.message}")
    assert not problems, "\n".join(problems)
    assert checked > 100


def _crd_schema(plural: str) -> dict[str, Any]:
    path = require(CRD_DIR / f"monitoring.coreos.com_{plural}.yaml", "prometheus-operator CRD schemas")
    crd = yaml.safe_load(Path(path).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _strict(deepcopy(version["schema"]["openAPIV3Schema"]))


def _strict(node: Any) -> Any:
    """OpenAPI v3 -> JSON Schema: nullable allows null; undeclared properties are refused."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ("properties", "patternProperties", "definitions"):
                node[key] = {k: _strict(v) for k, v in value.items()}
            elif isinstance(value, (dict, list)):
                node[key] = _strict(value)
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def test_custom_resources_are_valid_against_their_crds(renders) -> None:
    validators = {
        kind: jsonschema.Draft7Validator(_crd_schema(plural)) for kind, plural in CUSTOM_KINDS.items()
    }
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
    validator = jsonschema.Draft7Validator(_crd_schema("servicemonitors"))
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
    alerts = {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"]}
    assert {
        "WineMeUpHighErrorRate",
        "WineMeUpHighLatency",
        "WineMeUpCacheHitRatioCollapse",
        "WineMeUpRunnerDown",
    } <= alerts
