"""`make images-smoke`: run each image briefly as the chart runs it, and check that it serves.

The chart is rendered (helm template, the local image names and tag that `make images` builds)
and each Deployment's main container is started as a plain container with what the render
gives it: its user and group, a read-only root filesystem, dropped capabilities, no privilege
escalation, an anonymous volume wherever the pod mounts an emptyDir, its environment (values, ConfigMaps and
the rendered Secret), its command. Then:
  - every container: the readiness probe's path and port, read from the render, answer 200;
  - runners: POST /predict with the router's token scores a row (and refuses one without it);
  - router-models (rendered with charts/winemeup/ci/inline-placement-values.yaml): /v1/predict
    scores a wine with the rendered API key, from the store baked into the image;
  - the UI: its page answers.
Init containers (model fetch by URI) and the Services between pods are not run here: that is
`make e2e-containers`' job. Every container started is removed at the end, on failure too.

    .venv/bin/python scripts/smoke_images.py [router router-models ui runner-lightgbm ...]
Environment: IMAGE_TAG (default: this checkout's tag, as for `make images`), WINEMEUP_ENGINE.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from winemeup.runtimes import MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.runner.middleware import TOKEN_HEADER  # noqa: E402
from winemeup.schema import SCHEMA  # noqa: E402

RELEASE = "smoke"
READY_TIMEOUT = 180.0


def shell_lib(expression: str) -> str:
    """Evaluate a shell expression after sourcing k8s/lib.sh (engine choice, image tag)."""
    script = f'source "{REPO}/k8s/lib.sh"; {expression}'
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def render(tag: str, values: list[Path]) -> list[dict[str, Any]]:
    args = [str(REPO / ".tools/bin/helm"), "template", RELEASE, str(REPO / "charts/winemeup")]
    for v in values:
        args += ["-f", str(v)]
    args += [
        "--set", f"router.image.repository=winemeup-router,router.image.tag={tag}",
        "--set", f"router.inlineImage.repository=winemeup-router-models,router.inlineImage.tag={tag}",
        "--set", f"ui.image.repository=winemeup-ui,ui.image.tag={tag}",
        "--set", f"runnerDefaults.image.repositoryPrefix=winemeup-runner-,runnerDefaults.image.tag={tag}",
    ]  # fmt: skip
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class Smoke:
    """One Deployment's main container, started as a plain container."""

    name: str
    image: str
    container: dict[str, Any]
    pod: dict[str, Any]
    env: dict[str, str]
    port: int = 0
    container_port: int = 0
    cid: str = ""
    problems: list[str] = field(default_factory=list)


