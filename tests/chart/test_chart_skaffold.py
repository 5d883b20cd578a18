"""skaffold.yaml binds every image it builds to the chart's values, and those values render."""

from __future__ import annotations

import re

import pytest
import yaml
from chart_render import REPO_ROOT, helm_template, parse

pytestmark = pytest.mark.chart

SKAFFOLD = REPO_ROOT / "skaffold.yaml"


def _config() -> dict:
    return yaml.safe_load(SKAFFOLD.read_text())


def test_every_built_image_is_bound_and_lands_in_its_deployment() -> None:
    config = _config()
    images = [a["image"] for a in config["build"]["artifacts"]]
    assert len(images) == 9 and len(set(images)) == 9
    release = config["manifests"]["helm"]["releases"][0]
    templates: dict[str, str] = release["setValueTemplates"]
    args: list[str] = []
    for f in release["valuesFiles"]:
        args += ["-f", str(REPO_ROOT / f)]
    for key, template in templates.items():
        # What skaffold substitutes: IMAGE_REPO_<image> / IMAGE_TAG_<image> / IMAGE_DIGEST_<image>.
        value = re.sub(r"\{\{\.IMAGE_REPO_(\w+)\}\}", lambda m: f"registry.test/{m.group(1)}", template)
        value = re.sub(r"\{\{\.IMAGE_TAG_(\w+)\}\}", "t1", value)
        value = re.sub(r"\{\{\.IMAGE_DIGEST_(\w+)\}\}", "sha256:" + "a" * 64, value)
        assert "{{" not in value, key
        args += ["--set", f"{key}={value}"]
    used = {
        c["image"]
        for d in parse(helm_template(*args))
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    for image in images:
        expected = f"registry.test/{re.sub(r'[^A-Za-z0-9]', '_', image)}:t1"
        assert expected in used, f"{image} is built but not deployed"


def test_dev_profile_syncs_python_and_port_forwards_router_ui_prometheus() -> None:
    config = _config()
    forwarded = {(p["resourceName"], p["port"]) for p in config["portForward"]}
    assert {
        ("winemeup-router", 8000),
        ("winemeup-ui", 8501),
        ("kube-prometheus-stack-prometheus", 9090),
    } <= forwarded
    dev = next(p for p in config["profiles"] if p["name"] == "dev")
    syncs = [p["value"]["manual"] for p in dev["patches"] if p["path"].endswith("/sync")]
    assert syncs and all(rule["src"].endswith(".py") for rules in syncs for rule in rules)
    values = next(p["value"] for p in dev["patches"] if p["path"].endswith("/setValues"))
    args = [a for k, v in values.items() for a in ("--set", f"{k}={str(v).lower()}")]
    docs = parse(helm_template("-f", str(REPO_ROOT / "k8s/values/winemeup-kind.yaml"), *args))
    router = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-router"))
    assert router["spec"]["template"]["spec"]["containers"][0]["command"][0] == "watchfiles"
