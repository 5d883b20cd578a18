"""The chart's side of hardening against abuse, read from real `helm template` renders.

- Runners trust only the router: one runner token in the release Secret (or an existing
  Secret), read by the router and every runner; runner pods roll when it changes.
- Runner metrics on a port of their own: Prometheus may reach only that port, the router only
  the API port, and the ServiceMonitor scrapes the metrics port.
- The API Ingress routes /v2; ingress-nginx rate limits are off by default and complete when
  on; the UI sits behind basic auth or an OAuth2 proxy when asked (and in the production
  example).
- Every image takes a digest and renders as repository@sha256:...
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from chart_render import VALUES_FILES, Render, helm_template, parse

pytestmark = pytest.mark.chart

DIGEST = "sha256:" + "ab" * 32


def _deployments(docs: list[dict[str, Any]], tier: str | None = None) -> list[dict[str, Any]]:
    out = [d for d in docs if d["kind"] == "Deployment"]
    if tier is not None:
        out = [d for d in out if d["metadata"]["labels"].get("winemeup.io/tier") == tier]
    return out


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


def _router(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in _deployments(docs) if d["metadata"]["name"].endswith("-router"))


@pytest.mark.parametrize("values", ["default", "all-features", "kind"])
def test_router_and_every_runner_read_one_runner_token(renders: dict[str, Render], values: str) -> None:
    docs = renders[values].docs
    router_ref = _env(_router(docs))["WINEMEUP_ROUTER_RUNNER_TOKEN"]["valueFrom"]["secretKeyRef"]
    runners = _deployments(docs, "runner")
    assert runners
    for runner in runners:
        ref = _env(runner)["WINEMEUP_RUNNER_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == router_ref, runner["metadata"]["name"]
        assert "checksum/secret" in runner["spec"]["template"]["metadata"]["annotations"]
    assert router_ref["key"] == "runner-token"
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    if router_ref["name"] in secrets:  # the chart's own Secret (not auth.existingSecret)
        token = base64.b64decode(secrets[router_ref["name"]]["data"]["runner-token"]).decode()
        assert len(token) >= 16


def test_a_given_runner_token_is_used_and_a_changed_one_rolls_the_runners() -> None:
    def render(token: str) -> list[dict[str, Any]]:
        return parse(helm_template("-f", str(VALUES_FILES["minimal"]), "--set", f"auth.runnerToken={token}"))

    one, two = render("a" * 20), render("b" * 20)
    secret = next(d for d in one if d["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["runner-token"]).decode() == "a" * 20

    def checksum(docs: list[dict[str, Any]]) -> str:
        return str(
            _deployments(docs, "runner")[0]["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        )

    assert checksum(one) != checksum(two)
    assert checksum(one) == checksum(render("a" * 20))
    with pytest.raises(AssertionError, match="runnerToken"):
        helm_template("--set", "auth.runnerToken=short")


def test_runner_metrics_have_their_own_port_and_prometheus_only_that(renders: dict[str, Render]) -> None:
    docs = renders["all-features"].docs
    port = renders["all-features"].values["runnerDefaults"]["metricsPort"]
    for runner in _deployments(docs, "runner"):
        container = runner["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 3000, "metrics": port}
        config = next(
            d
            for d in docs
            if d["kind"] == "ConfigMap"
            and d["metadata"]["name"] == container["envFrom"][0]["configMapRef"]["name"]
        )
        assert config["data"]["WINEMEUP_RUNNER_METRICS_PORT"] == str(port)
    for service in (
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["labels"].get("winemeup.io/tier") == "runner"
    ):
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 3000, "metrics": port}
    monitor = next(
        d for d in docs if d["kind"] == "ServiceMonitor" and d["metadata"]["name"].endswith("-runners")
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("runner-")
    ]
    assert policies
    for policy in policies:
        rules = policy["spec"]["ingress"]
        by_port = {tuple(p["port"] for p in rule["ports"]): rule["from"] for rule in rules}
        assert set(by_port) == {("http",), ("metrics",)}, rules
        (router,) = by_port[("http",)]
        assert router["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
        (prometheus,) = by_port[("metrics",)]
        assert "namespaceSelector" in prometheus  # networkPolicy.prometheus, not the router


def _api_ingress(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Ingress" and not d["metadata"]["name"].endswith("-ui"))


def _ui_ingress(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Ingress" and d["metadata"]["name"].endswith("-ui"))


def test_the_api_ingress_routes_v2_and_rate_limits_only_when_asked(renders: dict[str, Render]) -> None:
    ingress = _api_ingress(renders["all-features"].docs)
    paths = {p["path"]: p["pathType"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/v1"] == paths["/v2"] == "Prefix"
    limits = {k: v for k, v in ingress["metadata"]["annotations"].items() if "/limit-" in k}
    assert limits == {
        "nginx.ingress.kubernetes.io/limit-rps": "20",
        "nginx.ingress.kubernetes.io/limit-burst-multiplier": "5",
        "nginx.ingress.kubernetes.io/limit-connections": "20",
    }
    off = _api_ingress(parse(helm_template("--set", "ingress.enabled=true")))
    assert not [k for k in off["metadata"]["annotations"] if "/limit-" in k]
    no_rps = _api_ingress(
        parse(
            helm_template(
                "--set",
                "ingress.enabled=true",
                "--set",
                "ingress.rateLimit.enabled=true",
                "--set",
                "ingress.rateLimit.rps=0",
            )
        )
    )
    assert [k for k in no_rps["metadata"]["annotations"] if "/limit-" in k] == [
        "nginx.ingress.kubernetes.io/limit-connections"
    ]
    # The UI's Ingress is not rate limited by these (Streamlit opens many small requests).
    assert not [
        k for k in _ui_ingress(renders["all-features"].docs)["metadata"]["annotations"] if "/limit-" in k
    ]


def test_the_ui_is_behind_a_door_in_the_production_example(renders: dict[str, Render]) -> None:
    annotations = _ui_ingress(renders["all-features"].docs)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert annotations["nginx.ingress.kubernetes.io/auth-secret"] == "winemeup-ui-htpasswd"
    assert annotations["nginx.ingress.kubernetes.io/auth-realm"] == "WineMeUp"
    # Never on the API: clients authenticate there with their keys.
    assert not [
        k for k in _api_ingress(renders["all-features"].docs)["metadata"]["annotations"] if "/auth-" in k
    ]
    default = _ui_ingress(parse(helm_template("--set", "ingress.enabled=true")))["metadata"]["annotations"]
    assert not [k for k in default if "/auth-" in k]


def test_an_external_oauth2_proxy_guards_the_ui() -> None:
    url = "https://oauth2.example.com/oauth2/auth"
    signin = "https://oauth2.example.com/oauth2/start?rd=$scheme://$host$escaped_request_uri"
    docs = parse(
        helm_template(
            "--set",
            "ingress.enabled=true",
            "--set",
            "ingress.uiAuth.type=external",
            "--set",
            f"ingress.uiAuth.url={url}",
            "--set-string",
            f"ingress.uiAuth.signin={signin}",
            "--set",
            "ingress.uiAuth.responseHeaders=X-Auth-Request-Email",
        )
    )
    annotations = _ui_ingress(docs)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == url
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"] == signin
    assert annotations["nginx.ingress.kubernetes.io/auth-response-headers"] == "X-Auth-Request-Email"
    assert "nginx.ingress.kubernetes.io/auth-type" not in annotations


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "ingress.uiAuth.type=basic"], "basicSecret"),
        (
            ["--set", "ingress.uiAuth.type=external", "--set", "ingress.uiAuth.url=https://a.example/auth"],
            "signin",
        ),
        (["--set", "ingress.uiAuth.type=ldap"], "uiAuth"),
    ],
    ids=["basic-without-secret", "external-without-signin", "unknown-type"],
)
def test_an_incomplete_ui_door_is_refused(args: list[str], message: str) -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template("--set", "ingress.enabled=true", *args)
    assert message in str(refused.value)


def test_every_image_takes_a_digest() -> None:
    """Every container of every workload (runners, router, UI, Redis and its exporter, the
    operator) renders repository@sha256:... when its digest is set."""
    args = [
        "--set", f"router.image.digest={DIGEST}",
        "--set", f"ui.image.digest={DIGEST}",
        "--set", f"redis.image.digest={DIGEST}",
        "--set", f"redis.exporter.image.digest={DIGEST}",
        "--set", "models.lightgbm.modelUri=https://models.example/lightgbm.bentomodel",
        "--set", f"models.lightgbm.modelSha256={'0' * 64}",
    ]  # fmt: skip
    for model in (
        "lightgbm",
        "xgboost",
        "catboost",
        "random_forest",
        "extra_trees",
        "hist_gradient_boosting",
        "svr",
    ):
        args += ["--set", f"models.{model}.enabled=true", "--set", f"models.{model}.image.digest={DIGEST}"]
    docs = parse(helm_template(*args))
    images = [
        (d["metadata"]["name"], c["name"], c["image"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        + d["spec"]["template"]["spec"].get("initContainers", [])
    ]
    assert len(images) >= 11  # router, UI, Redis + exporter, seven runners (+ the model-fetch)
    for workload, container, image in images:
        repository, _, digest = image.partition("@")
        assert digest == DIGEST and ":" not in repository, (workload, container, image)
    inline = parse(
        helm_template(
            "--set", "models.lightgbm.placement=inline", "--set", f"router.inlineImage.digest={DIGEST}"
        )
    )
    assert _router(inline)["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + DIGEST)
    operator = parse(
        helm_template("-f", str(VALUES_FILES["operator"]), "--set", f"operator.image.digest={DIGEST}")
    )
    operator_image = next(d for d in _deployments(operator) if d["metadata"]["name"].endswith("-operator"))[
        "spec"
    ]["template"]["spec"]["containers"][0]["image"]
    assert operator_image.endswith("@" + DIGEST)
    with pytest.raises(AssertionError, match="digest"):
        helm_template("--set", "redis.image.digest=latest")