def resolve_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    config = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secret = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
        for d in docs
        if d["kind"] == "Secret"
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            env.update(secret[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret[ref["name"]][ref["key"]]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = config[ref["name"]][ref["key"]]
    return env


def run_args(smoke: Smoke, engine: str) -> list[str]:
    pod_sc = smoke.pod.get("securityContext", {})
    sc = {**pod_sc, **smoke.container.get("securityContext", {})}
    args = [engine, "run", "--detach", "--name", smoke.name]
    if "runAsUser" in sc:
        args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    empty_dirs = {v["name"] for v in smoke.pod.get("volumes", []) if "emptyDir" in v}
    for mount in smoke.container.get("volumeMounts", []):
        if mount["name"] not in empty_dirs:
            smoke.problems.append(f"volume {mount['name']} is not an emptyDir: not mounted here")
            continue
        # An anonymous volume, as `podman kube play` makes for an emptyDir: it starts as a copy
        # of the image's directory, owner and mode included (a cluster's emptyDir is
        # world-writable; this is the stricter of the two).
        args += ["--mount", f"type=volume,destination={mount['mountPath']}"]
    for key, value in smoke.env.items():
        args += ["--env", f"{key}={value}"]
    args += ["--publish", f"127.0.0.1:{smoke.port}:{smoke.container_port}"]
    if smoke.container.get("command"):
        args += ["--entrypoint", smoke.container["command"][0]]
    args.append(smoke.image)
    args += list(smoke.container.get("command", [])[1:]) + list(smoke.container.get("args", []))
    return args


def smokes_from(docs: list[dict[str, Any]], wanted: set[str]) -> list[Smoke]:
    smokes = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        what = container["image"].split(":")[0].removeprefix("winemeup-")
        if what not in wanted:
            continue
        wanted.discard(what)
        smoke = Smoke(f"winemeup-smoke-{what}-{os.getpid()}", container["image"], container, pod,
                      resolve_env(container, docs))  # fmt: skip
        probe = container["readinessProbe"]["httpGet"]
        ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
        smoke.container_port = ports.get(probe["port"], probe["port"])
        smoke.port = free_port()
        smokes.append(smoke)
    return smokes


def check(smoke: Smoke) -> None:
    base = f"http://127.0.0.1:{smoke.port}"
    what = smoke.image.split(":")[0].removeprefix("winemeup-")
    if what.startswith("runner-"):
        row = [float(f.example) if f.kind == "number" else 1.0 for f in SCHEMA.features]
        token = smoke.env.get("WINEMEUP_RUNNER_TOKEN", "")
        status, body = http("POST", base + "/predict", {"rows": [row]}, {TOKEN_HEADER: token})
        if status != 200 or b'"scores"' not in body:
            smoke.problems.append(f"POST /predict with the token: {status} {body[:300]!r}")
        status, _ = http("POST", base + "/predict", {"rows": [row]})
        if status != 401:
            smoke.problems.append(f"POST /predict without the token answered {status}, not 401")
    elif what == "router-models":
        key = smoke.env["WINEMEUP_ROUTER_API_KEYS"].split(",")[0]
        status, body = http("POST", base + "/v1/predict", {"features": SCHEMA.example(), "model": "lightgbm"},
                            {"X-API-Key": key})  # fmt: skip
        if status != 200:
            smoke.problems.append(f"POST /v1/predict (lightgbm inline): {status} {body[:300]!r}")
    elif what == "ui":
        status, _ = http("GET", base + "/")
        if status != 200:
            smoke.problems.append(f"GET / answered {status}")


def main() -> int:
    all_images = ["router", "router-models", "ui"] + ["runner-" + m.replace("_", "-") for m in MODEL_NAMES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=all_images, help="default: all ten")
    args = parser.parse_args()
    engine, _, conf = shell_lib('need_engine; echo "$ENGINE ${CONTAINERS_CONF:-}"').partition(" ")
    if conf:
        os.environ["CONTAINERS_CONF"] = conf
    tag = shell_lib("image_tag")
    wanted = set(args.images)
    smokes = smokes_from(render(tag, []), wanted - {"router-models"})
    if "router-models" in wanted:
        inline = REPO / "charts/winemeup/ci/inline-placement-values.yaml"
        smokes += smokes_from(render(tag, [inline]), {"router-models"})
    missing = wanted - {s.image.split(":")[0].removeprefix("winemeup-") for s in smokes}
    if missing:
        print(f"not in the render: {sorted(missing)}", file=sys.stderr)
        return 2
    failed = 0
    try:
        started = time.monotonic()
        for smoke in smokes:
            result = subprocess.run(run_args(smoke, engine), capture_output=True, text=True)
            if result.returncode != 0:
                smoke.problems.append(f"{engine} run failed: {result.stderr.strip()[-500:]}")
            smoke.cid = result.stdout.strip()
        for smoke in smokes:
            if smoke.problems and not smoke.cid:
                continue
            probe = smoke.container["readinessProbe"]["httpGet"]["path"]
            url = f"http://127.0.0.1:{smoke.port}{probe}"
            while http("GET", url)[0] != 200:
                state = subprocess.run([engine, "inspect", "--format", "{{.State.Running}}", smoke.name],
                                       capture_output=True, text=True).stdout.strip()  # fmt: skip
                if state != "true" or time.monotonic() - started > READY_TIMEOUT:
                    smoke.problems.append(f"readiness probe {probe} never answered 200 (running: {state})")
                    break
                time.sleep(0.5)
            else:
                print(f"{smoke.image}: {probe} 200 after {time.monotonic() - started:.0f} s", flush=True)
                check(smoke)
        for smoke in smokes:
            if smoke.problems:
                failed += 1
                print(f"FAIL {smoke.image}: " + "; ".join(smoke.problems), flush=True)
                logs = [engine, "logs", "--tail", "50", smoke.name]
                tail = subprocess.run(logs, capture_output=True, text=True)
                print(tail.stdout + tail.stderr, flush=True)
            else:
                print(f"ok   {smoke.image}", flush=True)
    finally:
        names = [s.name for s in smokes]
        subprocess.run([engine, "rm", "--force", "--volumes", "--time", "2", *names], capture_output=True)
    print(f"{len(smokes) - failed}/{len(smokes)} images served as the chart runs them")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
