"""What the rendered manifests promise, read from the YAML of every render: one runner per
enabled runner-placed model, selectors that match pod labels, NetworkPolicies selecting the
right pods, router runner URLs that point at runner Services, checksum annotations, security
contexts, and settings the real pydantic-settings classes accept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chart_render import NAMESPACE, Render

from services.router.settings import RouterSettings
from services.runner.settings import RunnerSettings
from ui.settings import UISettings
from winemeup.runtimes import MODEL_NAMES

pytestmark = pytest.mark.chart

WORKLOADS = ("Deployment", "StatefulSet")


def _pods(render: Render) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every workload, plus bare Pods (the helm test hook)."""
    out = [(w, w["spec"]["template"]) for kind in WORKLOADS for w in render.of_kind(kind)]
    out += [(p, p) for p in render.of_kind("Pod")]
    return out


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    assert not selector.get("matchExpressions"), "the chart uses matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _runner_models(render: Render) -> list[str]:
    models = render.values["models"]
    return sorted(m for m, v in models.items() if v["enabled"] and v["placement"] == "runner")


def _router_env(render: Render) -> dict[str, str]:
    config = next(c for c in render.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-router"))
    return dict(config["data"])


@pytest.fixture(params=["default", "minimal", "all-features", "external-redis", "inline-placement"])
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    return renders[request.param]


def test_one_runner_deployment_service_and_hpa_per_runner_model(render: Render) -> None:
    models = render.values["models"]
    # A model with a candidate has a second runner (all-features: svr).
    expected = sorted(
        [*_runner_models(render), *(m for m in _runner_models(render) if models[m].get("candidate"))]
    )
    for kind in ("Deployment", "Service"):
        got = sorted(
            d["metadata"]["labels"]["winemeup.io/model"]
            for d in render.of_kind(kind)
            if d["metadata"]["labels"].get("winemeup.io/tier") == "runner"
        )
        assert got == expected, f"{render.name}: {kind}"
    hpas = {
        h["metadata"]["labels"]["winemeup.io/model"]
        for h in render.of_kind("HorizontalPodAutoscaler")
        if h["metadata"]["labels"].get("winemeup.io/track") != "candidate"
        if h["metadata"]["labels"].get("winemeup.io/tier") == "runner"
    }
    with_hpa = {m for m in expected if render.values["models"][m].get("autoscaling", {}).get("enabled", True)}
    assert hpas == with_hpa
    for deployment in render.of_kind("Deployment"):
        if deployment["metadata"]["labels"].get("winemeup.io/tier") != "runner":
            continue
        model = deployment["metadata"]["labels"]["winemeup.io/model"]
        env = {
            e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["WINEMEUP_RUNNER_MODEL"] == model
        candidate = deployment["metadata"]["labels"].get("winemeup.io/track") == "candidate"
        assert env.get("WINEMEUP_RUNNER_VERSION") == (
            models[model]["candidate"]["version"] if candidate else None
        )
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .split(":")[0]
            .endswith("winemeup-runner-" + model.replace("_", "-"))
        )


def test_selectors_match_their_pods_and_never_use_the_chart_label(render: Render) -> None:
    for workload, pod in _pods(render):
        if workload["kind"] == "Pod":
            continue
        selector = workload["spec"]["selector"]
        assert "helm.sh/chart" not in selector["matchLabels"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(
            selector["matchLabels"]
        )
        assert _matches(selector, pod["metadata"]["labels"]), workload["metadata"]["name"]
        # Exactly one workload's pods match each workload's selector.
        owners = [
            w for w, p in _pods(render) if w["kind"] != "Pod" and _matches(selector, p["metadata"]["labels"])
        ]
        assert owners == [workload], workload["metadata"]["name"]
    pod_labels = [p["metadata"]["labels"] for _, p in _pods(render)]
    for service in render.of_kind("Service"):
        selected = [
            labels for labels in pod_labels if _matches({"matchLabels": service["spec"]["selector"]}, labels)
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        assert "helm.sh/chart" not in service["spec"]["selector"]
    for kind in ("HorizontalPodAutoscaler",):
        for hpa in render.of_kind(kind):
            target = hpa["spec"]["scaleTargetRef"]
            render.get(target["kind"], target["name"])
    for pdb in render.of_kind("PodDisruptionBudget"):
        assert any(_matches(pdb["spec"]["selector"], labels) for labels in pod_labels)


def test_router_runner_urls_point_at_runner_services(render: Render) -> None:
    env = _router_env(render)
    urls = json.loads(env["WINEMEUP_ROUTER_RUNNER_URLS"])
    assert sorted(urls) == _runner_models(render)
    for model, url in urls.items():
        host, port = url.removeprefix("http://").split(":")
        name, namespace, svc = host.split(".")
        assert (namespace, svc) == (NAMESPACE, "svc")
        service = render.get("Service", name)
        assert service["metadata"]["labels"]["winemeup.io/model"] == model
        assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    placements = json.loads(env["WINEMEUP_ROUTER_PLACEMENTS"])
    enabled = sorted(m for m, v in render.values["models"].items() if v["enabled"])
    assert sorted(placements) == enabled == sorted(env["WINEMEUP_ROUTER_MODELS"].split(","))


def test_router_and_ui_settings_parse_with_the_real_settings_classes(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(__import__("os").environ):
        if key.startswith(("WINEMEUP_ROUTER_", "WINEMEUP_UI_", "WINEMEUP_RUNNER_")):
            monkeypatch.delenv(key)
    for key, value in _router_env(render).items():
        monkeypatch.setenv(key, value)
    router = next(d for d in render.of_kind("Deployment") if d["metadata"]["name"].endswith("-router"))
    container = router["spec"]["template"]["spec"]["containers"][0]
    secret_env = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"WINEMEUP_ROUTER_API_KEYS", "WINEMEUP_ROUTER_ADMIN_API_KEYS"} <= secret_env
    monkeypatch.setenv("WINEMEUP_ROUTER_API_KEYS", "k1")
    monkeypatch.setenv("WINEMEUP_ROUTER_ADMIN_API_KEYS", "k2")
    if "WINEMEUP_ROUTER_REDIS_URL" in secret_env:
        monkeypatch.setenv("WINEMEUP_ROUTER_REDIS_URL", "redis://example:6379/0")
    settings = RouterSettings()  # type: ignore[call-arg]
    assert settings.host == "0.0.0.0"
    for model in settings.models:
        assert settings.placement_of(model) == render.values["models"][model]["placement"]
    inline = [m for m in settings.models if settings.placement_of(m) == "inline"]
    image = container["image"]
    if inline:
        assert "router-models" in image and settings.model_store is not None
    else:
        assert "router-models" not in image
    backend = "memory"
    if render.values["redis"]["external"]["url"]:
        backend = "external"
    elif render.values["redis"]["enabled"]:
        backend = "internal"
    assert (settings.redis_url is not None) == (backend != "memory")
    if backend == "internal":
        redis_host = settings.redis_url.get_secret_value().split("//")[1].split(".")[0]  # type: ignore[union-attr]
        render.get("StatefulSet", redis_host)
    else:
        assert not render.of_kind("StatefulSet")

    for deployment in render.of_kind("Deployment"):
        labels = deployment["metadata"]["labels"]
        if labels["app.kubernetes.io/component"] == "ui":
            config = render.get("ConfigMap", deployment["metadata"]["name"])
            for key, value in config["data"].items():
                monkeypatch.setenv(key, value)
            monkeypatch.setenv("WINEMEUP_UI_API_KEY", "k1")
            ui = UISettings()  # type: ignore[call-arg]
            router_host = ui.router_url.removeprefix("http://").split(".")[0]
            assert render.get("Service", router_host)["spec"]["ports"][0]["port"] == int(
                ui.router_url.rsplit(":", 1)[1]
            )
        if labels.get("winemeup.io/tier") == "runner":
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            config = render.get("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
            for key, value in config["data"].items():
                monkeypatch.setenv(key, value)
            for e in container["env"]:
                # A Secret's value (the runner token) stands in as one a Secret would hold.
                monkeypatch.setenv(e["name"], e.get("value", "a-secret-of-32-characters-or-so"))
            runner = RunnerSettings()  # type: ignore[call-arg]
            assert runner.model in MODEL_NAMES
            assert runner.token is not None, "the runner pod gets no runner token"


def test_every_setting_the_chart_sets_is_a_field_of_the_settings_classes(render: Render) -> None:
    """The settings classes ignore unknown variables: a misspelt or renamed one would be lost
    silently, so every WINEMEUP_* name the chart renders must be a field."""
    known = {
        "WINEMEUP_ROUTER_": set(RouterSettings.model_fields),
        "WINEMEUP_RUNNER_": set(RunnerSettings.model_fields),
        "WINEMEUP_UI_": set(UISettings.model_fields),
    }
    names = set()
    for config in render.of_kind("ConfigMap"):
        names |= set(config.get("data", {}))
    for workload in render.of_kind("Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    unknown = []
    for name in sorted(names):
        for prefix, fields in known.items():
            if name.startswith(prefix) and name.removeprefix(prefix).lower() not in fields:
                unknown.append(name)
    assert not unknown, f"set by the chart but not a settings field: {unknown}"
    assert any(n.startswith("WINEMEUP_ROUTER_") for n in names)


def test_network_policies_select_the_right_pods(renders: dict[str, Render]) -> None:
    render = renders["all-features"]
    policies = {p["metadata"]["name"]: p for p in render.of_kind("NetworkPolicy")}
    pods = {w["metadata"]["name"]: p["metadata"]["labels"] for w, p in _pods(render) if w["kind"] != "Pod"}
    test_pod = render.of_kind("Pod")[0]["metadata"]["labels"]
    router = next(n for n in pods if n.endswith("-router"))
    ui = next(n for n in pods if n.endswith("-ui"))
    redis = next(n for n in pods if n.endswith("-redis"))
    runners = [n for n in pods if "-runner-" in n]

    def allowed_sources(target: str) -> list[dict[str, Any]]:
        selecting = [p for p in policies.values() if _matches(p["spec"]["podSelector"], pods[target])]
        assert len(selecting) == 1, f"{target} is selected by {len(selecting)} policies"
        return [peer for rule in selecting[0]["spec"]["ingress"] for peer in rule["from"]]

    def admits_pod(sources: list[dict[str, Any]], labels: dict[str, str]) -> bool:
        return any("namespaceSelector" not in s and _matches(s["podSelector"], labels) for s in sources)

    ingress_controller = render.values["networkPolicy"]["ingressController"]
    for target in (router, ui):
        sources = allowed_sources(target)
        assert {
            "namespaceSelector": ingress_controller["namespaceSelector"],
            "podSelector": ingress_controller["podSelector"],
        } in sources
    assert admits_pod(allowed_sources(router), pods[ui])
    assert admits_pod(allowed_sources(router), test_pod)
    assert not admits_pod(allowed_sources(ui), pods[router])
    for target in [*runners, redis]:
        sources = allowed_sources(target)
        assert admits_pod(sources, pods[router])
        for other in [ui, redis, *runners]:
            assert not admits_pod(sources, pods[other]), f"{other} may reach {target}"
        assert not admits_pod(sources, test_pod)
    assert len(runners) == 8  # seven models and svr's candidate


def test_checksum_annotations_roll_pods_when_config_or_keys_change(renders: dict[str, Render]) -> None:
    from chart_render import helm_template, parse

    def annotations(docs: list[dict[str, Any]], suffix: str) -> dict[str, str]:
        d = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith(suffix))
        return d["spec"]["template"]["metadata"]["annotations"]

    base = renders["minimal"].docs
    for suffix in ("-router",):
        assert {"checksum/config", "checksum/secret"} <= set(annotations(base, suffix))
    minimal = ["-f", str(renders["minimal"].values_file)]
    changed_config = parse(helm_template(*minimal, "--set", "router.logLevel=debug"))
    changed_keys = parse(helm_template(*minimal, "--set", "auth.apiKeys=another-key"))
    before = annotations(base, "-router")
    assert annotations(changed_config, "-router")["checksum/config"] != before["checksum/config"]
    assert annotations(changed_config, "-router")["checksum/secret"] == before["checksum/secret"]
    assert annotations(changed_keys, "-router")["checksum/secret"] != before["checksum/secret"]
    for d in renders["default"].of_kind("Deployment"):
        assert "checksum/config" in d["spec"]["template"]["metadata"]["annotations"], d["metadata"]["name"]


def test_every_container_is_locked_down(render: Render) -> None:
    for workload, pod in _pods(render):
        spec = pod["spec"]
        name = workload["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
                resources["limits"]
            )
            # Init containers run to completion: Kubernetes refuses probes on them.
            if workload["kind"] != "Pod" and container in spec["containers"]:
                assert {"readinessProbe", "livenessProbe"} <= set(container), f"{name}/{container['name']}"
        if workload["kind"] == "Deployment":
            assert "startupProbe" in spec["containers"][0], name


def test_ingress_routes_api_to_router_and_the_rest_to_the_ui(renders: dict[str, Render]) -> None:
    """Two Ingresses on one host: the API with request-sized timeouts, the UI with the long
    WebSocket timeouts and a cookie that keeps a browser on the pod holding its session."""
    ingresses = {i["metadata"]["name"]: i for i in renders["all-features"].of_kind("Ingress")}
    api = next(i for n, i in ingresses.items() if not n.endswith("-ui"))
    ui = next(i for n, i in ingresses.items() if n.endswith("-ui"))
    backends: dict[str, str] = {}
    for ingress in (api, ui):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert ingress["spec"]["tls"][0]["secretName"] == "winemeup-tls"
        assert ingress["spec"]["rules"][0]["host"] == "winemeup.example.com"
        backends |= {
            p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
        }
    for path in ("/v1", "/healthz", "/readyz", "/docs", "/openapi.json"):
        assert backends[path].endswith("-router"), path
    assert backends["/"].endswith("-ui")
    assert "/metrics" not in backends
    ui_notes, api_notes = ui["metadata"]["annotations"], api["metadata"]["annotations"]
    for direction in ("read", "send"):
        assert int(ui_notes[f"nginx.ingress.kubernetes.io/proxy-{direction}-timeout"]) >= 3600
        assert int(api_notes[f"nginx.ingress.kubernetes.io/proxy-{direction}-timeout"]) <= 60
    assert ui_notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert "nginx.ingress.kubernetes.io/affinity" not in api_notes


def test_monitoring_objects_are_switched_by_values(renders: dict[str, Render]) -> None:
    assert not renders["default"].of_kind("ServiceMonitor")
    assert not renders["default"].of_kind("PrometheusRule")
    full = renders["all-features"]
    monitors = {m["metadata"]["name"]: m for m in full.of_kind("ServiceMonitor")}
    assert len(monitors) == 3
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in monitors.values())
    services = full.of_kind("Service")
    for monitor in monitors.values():
        port_names = {e["port"] for e in monitor["spec"]["endpoints"]}
        scraped = [
            s
            for s in services
            if _matches(monitor["spec"]["selector"], s["metadata"]["labels"])
            and port_names & {p["name"] for p in s["spec"]["ports"]}
        ]
        assert scraped, f"ServiceMonitor {monitor['metadata']['name']} scrapes nothing"
    runner_monitor = next(m for n, m in monitors.items() if n.endswith("-runners"))
    assert (
        len([s for s in services if _matches(runner_monitor["spec"]["selector"], s["metadata"]["labels"])])
        == 8  # seven models and svr's candidate
    )
    dashboard = next(c for c in full.of_kind("ConfigMap") if "winemeup.json" in c.get("data", {}))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    board = json.loads(dashboard["data"]["winemeup.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "winemeup_router_request_duration_seconds_bucket",
        "winemeup_router_requests_total",
        "winemeup_router_cache_hits_total",
        "winemeup_router_runner_errors_total",
        "kube_deployment_status_replicas_available",
    ):
        assert metric in exprs


def test_metric_names_used_by_alerts_and_dashboard_exist_in_the_router() -> None:
    """Alerts and the dashboard query what services/router/metrics.py really exports."""
    import re
    from pathlib import Path

    from chart_render import CHART
    from prometheus_client.parser import text_string_to_metric_families

    from services.router import metrics

    exported = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        exported.add(family.name)
        exported.update(s.name for s in family.samples)
    exported.update(f"{n}_total" for n in list(exported))
    for suffix in ("_bucket", "_count", "_sum"):
        exported.update(n + suffix for n in list(exported))
    used = set(re.findall(r"winemeup_router_[a-z_]+", (CHART / "dashboards" / "winemeup.json").read_text()))
    used |= set(
        re.findall(
            r"winemeup_router_[a-z_]+", (Path(CHART) / "templates" / "prometheusrule.yaml").read_text()
        )
    )
    assert used
    assert used <= exported, f"not exported by the router: {sorted(used - exported)}"


def test_keys_secret_is_generated_or_taken_from_an_existing_secret(renders: dict[str, Render]) -> None:
    import base64

    def decoded(secret: dict[str, Any]) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    generated = decoded(renders["default"].of_kind("Secret")[0])
    assert len(generated["api-keys"]) == 40 and len(generated["admin-api-keys"]) == 40
    assert generated["api-keys"] != generated["admin-api-keys"]
    assert generated["ui-api-key"] == generated["api-keys"]
    given = decoded(renders["external-redis"].of_kind("Secret")[0])
    assert given["api-keys"] == "key-one,key-two" and given["ui-api-key"] == "key-one"
    assert given["redis-url"].startswith("rediss://")
    existing = renders["all-features"]
    assert not existing.of_kind("Secret")  # keys and the Redis password from existing Secrets
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in existing.of_kind("Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert refs == {"winemeup-api-keys", "winemeup-redis"}
