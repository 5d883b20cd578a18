"""What a production review of the rendered chart checks: names within their limits at the
longest release name, pods that roll when what they read changes (and only then), Redis
protected by a password wherever it is rendered, network policies with room for real load
balancers, disruption budgets, upload limits that agree, and the GitOps path for the keys."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import VALUES_FILES, Render, helm_template, install_notes, parse, which

pytestmark = pytest.mark.chart

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONGEST_RELEASE = "r" * 53  # helm refuses longer release names


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def _by_suffix(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return spec["containers"] + spec.get("initContainers", [])


def _labels(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = list(doc["metadata"].get("labels", {}).items())
    template = doc.get("spec", {}).get("template", {}) if isinstance(doc.get("spec"), dict) else {}
    out += list(template.get("metadata", {}).get("labels", {}).items())
    return out


def test_every_name_fits_its_limit_at_the_longest_release_name() -> None:
    """A 53-character release: every name within its own limit (a StatefulSet over 52 gives
    its pods a controller-revision-hash label over 63, and they are never created)."""
    docs = parse(helm_template("-f", str(VALUES_FILES["all-features"]), release=LONGEST_RELEASE))
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names), "two resources truncated to the same name"
    for kind, name in names:
        limit = 52 if kind == "StatefulSet" else 63
        assert len(name) <= limit, f"{kind} {name} has {len(name)} characters (limit {limit})"
        if kind in ("Service", "Deployment", "StatefulSet"):
            assert DNS_1035.match(name), f"{kind} {name} is not a DNS-1035 label"
    for doc in docs:
        for key, value in _labels(doc):
            assert len(str(value)) <= 63, f"label {key}={value} of {doc['metadata']['name']}"
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    revision_label = f"{statefulset['metadata']['name']}-{'x' * 10}"
    assert len(revision_label) <= 63
    for kind in ("Service", "StatefulSet", "Deployment"):
        longest = max((n for k, n in names if k == kind), key=len)
        print(f"\nlongest {kind} at a 53-character release: {longest} ({len(longest)})")


def test_ui_pods_roll_when_the_router_batch_limit_changes(renders: dict[str, Render]) -> None:
    def ui_checksum(*args: str) -> str:
        ui = _by_suffix(parse(helm_template(*args)), "Deployment", "-ui")
        return ui["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = ui_checksum("--set", "auth.apiKeys=k")
    assert ui_checksum("--set", "auth.apiKeys=k", "--set", "router.batchMaxRows=500") != base
    assert ui_checksum("--set", "auth.apiKeys=k", "--set", "router.logLevel=debug") == base


def test_secret_checksum_follows_the_secrets_own_data() -> None:
    """Generated keys differ at every `helm template` (GitOps): the pods' checksum must differ
    with them, so pods never keep keys the Secret no longer has."""

    def checksum(docs: list[dict[str, Any]], suffix: str) -> str:
        return _by_suffix(docs, "Deployment", suffix)["spec"]["template"]["metadata"]["annotations"][
            "checksum/secret"
        ]

    first, second = parse(helm_template()), parse(helm_template())
    assert checksum(first, "-router") != checksum(second, "-router")
    fixed = [
        "--set", "auth.apiKeys=a", "--set", "auth.adminApiKeys=b", "--set", "auth.runnerToken=" + "t" * 16,
        "--set", "redis.auth.password=p",
    ]  # fmt: skip
    one, two = parse(helm_template(*fixed)), parse(helm_template(*fixed))
    for suffix in ("-router", "-ui"):
        assert checksum(one, suffix) == checksum(two, suffix)
    changed = parse(helm_template(*fixed[:-1], "redis.auth.password=q"))
    assert checksum(changed, "-router") != checksum(one, "-router")
    redis = next(d for d in one if d["kind"] == "StatefulSet")
    assert redis["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] == checksum(one, "-router")


@pytest.mark.parametrize("values", ["default", "minimal", "all-features", "external-redis", "kind"])
def test_redis_has_a_password_wherever_it_is_rendered(renders: dict[str, Render], values: str) -> None:
    render = renders[values]
    router = _by_suffix(render.docs, "Deployment", "-router")
    router_env = {e["name"]: e for e in _containers(router)[0]["env"]}
    config = _by_suffix(render.docs, "ConfigMap", "-router")["data"]
    for cm in render.of_kind("ConfigMap"):
        text = str(cm.get("data", {}))
        assert "requirepass " not in text.replace("requirepass is not here", ""), cm["metadata"]["name"]
        assert not re.search(r"rediss?://[^/@\s]*:[^/@\s]+@", text), (
            f"a Redis password in {cm['metadata']['name']}"
        )
    statefulsets = render.of_kind("StatefulSet")
    if not statefulsets:
        assert "-redis" not in " ".join(d["metadata"]["name"] for d in render.docs if d["kind"] == "Service")
        return
    (redis,) = statefulsets
    server, *sidecars = _containers(redis)
    ref = next(e for e in server["env"] if e["name"] == "REDISCLI_AUTH")["valueFrom"]["secretKeyRef"]
    assert "requirepass" in " ".join(server["command"])
    assert (
        "include /run/redis/auth.conf" in _by_suffix(render.docs, "ConfigMap", "-redis")["data"]["redis.conf"]
    )
    assert router_env["WINEMEUP_ROUTER_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert config["WINEMEUP_ROUTER_REDIS_URL"].startswith("redis://")
    for sidecar in sidecars:
        exporter_env = {e["name"]: e for e in sidecar["env"]}
        assert exporter_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    chart_secrets = {s["metadata"]["name"]: s for s in render.of_kind("Secret")}
    if ref["name"] in chart_secrets:
        password = base64.b64decode(chart_secrets[ref["name"]]["data"][ref["key"]]).decode()
        assert len(password) >= 32 or render.values["redis"]["auth"]["password"]


def test_external_rediss_takes_a_password_key_and_a_ca() -> None:
    docs = parse(
        helm_template(
            "--set", "redis.external.existingSecret=managed-redis",
            "--set", "redis.external.existingSecretPasswordKey=password",
            "--set", "redis.external.tls.caSecret=managed-redis-ca",
        )
    )  # fmt: skip
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    router = _by_suffix(docs, "Deployment", "-router")
    env = {e["name"]: e for e in _containers(router)[0]["env"]}
    assert env["WINEMEUP_ROUTER_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "managed-redis",
        "key": "redis-url",
    }
    assert env["WINEMEUP_ROUTER_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "managed-redis",
        "key": "password",
    }
    ca_file = _by_suffix(docs, "ConfigMap", "-router")["data"]["WINEMEUP_ROUTER_REDIS_TLS_CA_FILE"]
    mounts = {m["mountPath"]: m["name"] for m in _containers(router)[0]["volumeMounts"]}
    volumes = {v["name"]: v for v in router["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[ca_file.rsplit("/", 1)[0]]]["secret"]["secretName"] == "managed-redis-ca"
    policy = _by_suffix(docs, "NetworkPolicy", "-router")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {6379, 6380} <= ports


def test_network_policies_take_extra_rules_and_limit_egress(renders: dict[str, Render]) -> None:
    docs = parse(
        helm_template(
            "-f", str(VALUES_FILES["all-features"]),
            "--set-json", 'networkPolicy.ui.extraIngress=[{"from":[{"ipBlock":{"cidr":"192.168.0.0/16"}}]}]',
            "--set-json", 'networkPolicy.router.extraEgress=[{"to":[{"ipBlock":{"cidr":"10.1.0.0/24"}}]}]',
            "--set-json", 'networkPolicy.runners.extraEgress=[{"ports":[{"port":8443,"protocol":"TCP"}]}]',
        )
    )  # fmt: skip
    router = _by_suffix(docs, "NetworkPolicy", "-router")
    ui = _by_suffix(docs, "NetworkPolicy", "-ui")
    assert {"Ingress", "Egress"} <= set(router["spec"]["policyTypes"]) and "Egress" in ui["spec"][
        "policyTypes"
    ]
    cidrs = [
        p["ipBlock"]["cidr"] for r in router["spec"]["ingress"] for p in r.get("from", []) if "ipBlock" in p
    ]
    assert cidrs == ["10.0.0.0/16"]  # ci/all-features: a load balancer in IP mode
    assert {"192.168.0.0/16"} == {
        p["ipBlock"]["cidr"] for r in ui["spec"]["ingress"] for p in r.get("from", []) if "ipBlock" in p
    }
    router_to = [p for r in router["spec"]["egress"] for p in r.get("to", [])]
    assert {"cidr": "10.1.0.0/24"} in [p.get("ipBlock") for p in router_to]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("winemeup.io/tier") == "runner" for p in router_to
    )
    ui_ports = {p["port"] for r in ui["spec"]["egress"] for p in r.get("ports", [])}
    assert ui_ports == {53, 8000}
    lightgbm = _by_suffix(docs, "NetworkPolicy", "-runner-lightgbm")
    svr = _by_suffix(docs, "NetworkPolicy", "-runner-svr")
    ports = lambda p: {x["port"] for r in p["spec"]["egress"] for x in r.get("ports", [])}  # noqa: E731
    assert ports(lightgbm) == {53, 443, 8443}  # its modelUri is https; every runner gets the extra rule
    assert ports(svr) == {53, 8443}


def test_disruption_budgets_cover_router_ui_and_every_runner(renders: dict[str, Render]) -> None:
    render = renders["default"]
    budgets = {p["metadata"]["name"]: p for p in render.of_kind("PodDisruptionBudget")}
    workloads = [d for d in render.of_kind("Deployment")]
    assert len(budgets) == len(workloads) == 9  # router, UI, seven runners
    for workload in workloads:
        budget = budgets[workload["metadata"]["name"]]
        assert budget["spec"]["selector"] == workload["spec"]["selector"]
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert budget["spec"]["maxUnavailable"] == 1
    default_model = render.values["router"]["defaultModel"]
    hpa = _by_suffix(render.docs, "HorizontalPodAutoscaler", f"-runner-{default_model}")
    assert hpa["spec"]["minReplicas"] >= 2, "one eviction would leave the default model without a runner"


def test_redis_pods_do_not_restart_for_a_chart_upgrade(renders: dict[str, Render]) -> None:
    (redis,) = renders["default"].of_kind("StatefulSet")
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
    for workload in _workloads(renders["default"].docs):
        assert "helm.sh/chart" not in workload["spec"]["template"]["metadata"]["labels"]


def test_upload_limits_agree() -> None:
    docs = parse(helm_template("--set", "ingress.enabled=true"))
    ui_config = _by_suffix(docs, "ConfigMap", "-ui")["data"]
    ingress = _by_suffix(docs, "Ingress", "-ui")
    body_mb = int(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"].rstrip("m")
    )
    assert int(ui_config["STREAMLIT_SERVER_MAX_UPLOAD_SIZE"]) < body_mb
    with pytest.raises(AssertionError, match=r"ui\.maxUploadMegabytes"):
        helm_template("--set", "ingress.enabled=true", "--set", "ui.maxUploadMegabytes=20")
    ui_service = _by_suffix(docs, "Service", "-ui")
    assert ui_service["spec"]["sessionAffinity"] == "ClientIP"


def test_rollouts_drain_before_stopping(renders: dict[str, Render]) -> None:
    for workload in renders["default"].of_kind("Deployment"):
        container = workload["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", workload["metadata"][
            "name"
        ]
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > int(container["lifecycle"]["preStop"]["exec"]["command"][1])


SPREAD = (
    "runnerDefaults.topologySpreadConstraints="
    '[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"ScheduleAnyway"}]'
)
RELABEL = 'metrics.serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"eu-1"}]'


def test_conventions_of_well_kept_charts_render() -> None:
    docs = parse(
        helm_template(
            "--set", "global.imageRegistry=mirror.example.com",
            "--set", "router.podLabels.team=ml",
            "--set", "router.priorityClassName=serving",
            "--set", "router.probes.readiness.periodSeconds=11",
            "--set", "router.service.annotations.lb=internal",
            "--set-json", 'router.extraVolumes=[{"name":"extra","emptyDir":{}}]',
            "--set-json", 'router.extraVolumeMounts=[{"name":"extra","mountPath":"/extra"}]',
            "--set-json", 'router.extraEnvFrom=[{"configMapRef":{"name":"more"}}]',
            "--set-json", SPREAD,
            "--set-json", 'models.svr.nodeSelector={"pool":"cpu-large"}',
            "--set-json", RELABEL,
            "--set", "metrics.serviceMonitor.enabled=true",
            "--set", "metrics.prometheusRule.enabled=true",
            "--set-json", 'metrics.prometheusRule.extraRules=[{"alert":"Custom","expr":"vector(1)"}]',
        )
    )  # fmt: skip
    router = _by_suffix(docs, "Deployment", "-router")
    pod = router["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert (
        pod["metadata"]["labels"]["team"] == "ml" and "team" not in router["spec"]["selector"]["matchLabels"]
    )
    assert pod["spec"]["priorityClassName"] == "serving"
    assert (
        container["readinessProbe"]["periodSeconds"] == 11
        and container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    )
    assert {"name": "extra", "mountPath": "/extra"} in container["volumeMounts"]
    assert {"configMapRef": {"name": "more"}} in container["envFrom"]
    assert _by_suffix(docs, "Service", "-router")["metadata"]["annotations"] == {"lb": "internal"}
    images = {c["image"] for w in _workloads(docs) for c in _containers(w)}
    assert all(image.startswith("mirror.example.com/") for image in images), images
    svr = _by_suffix(docs, "Deployment", "-runner-svr")["spec"]["template"]["spec"]
    assert svr["nodeSelector"] == {"pool": "cpu-large"}
    spread = svr["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "runner-svr"
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert all(
        {"targetLabel": "cluster", "replacement": "eu-1"} in m["spec"]["endpoints"][0]["relabelings"]
        for m in monitors
    )
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    assert groups["winemeup.extra"]["rules"] == [{"alert": "Custom", "expr": "vector(1)"}]
    alerts = {r["alert"] for g in groups.values() for r in g["rules"] if "alert" in r}
    assert {"WineMeUpModelNotReady", "WineMeUpDefaultModelUnavailable"} <= alerts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "models.svr.autoscaling.minReplicas=5"],
            "models.svr: autoscaling.minReplicas (5) must not exceed",
        ),
        (
            [
                "--set",
                "models.svr.placement=inline",
                "--set",
                "models.svr.modelUri=https://x.example/svr.bentomodel",
                "--set",
                f"models.svr.modelSha256={'0' * 64}",
            ],
            "models.svr.modelUri needs placement: runner",
        ),
        (["--set", "models.svr.modelSha256=abc"], "modelSha256"),
    ],
)
def test_bad_production_values_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template(*args)
    assert message in str(refused.value)


def test_notes_warn_when_keys_were_generated() -> None:
    generated = install_notes()
    assert (
        "WARNING: this render generated api-keys, admin-api-keys, runner-token, redis-password" in generated
    )
    assert "auth.existingSecret" in generated and "redis.auth.existingSecret" in generated
    gitops = install_notes("--set", "auth.existingSecret=keys", "--set", "redis.auth.existingSecret=redis")
    assert "WARNING" not in gitops


def test_model_alerts_fire_when_a_runner_is_down(renders: dict[str, Render], tmp_path: Path) -> None:
    """`promtool test rules`: svr unready in both router pods fires WineMeUpModelNotReady for
    svr only; the default model (lightgbm) unready everywhere fires
    WineMeUpDefaultModelUnavailable; one pod still serving it keeps that alert quiet."""
    promtool = which("promtool")
    rule = renders["all-features"].of_kind("PrometheusRule")[0]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    router = 'namespace="winemeup", service="wm-winemeup-router"'

    def series(
        name: str, pod: str, model: str, values: str, placement: str | None = "runner"
    ) -> dict[str, str]:
        extra = f', placement="{placement}"' if placement else ""
        return {"series": f'{name}{{{router}, pod="{pod}", model="{model}"{extra}}}', "values": values}

    ready, default = "winemeup_router_model_ready", "winemeup_router_default_model"
    inputs = [
        series(ready, "a", "svr", "0x30"),
        series(ready, "b", "svr", "0x30"),
        series(ready, "a", "xgboost", "1x30"),
        series(ready, "b", "xgboost", "0x30"),  # one pod still serves it: no alert
        # lightgbm: unready everywhere from minute 10 on
        series(ready, "a", "lightgbm", "1x9 0x20"),
        series(ready, "b", "lightgbm", "1x9 0x20"),
        series(default, "a", "lightgbm", "1x30", None),
        series(default, "b", "lightgbm", "1x30", None),
        series(default, "a", "svr", "0x30", None),
        series(default, "b", "svr", "0x30", None),
    ]
    labels = {"team": "ml-platform"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "8m",
                        "alertname": "WineMeUpModelNotReady",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model": "svr", **labels},
                                "exp_annotations": {
                                    "summary": "A WineMeUp model cannot answer.",
                                    "description": "No router pod in winemeup can serve model svr: its runner"
                                    " is down or its load failed. Requests naming it answer 503.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "8m", "alertname": "WineMeUpDefaultModelUnavailable", "exp_alerts": []},
                    {
                        "eval_time": "14m",
                        "alertname": "WineMeUpDefaultModelUnavailable",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "model": "lightgbm", **labels},
                                "exp_annotations": {
                                    "summary": "The WineMeUp default model cannot answer.",
                                    "description": "The default model lightgbm in winemeup is not ready in"
                                    " any router pod: requests that name no model (and the UI)"
                                    " answer 503 except for cached wines. Fix its runner or switch"
                                    " the default (PUT /v1/models/default).",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
