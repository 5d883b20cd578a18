"""Operator mode of the chart, checked with the real helm binary and schemas.

* Parity: for every values file the chart tests use, the operator's pure reconcile of each
  rendered WineModel (with the release context the chart renders for the operator) gives the
  same runner objects as Helm mode renders from runners.yaml, labels and owner references aside.
* Everything the reconcile produces passes kubernetes-validate --strict for 1.29 and 1.35; the
  KEDA ScaledObjects pass KEDA's CRD schema (../shared/schemas).
* The winemeup-crds chart: lint, the CRD documents themselves (strict), their size, the keep
  policy, and sample WineModels and WineTraffics, good and bad, through their schemas.
  The CEL rules (x-kubernetes-validations) are NOT evaluated: no CEL library is installed here.
  What is checked of them: the family list in the name rule is the runtimes' list.
* The in-flight recording rule and KEDA's query on it, with ``promtool test rules``.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.operator.reconcile import SpecError, desired_objects
from services.operator.release import ReleaseContext
from services.operator.resources import WINEMODEL_NAMES
from tests.chart.chart_render import CRD_DIR, REPO_ROOT, VALUES_FILES, helm_template, parse, tool, which
from tests.support.crd import crd_validator

pytestmark = pytest.mark.chart

CRD_CHART = REPO_ROOT / "charts" / "winemeup-crds"
RUNNER_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}
VERSIONS = ("1.29.0", "1.35.0")


def _args(name: str) -> list[str]:
    path = VALUES_FILES[name]
    return ["-f", str(path)] if path else []


def _release(docs: list[dict[str, Any]]) -> ReleaseContext:
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    return ReleaseContext.model_validate_json(config["data"]["release.json"])


def _without_labels(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("labels", None)
    obj["metadata"].pop("ownerReferences", None)
    return obj


def _fixed_keys() -> list[str]:
    """Keys the chart would otherwise generate at random in each render (two renders are compared)."""
    values = yaml.safe_load((REPO_ROOT / "charts" / "winemeup" / "values.yaml").read_text())
    keys = ["auth.apiKeys=k-1", "auth.adminApiKeys=a-1", "redis.auth.password=p-1"]
    keys += ["auth.runnerToken=t-parity-check-0001"] if "runnerToken" in values["auth"] else []
    return [arg for key in keys for arg in ("--set", key)]


def _operator_objects(name: str, *extra: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Helm mode's runner objects, the operator's objects) for one values file (copies)."""
    return copy.deepcopy(_rendered_objects(name, *extra))


@functools.cache
def _rendered_objects(name: str, *extra: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    fixed = _fixed_keys()
    helm = parse(helm_template(*_args(name), *extra, *fixed, "--set", "runners.managedBy=helm"))
    operator = parse(helm_template(*_args(name), *extra, *fixed, "--set", "runners.managedBy=operator"))
    want = [
        d
        for d in helm
        if d["kind"] in RUNNER_KINDS and d["metadata"]["labels"].get("winemeup.io/tier") == "runner"
    ]
    assert not [d for d in operator if d["kind"] in RUNNER_KINDS and "-runner-" in d["metadata"]["name"]], (
        "operator mode must not render runner objects"
    )
    release = _release(operator)
    got = []
    for wm in (d for d in operator if d["kind"] == "WineModel"):
        wm["metadata"] |= {"uid": "0f4c5b9e-1111-4a2b-9c3d-000000000001", "generation": 1}
        got += desired_objects(wm, release)
    return want, got


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_operator_mode_produces_the_runner_objects_helm_mode_renders(name: str) -> None:
    want, got = _operator_objects(name)
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    by_key = {key(o): o for o in got}
    for obj in want:
        assert _without_labels(by_key[key(obj)]) == _without_labels(obj), key(obj)
        mine = by_key[key(obj)]["metadata"]
        assert mine["labels"]["app.kubernetes.io/managed-by"] == "winemeup-operator"
        assert mine["ownerReferences"][0]["kind"] == "WineModel" and mine["ownerReferences"][0]["controller"]
    assert want or name == "inline-placement" or len(want) > 0


def test_parity_covers_keda_and_overrides_beyond_the_ci_files() -> None:
    """Parity where the ci/ files do not go: a model's own scheduling and image, replicas without
    autoscaling, the PDB off, a global registry."""
    extra = [
        "--set",
        "global.imageRegistry=mirror.example.com",
        "--set",
        "runnerDefaults.podDisruptionBudget.enabled=false",
        "--set",
        "models.svr.autoscaling.enabled=false",
        "--set",
        "models.svr.replicas=3",
        "--set",
        "models.xgboost.image.tag=9.9",
        "--set",
        "models.xgboost.priorityClassName=low",
        "--set",
        "runnerDefaults.podLabels.team=ml",
        "--set",
        "runnerDefaults.service.annotations.a=b",
    ]
    want, got = _operator_objects("default", *extra)
    assert {o["kind"] for o in got} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    assert sorted(map(_without_labels, got), key=json.dumps) == sorted(
        map(_without_labels, want), key=json.dumps
    )
    svr = next(o for o in got if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("svr"))
    assert svr["spec"]["replicas"] == 3
    assert all("replicas" not in o["spec"] for o in got if o["kind"] == "Deployment" and o is not svr)


def _errors(validator: jsonschema.Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def crds() -> dict[str, dict[str, Any]]:
    text = subprocess.run(
        [str(tool("helm")), "template", "crds", str(CRD_CHART)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {d["spec"]["names"]["kind"]: d for d in parse(text)}


@pytest.fixture(scope="module")
def keda() -> jsonschema.Draft7Validator:
    path = CRD_DIR / "keda.sh_scaledobjects.yaml"
    if not path.exists():
        pytest.skip(f"KEDA's CRD schema not found at {path}")
    return crd_validator(yaml.safe_load(path.read_text()), "v1alpha1")


def test_everything_the_operator_produces_is_valid(keda: jsonschema.Draft7Validator) -> None:
    checked = {"ScaledObject": 0, "other": 0}
    problems = []
    for name in VALUES_FILES:
        for obj in _operator_objects(name)[1]:
            where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
            if obj["kind"] == "ScaledObject":
                problems += [f"{where}: {e}" for e in _errors(keda, obj)]
                checked["ScaledObject"] += 1
                continue
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{where} ({version}): {e.message}")
            checked["other"] += 1
    assert not problems, "\n".join(problems)
    assert checked["ScaledObject"] >= 4 and checked["other"] > 80, checked


def test_keda_schema_check_catches_a_misspelt_field(keda: jsonschema.Draft7Validator) -> None:
    scaled = next(o for o in _operator_objects("operator")[1] if o["kind"] == "ScaledObject")
    assert not _errors(keda, scaled)
    scaled["spec"]["fallback"]["replicaCount"] = 2
    assert _errors(keda, scaled)


def test_crd_chart_lints_and_its_crds_are_valid_small_and_kept(crds: dict[str, dict[str, Any]]) -> None:
    lint = subprocess.run(
        [str(tool("helm")), "lint", "--strict", str(CRD_CHART)], capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert set(crds) == {"WineModel", "WineTraffic"}
    for kind, crd in crds.items():
        for version in VERSIONS:
            kubernetes_validate.validate(crd, version, strict=True)
        assert crd["spec"]["group"] == "serving.winemeup.io" and crd["spec"]["scope"] == "Namespaced"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
        # Client-side apply keeps the whole object in an annotation (256 KiB for all of them).
        assert len(json.dumps(crd)) < 16_384, (kind, len(json.dumps(crd)))
    columns = {c["name"] for c in crds["WineModel"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {"Ready", "Version", "Replicas", "Age"} <= columns


def test_cel_name_rule_lists_exactly_the_seven_families(crds: dict[str, dict[str, Any]]) -> None:
    """The CEL rule itself is not evaluated here (no CEL library installed): its list is checked."""
    schema = crds["WineModel"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rule = schema["x-kubernetes-validations"][0]["rule"]
    listed = rule.split("[", 1)[1].split("]", 1)[0]
    assert [n.strip(" '\n") for n in listed.split(",")] == list(WINEMODEL_NAMES)
    assert rule.startswith("self.metadata.name in")


GOOD_MODEL: dict[str, Any] = {
    "apiVersion": "serving.winemeup.io/v1alpha1",
    "kind": "WineModel",
    "metadata": {"name": "lightgbm", "namespace": "winemeup"},
    "spec": {
        "image": "registry.example.com/winemeup-runner-lightgbm:0.1.0",
        "modelUri": "https://models.example.com/lightgbm-3.bentomodel",
        "modelSha256": "ab" * 32,
        "replicas": 2,
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "keda": {"enabled": True}},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": 1}},
        "scheduling": {"nodeSelector": {"pool": "cpu"}, "tolerations": [{"key": "ml", "operator": "Exists"}]},
        "disruption": {"maxUnavailable": "50%"},
        "candidate": {
            "version": "lightgbm-4",
            "modelUri": "https://models.example.com/lightgbm-4.bentomodel",
        },
        "rollout": {
            "steps": ["shadow", 10, 50, 100],
            "auto": True,
            "gate": {
                "maxErrorRate": 0.01,
                "maxP99LatencyRatio": 1.5,
                "maxMeanAbsScoreDifference": 0.2,
                "minGradeAgreement": 0.9,
                "minWinesCompared": 500,
            },
        },
    },
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"modelSha256": "not-a-sha"}, "spec/modelSha256"),
        ({"replicas": -1}, "spec/replicas"),
        ({"autoscaling": {"minReplicas": 0}}, "spec/autoscaling/minReplicas"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "spec/resources/requests/cpu"),
        ({"rollout": {"steps": ["shadow", 150]}}, "spec/rollout/steps/1"),
        ({"rollout": {"steps": ["canary"]}}, "spec/rollout/steps/0"),
        ({"rollout": {"gate": {"minGradeAgreement": 1.5}}}, "spec/rollout/gate/minGradeAgreement"),
        ({"disruption": {"maxUnavailable": -1}}, "spec/disruption/maxUnavailable"),
        ({"imagePullPolicy": "Sometimes"}, "spec/imagePullPolicy"),
        ({"replicaz": 2}, "spec"),
    ],
)
def test_bad_winemodels_are_refused_naming_the_field(crds, change: dict[str, Any], field: str) -> None:
    validator = crd_validator(crds["WineModel"], "v1alpha1")
    assert not _errors(validator, GOOD_MODEL)
    bad = copy.deepcopy(GOOD_MODEL)
    bad["spec"].update(change)
    errors = _errors(validator, bad)
    assert errors and any(e.startswith(field + ":") for e in errors), errors


def test_winetraffic_schema_and_rendered_resources(crds) -> None:
    traffic = crd_validator(crds["WineTraffic"], "v1alpha1")
    models = crd_validator(crds["WineModel"], "v1alpha1")
    docs = parse(helm_template(*_args("operator")))
    rendered = [d for d in docs if d["kind"] in ("WineModel", "WineTraffic")]
    assert sum(d["kind"] == "WineModel" for d in rendered) == 5
    for doc in rendered:
        assert not _errors(models if doc["kind"] == "WineModel" else traffic, doc), doc["metadata"]["name"]
        if doc["kind"] == "WineModel":
            assert doc["metadata"]["name"] in WINEMODEL_NAMES
    good = next(d for d in rendered if d["kind"] == "WineTraffic")
    assert good["spec"]["splits"] == {"lightgbm": {"lightgbm": 90, "xgboost": 10}}
    for change, field in [
        ({"default": "gpt"}, "spec/default"),
        ({"shadows": {"lightgbm": {"target": "svr", "fraction": 2}}}, "spec/shadows/lightgbm/fraction"),
        ({"splits": {"lightgbm": {"xgboost": 101}}}, "spec/splits/lightgbm/xgboost"),
    ]:
        bad = copy.deepcopy(good)
        bad["spec"].update(change)
        assert any(e.startswith(field + ":") for e in _errors(traffic, bad)), field


def test_operator_rbac_is_namespaced_and_least_privilege() -> None:
    docs = parse(helm_template(*_args("operator")))
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-operator"))
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert "secrets" not in rule["resources"], "the admin key comes through the pod's env, not the API"
    lease = [r for r in role["rules"] if r["resources"] == ["leases"] and "update" in r["verbs"]]
    assert lease and lease[0]["resourceNames"] == [role["metadata"]["name"]]
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    pod = deployment["spec"]["template"]["spec"]
    assert (
        pod["serviceAccountName"] == role["metadata"]["name"] and pod["automountServiceAccountToken"] is True
    )
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["WINEMEUP_OPERATOR_ADMIN_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "admin-api-keys"
    # Every other WineMeUp pod keeps no token.
    others = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d is not deployment]
    assert others and all(
        d["spec"]["template"]["spec"]["automountServiceAccountToken"] is False for d in others
    )
    assert any(d["kind"] == "ServiceMonitor" and d["metadata"]["name"].endswith("-operator") for d in docs)


def test_keda_without_the_recording_rule_is_refused() -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template("--set", "runnerDefaults.autoscaling.keda.enabled=true")
    assert "autoscaling.keda.enabled needs metrics.prometheusRule.enabled" in str(refused.value)


def test_scaling_query_on_the_recording_rule(tmp_path: Path) -> None:
    """Two router pods each with requests waiting on the lightgbm runner: the recorded series is
    their summed one-minute average, and KEDA's query (from the rendered ScaledObject) reads it."""
    promtool = which("promtool")
    docs = parse(helm_template(*_args("operator")))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    ops = _operator_objects("operator")[1]
    query = next(
        o for o in ops if o["kind"] == "ScaledObject" and o["metadata"]["name"].endswith("lightgbm")
    )["spec"]["triggers"][1]["metadata"]["query"]
    router = 'namespace="winemeup", service="wm-winemeup-router"'
    series = "winemeup_router_runner_inflight_requests"
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {
                        "series": f'{series}{{{router}, pod="router-a", model="lightgbm"}}',
                        "values": "0 2 4 6 8 8 8 8 8 8",
                    },
                    {
                        "series": f'{series}{{{router}, pod="router-b", model="lightgbm"}}',
                        "values": "0 0 2 2 2 2 2 2 2 2",
                    },
                    {
                        "series": f'{series}{{{router}, pod="router-a", model="xgboost"}}',
                        "values": "1 1 1 1 1 1 1 1 1 1",
                    },
                    # Another release's router in another namespace is not counted.
                    {
                        "series": f'{series}{{namespace="other", service="x-winemeup-router", pod="o", '
                        'model="lightgbm"}',
                        "values": "50x9",
                    },
                ],
                "promql_expr_test": [
                    {"expr": query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 10}]},
                    {
                        "expr": "namespace_model:winemeup_router_runner_inflight_requests:avg1m_sum",
                        "eval_time": "2m",
                        "exp_samples": [
                            {
                                "labels": "namespace_model:winemeup_router_runner_inflight_requests:avg1m_sum"
                                '{model="lightgbm", namespace="winemeup"}',
                                "value": 10,
                            },
                            {
                                "labels": "namespace_model:winemeup_router_runner_inflight_requests:avg1m_sum"
                                '{model="xgboost", namespace="winemeup"}',
                                "value": 1,
                            },
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'model="lightgbm"' in query and 'namespace="winemeup"' in query


@functools.cache
def _operator_release() -> ReleaseContext:
    return _release(parse(helm_template(*_args("operator"), *_fixed_keys())))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"modelUri": "https://m/x.bentomodel"}, "spec.modelSha256"),
        ({"modelUri": "http://m/x.bentomodel", "modelSha256": "ab" * 32}, "spec.modelUri"),
        ({"modelSha256": "ab" * 32}, "spec.modelSha256"),
        ({"replicas": -2}, "spec.replicas"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas",
        ),
    ],
)
def test_the_reconcile_refuses_what_the_chart_refuses(spec: dict[str, Any], field: str) -> None:
    """A WineModel applied with kubectl gets the checks the chart makes at render time (the CEL
    rules would refuse most of these first, but they are not evaluated here)."""
    release = _operator_release()
    wm = {"metadata": {"name": "svr", "generation": 1}, "spec": spec}
    with pytest.raises(SpecError) as refused:
        desired_objects(wm, release)
    assert refused.value.field == field
    assert desired_objects({"metadata": {"name": "svr"}, "spec": {}}, release)[0]["spec"]["template"]["spec"][
        "containers"
    ][0]["image"].startswith("winemeup-runner-svr:")
