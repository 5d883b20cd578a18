"""Play a Helm chart's rendered workloads as podman containers, without a cluster.

Give it the documents ``helm template`` rendered (any chart, any values) and it runs their
Deployments and StatefulSets with ``podman kube play``, as a kubelet would, then waits until
every pod is ready by running the probes the manifests declare. Everything it creates carries
the label ``io.winemeup.containers-e2e=<run id>`` (pods, secrets, the network) or lives in its
run directory, and :meth:`PlayedRelease.down` removes it; a later run removes what a killed run
left behind (its process is gone).

What differs from a cluster, and why: podman 4.3's ``kube play`` is not a kubelet. The played
copy of each manifest differs from the render only where podman 4.3 cannot take it as written:

* **StatefulSet**: ``kube play`` 4.3 has no StatefulSet. Its pod template is played as one
  ``Pod`` named ``<name>-0`` (the name a StatefulSet gives its first pod), with the hostname
  and subdomain a StatefulSet sets.
* **Services**: ``kube play`` ignores Services and the default network has no DNS. Each pod
  gets a fixed address on a network of its own, and every pod gets ``hostAliases`` that map
  each Service's names (``svc``, ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``,
  and ``pod.headless-svc...`` for a StatefulSet) to the address of the pod it selects.
* **containerPort**: ``kube play`` 4.3 publishes every containerPort on the host's same port
  (seven runners on 3000 collide, Redis takes the host's 6379); a cluster publishes nothing.
  The played copy has no ``ports``; pods are reached on their addresses, as a Service would.
  Probes and tests resolve named ports from the render.
* **emptyDir**: ``kube play`` 4.3 makes a named volume per volume name, shared by every pod
  using that name and left behind. Each emptyDir becomes a ``hostPath`` to a fresh 0777
  directory of the run (``medium: Memory`` ones on the host's /dev/shm); ``sizeLimit`` is
  not enforced.
* **ConfigMap volumes**: ``kube play`` 4.3 writes their files unreadable to a non-root UID.
  They become a ``hostPath`` to a directory holding the ConfigMap's keys with the volume's
  ``defaultMode`` (0644 unless set), mounted as the render says.
* **subPath**: kube play 4.3 ignores ``subPath`` on a hostPath volume; such a mount gets a
  volume of its own on that sub-directory.
* **Secrets**: a ``kind: Secret`` in a played file is stored in a form ``secretKeyRef`` can't
  read, so each Secret is created with ``podman secret create`` from its data map.
* **Annotations** longer than 63 characters (the chart's ``checksum/*``) are dropped:
  podman 4.3 rejects them, wrongly applying the label-value limit.
* **Probes**: podman turns probes into health checks that need systemd timers; here they are
  run by this module instead, from the render (httpGet, tcpSocket, exec).
* **Init containers**: podman 4.3 applies the pod's restart policy to init containers too:
  under ``Always`` an init container that succeeded is run again and again (about 20 times a
  second here), where Kubernetes runs it once. A pod with init containers is played with
  ``restartPolicy: OnFailure``: its init containers run until they succeed, once, and a main
  container that fails is still restarted.
* One pod per Deployment (set ``replicas: 1`` in values): there is no ReplicaSet or HPA.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL = "io.winemeup.containers-e2e"
"""Label (value: the run id) on every pod, secret and network a run creates."""
PID_LABEL = "io.winemeup.containers-e2e.pid"
"""Label holding the process id of the run that created the object."""
RUN_DIR_PREFIX = "winemeup-containers-"
LOG_TAIL_LINES = 50

logger = logging.getLogger(__name__)


class EngineMissingError(RuntimeError):
    """No container engine that can play manifests (the message names what is missing)."""


class PodNotReadyError(RuntimeError):
    """A pod did not become ready: the message names the container, the probe it failed and
    the last lines of its log."""


class PlayFailedError(RuntimeError):
    """``podman kube play`` (or creating a secret or the network) failed."""


def containers_conf() -> str:
    """The podman settings to use: ``CONTAINERS_CONF`` when set, else the repository's."""
    return os.environ.get("CONTAINERS_CONF") or str(REPO_ROOT / "k8s" / "podman" / "containers.conf")


def engine_problem() -> str | None:
    """What stops this machine from playing manifests, or None when podman can."""
    podman = shutil.which("podman")
    if podman is None:
        if shutil.which("docker"):
            return (
                "podman is not installed (`podman kube play` runs the rendered manifests; docker has no "
                "equivalent: use the kind path, or apt-get install podman runc catatonit as root)"
            )
        return "no container engine: podman is not installed (apt-get install podman runc catatonit, as root)"
    if os.geteuid() != 0:
        return f"podman needs root here (running as uid {os.geteuid()}; rootless podman is not set up)"
    result = _podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if result.returncode != 0:
        return f"podman does not work here (podman info: {result.stderr.strip()[-300:]})"
    pause_image = _podman("image", "exists", "localhost/podman-pause:4.3.1-0", check=False).returncode == 0
    if not shutil.which("catatonit") and not pause_image:
        return "catatonit is not installed (podman builds its pause image from it: apt-get install catatonit)"
    return None


def _podman(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": containers_conf()}
    result = subprocess.run(
        ["podman", *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        input=stdin.decode() if stdin is not None else None,
        text=True,
    )
    if check and result.returncode != 0:
        raise PlayFailedError(f"podman {' '.join(args[:3])} failed: {result.stderr.strip()[-2000:]}")
    return result


def podman(*args: str, check: bool = True, timeout: float = 300) -> str:
    """Run ``podman ARGS`` with the repository's settings; its stdout (raises on failure)."""
    return _podman(*args, check=check, timeout=timeout).stdout


def missing_images(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Images the rendered workloads name that the engine does not have."""
    images = sorted(
        {
            c["image"]
            for d in docs
            if d.get("kind") in WORKLOAD_KINDS
            for c in _pod_spec(d).get("containers", []) + _pod_spec(d).get("initContainers", [])
        }
    )
    return [image for image in images if _podman("image", "exists", image, check=False).returncode != 0]


STANDINS = {"winemeup-redis-standin": "redis", "winemeup-redis-exporter-standin": "redis-exporter"}
"""Stand-in image repositories (docker/redis-standin.Dockerfile) -> their build target."""
LOCAL_BASE = "localhost/winemeup-python:3.11-bookworm"
"""The local Debian base scripts/make-base-image.sh makes; the stand-ins use it when present."""


def ensure_standin_images(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Build the Redis stand-ins the render names and the engine lacks (seconds: Debian's
    redis-server, redis-tools and prometheus-redis-exporter on a Debian base). Returns them."""
    built = []
    for image in missing_images(docs):
        repository = image.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        if repository not in STANDINS:
            continue
        base = (
            LOCAL_BASE
            if _podman("image", "exists", LOCAL_BASE, check=False).returncode == 0
            else "docker.io/library/debian:bookworm-slim"
        )
        with tempfile.TemporaryDirectory() as context:
            podman(
                "build",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "-f",
                str(REPO_ROOT / "docker" / "redis-standin.Dockerfile"),
                "--target",
                STANDINS[repository],
                "-t",
                image,
                context,
                timeout=900,
            )
        logger.info("built the stand-in %s on %s", image, base)
        built.append(image)
    return built


def helm_template(
    chart: Path, release: str, namespace: str, values: Sequence[Path] = (), sets: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``helm template`` of ``chart`` (helm from PATH or the repository's .tools/bin)."""
    helm = shutil.which("helm") or str(REPO_ROOT / ".tools" / "bin" / "helm")
    argv = [helm, "template", release, str(chart), "--namespace", namespace]
    for path in values:
        argv += ["-f", str(path)]
    for item in sets:
        argv += ["--set", item]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PlayFailedError(f"helm template failed: {result.stderr.strip()[-2000:]}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# ---- probes: what a kubelet would run, from the render ---------------------------------------


@dataclass(frozen=True)
class Probe:
    """One probe of one container, as rendered."""

    kind: str
    """startupProbe, readinessProbe or livenessProbe."""
    spec: Mapping[str, Any]
    ports: Mapping[str, int]
    """The container's named ports (name -> containerPort)."""

    def port(self) -> int:
        action = self.spec.get("httpGet") or self.spec.get("tcpSocket") or {}
        port = action.get("port")
        if isinstance(port, int):
            return port
        if str(port).isdigit():
            return int(str(port))
        if port not in self.ports:
            raise ValueError(f"{self.kind} names port {port!r}, which the container does not declare")
        return self.ports[str(port)]

    def describe(self) -> str:
        if "httpGet" in self.spec:
            http = self.spec["httpGet"]
            scheme = http.get("scheme", "HTTP").lower()
            return f"{self.kind} httpGet {scheme}://:{self.port()}{http.get('path', '/')}"
        if "tcpSocket" in self.spec:
            return f"{self.kind} tcpSocket :{self.port()}"
        if "exec" in self.spec:
            return f"{self.kind} exec {json.dumps(self.spec['exec'].get('command', []))}"
        return f"{self.kind} {json.dumps(dict(self.spec))}"

    def run(self, address: str, container: str) -> tuple[bool, str]:
        """Run the probe against ``container`` at ``address``: (passed, what happened)."""
        timeout = float(self.spec.get("timeoutSeconds", 1))
        if "httpGet" in self.spec:
            http = self.spec["httpGet"]
            url = f"{http.get('scheme', 'HTTP').lower()}://{address}:{self.port()}{http.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in http.get("httpHeaders", [])}
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=timeout
                ) as r:
                    return 200 <= r.status < 400, f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                return False, f"HTTP {e.code}: {e.read()[:200]!r}"
            except OSError as e:
                return False, f"{type(e).__name__}: {e}"
        if "tcpSocket" in self.spec:
            try:
                with socket.create_connection((address, self.port()), timeout=timeout):
                    return True, "connected"
            except OSError as e:
                return False, f"{type(e).__name__}: {e}"
        if "exec" in self.spec:
            result = _podman(
                "exec", container, *self.spec["exec"]["command"], check=False, timeout=timeout + 10
            )
            output = (result.stdout + result.stderr).strip()[-200:]
            return result.returncode == 0, f"exit {result.returncode}: {output}"
        return False, "unsupported probe"


# ---- the release as podman plays it -----------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def _pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


@dataclass
class Workload:
    """One rendered Deployment or StatefulSet, played as one pod."""

    doc: dict[str, Any]
    address: str = ""
    ready_after: float | None = None
    """Seconds from the start of ``kube play`` until every container passed its readiness probe."""

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.doc["metadata"].get("namespace", "default"))

    @property
    def pod_spec(self) -> dict[str, Any]:
        return _pod_spec(self.doc)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.doc["spec"]["template"]["metadata"].get("labels", {}))

    @property
    def pod_name(self) -> str:
        """The pod podman makes: ``<deployment>-pod-0`` (kube play 4.3), ``<statefulset>-0``."""
        return f"{self.name}-0" if self.kind == "StatefulSet" else f"{self.name}-pod-0"

    def container_name(self, container: str) -> str:
        """podman's name of a container of this pod (``<pod>-<container>``)."""
        return f"{self.pod_name}-{container}"

    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod_spec.get("containers", []))

    def container(self, name: str) -> dict[str, Any]:
        return next(c for c in self.containers() if c["name"] == name)

    def probes(self, container: Mapping[str, Any]) -> list[Probe]:
        ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) if "name" in p}
        kinds = ("startupProbe", "readinessProbe", "livenessProbe")
        return [Probe(kind, container[kind], ports) for kind in kinds if kind in container]

    def port(self, container: str, name: str) -> int:
        """containerPort of the named port of a container, from the render."""
        spec = self.container(container)
        return next(int(p["containerPort"]) for p in spec.get("ports", []) if p.get("name") == name)

    def url(self, container: str, port: str = "http") -> str:
        return f"http://{self.address}:{self.port(container, port)}"

    def selected_by(self, selector: Mapping[str, str]) -> bool:
        labels = self.labels
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class PlayedRelease:
    """A set of rendered manifests, played (or about to be) on a podman network of its own."""

    docs: list[dict[str, Any]]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workloads: list[Workload] = field(default_factory=list)
    run_dir: Path = field(init=False)
    network: str = field(init=False)
    gateway: str = ""
    _hosts: list[str] = field(default_factory=list)
    _helpers: list[str] = field(default_factory=list)
    started: float | None = None
    """time.monotonic() when the first ``kube play`` began."""

    def __post_init__(self) -> None:
        self.run_dir = Path(tempfile.gettempdir()) / f"{RUN_DIR_PREFIX}{self.run_id}"
        self.network = f"winemeup-e2e-{self.run_id}"
        if not self.workloads:
            self.workloads = [Workload(d) for d in self.docs if d.get("kind") in WORKLOAD_KINDS]

    # -- names -----------------------------------------------------------------------------
    def workload(self, name: str) -> Workload:
        """The workload called ``name``, or whose name ends with ``-name`` (``router``)."""
        for w in self.workloads:
            if w.name == name or w.name.endswith(f"-{name}"):
                return w
        raise KeyError(f"no workload {name!r} in {[w.name for w in self.workloads]}")

    def by_label(self, key: str, value: str) -> Workload:
        return next(w for w in self.workloads if w.labels.get(key) == value)

    def secret_data(self, name: str | None = None) -> dict[str, str]:
        """A rendered Secret's data, decoded (the first Secret when ``name`` is None)."""
        secret = next(d for d in self.docs if d["kind"] == "Secret" and name in (None, d["metadata"]["name"]))
        return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}

    def _service_aliases(self) -> dict[str, str]:
        """Every name a pod may use for a Service -> the address of the pod it selects."""
        aliases: dict[str, str] = {}
        for doc in self.docs:
            if doc.get("kind") != "Service":
                continue
            selected = [w for w in self.workloads if w.selected_by(doc["spec"].get("selector", {}))]
            if not selected:
                continue
            name, ns = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
            address = selected[0].address
            for alias in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                aliases[alias] = address
            if doc["spec"].get("clusterIP") == "None":
                for w in selected:
                    if w.kind == "StatefulSet":
                        for suffix in ("", f".{ns}", f".{ns}.svc", f".{ns}.svc.cluster.local"):
                            aliases[f"{w.pod_name}.{name}{suffix}"] = w.address
        return aliases

    # -- translation ---------------------------------------------------------------------------
    def played_pod(self, w: Workload) -> dict[str, Any]:
        """The document ``kube play`` gets for ``w``: the render, changed only as the module
        docstring says."""
        doc = json.loads(json.dumps(w.doc))
        template = doc["spec"]["template"]
        meta = template.setdefault("metadata", {})
        meta["labels"] = {**meta.get("labels", {}), LABEL: self.run_id, PID_LABEL: str(os.getpid())}
        meta["annotations"] = {k: v for k, v in meta.get("annotations", {}).items() if len(str(v)) <= 63}
        spec = template["spec"]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            container.pop("ports", None)
        volumes_dir = self.run_dir / "volumes" / w.name
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                medium = volume["emptyDir"].get("medium")
                root = (
                    Path("/dev/shm") / f"{RUN_DIR_PREFIX}{self.run_id}" / w.name
                    if medium == "Memory"
                    else volumes_dir
                )
                path = root / volume["name"]
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
                del volume["emptyDir"]
                volume["hostPath"] = {"path": str(path), "type": "Directory"}
            elif "configMap" in volume:
                source = volume.pop("configMap")
                path = volumes_dir / volume["name"]
                self._write_config_map(source, path)
                volume["hostPath"] = {"path": str(path), "type": "Directory"}
        self._split_sub_paths(spec)
        aliases: dict[str, list[str]] = {}
        for name, address in self._service_aliases().items():
            aliases.setdefault(address, []).append(name)
        spec["hostAliases"] = list(spec.get("hostAliases", [])) + [
            {"ip": ip, "hostnames": sorted(names)} for ip, names in sorted(aliases.items())
        ]
        if spec.get("initContainers") and spec.get("restartPolicy", "Always") == "Always":
            spec["restartPolicy"] = "OnFailure"
        if w.kind == "StatefulSet":
            spec.setdefault("hostname", w.pod_name)
            spec.setdefault("subdomain", doc["spec"].get("serviceName", ""))
            return {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": w.pod_name, "namespace": w.namespace, **meta},
                "spec": spec,
            }
        doc["spec"]["replicas"] = 1
        return doc

    @staticmethod
    def _split_sub_paths(spec: dict[str, Any]) -> None:
        """A mount with ``subPath`` of a (translated) host directory becomes a mount of its own
        volume on that sub-directory: kube play 4.3 ignores ``subPath`` on hostPath volumes. The
        sub-directory is made now, owned by the pod's user (in a cluster a container of the pod
        would have made it, e.g. an init container filling the volume)."""
        security = spec.get("securityContext", {})
        owner = (
            int(security.get("runAsUser", 0)),
            int(security.get("fsGroup", security.get("runAsGroup", 0))),
        )
        host_paths = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
        extra: list[dict[str, Any]] = []
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                sub_path = mount.get("subPath")
                if not sub_path or mount["name"] not in host_paths:
                    continue
                path = Path(host_paths[mount["name"]]) / sub_path
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, *owner)
                name = f"{mount['name']}-{len(extra)}"
                extra.append({"name": name, "hostPath": {"path": str(path), "type": "Directory"}})
                mount["name"] = name
                del mount["subPath"]
        spec["volumes"] = [*spec.get("volumes", []), *extra]

    def _write_config_map(self, source: Mapping[str, Any], path: Path) -> None:
        config_map = next(
            d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["name"]
        )
        path.mkdir(parents=True, exist_ok=True)
        mode = int(source.get("defaultMode", 0o644))
        items = source.get("items") or [{"key": k, "path": k} for k in config_map.get("data", {})]
        for item in items:
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(config_map["data"][item["key"]])
            target.chmod(int(item.get("mode", mode)))

    def _config_maps_for(self, w: Workload) -> list[dict[str, Any]]:
        """The ConfigMaps ``w``'s containers read through envFrom or configMapKeyRef."""
        names = set()
        for c in w.pod_spec.get("containers", []) + w.pod_spec.get("initContainers", []):
            names |= {e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e}
            names |= {
                e["valueFrom"]["configMapKeyRef"]["name"]
                for e in c.get("env", [])
                if "configMapKeyRef" in e.get("valueFrom", {})
            }
        return [d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] in names]

    # -- lifecycle -----------------------------------------------------------------------------
    def _create_network(self) -> None:
        used = set()
        for line in podman("network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}").split():
            with contextlib.suppress(ValueError):
                used.add(ipaddress.ip_network(line, strict=False))
        for third in range(120, 250):
            subnet = ipaddress.ip_network(f"10.89.{third}.0/24")
            if not any(subnet.overlaps(u) for u in used):
                break
        else:
            raise PlayFailedError("no free 10.89.x.0/24 subnet for the run's network")
        podman(
            "network",
            "create",
            "--subnet",
            str(subnet),
            "--label",
            f"{LABEL}={self.run_id}",
            "--label",
            f"{PID_LABEL}={os.getpid()}",
            "--label",
            f"{LABEL}.dir={self.run_dir}",
            self.network,
        )
        self._hosts = [str(h) for h in subnet.hosts()]
        self.gateway = self._hosts[0]
        self._assign_addresses()

    def _assign_addresses(self) -> None:
        for i, w in enumerate(self.workloads):
            w.address = self._hosts[10 + i]

    def _create_secrets(self) -> None:
        for doc in self.docs:
            if doc.get("kind") != "Secret":
                continue
            data = dict(doc.get("data", {}))
            for key, value in doc.get("stringData", {}).items():
                data[key] = base64.b64encode(value.encode()).decode()
            path = self.run_dir / f"secret-{doc['metadata']['name']}.json"
            path.write_text(json.dumps(data))
            path.chmod(0o600)
            podman(
                "secret",
                "create",
                "--label",
                f"{LABEL}={self.run_id}",
                "--label",
                f"{PID_LABEL}={os.getpid()}",
                doc["metadata"]["name"],
                str(path),
            )

    def prepare(self) -> PlayedRelease:
        """Create the run directory, the network (fixing every pod's address) and the secrets."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._create_network()
        self._create_secrets()
        return self

    def reset_docs(self, docs: list[dict[str, Any]]) -> None:
        """Replace the render (e.g. the same release with other values) before playing it:
        the addresses are assigned again and the secrets created from the new render."""
        self.docs = docs
        self.workloads = [Workload(d) for d in docs if d.get("kind") in WORKLOAD_KINDS]
        self._assign_addresses()
        for secret_id, labels in _labelled("secret"):
            if labels.get(LABEL) == self.run_id:
                podman("secret", "rm", secret_id)
        self._create_secrets()

    def start(self, only: Iterable[str] | None = None, ready_timeout: float = 240.0) -> None:
        """Play every workload (or those named in ``only``) and wait until each is ready."""
        selected = [self.workload(n) for n in only] if only is not None else self.workloads
        self.started = time.monotonic()
        for w in selected:
            self.play(w)
        self.wait_ready(selected, ready_timeout)

    def up(self, only: Iterable[str] | None = None, ready_timeout: float = 240.0) -> PlayedRelease:
        """:meth:`prepare` and :meth:`start`; on any failure (or interrupt) remove everything
        and raise."""
        try:
            self.prepare()
            self.start(only, ready_timeout)
        except BaseException:
            self.down()
            raise
        return self

    def run_container(
        self, name: str, image: str, command: Sequence[str], volumes: Sequence[str] = ()
    ) -> str:
        """Start a helper container (not from the render, e.g. a file server the pods reach) on
        the run's network, labelled like the pods; returns its address."""
        address = self._hosts[9 - len(self._helpers)]
        args = [
            "run",
            "--detach",
            "--name",
            f"{self.network}-{name}",
            "--network",
            self.network,
            "--ip",
            address,
            "--label",
            f"{LABEL}={self.run_id}",
            "--label",
            f"{PID_LABEL}={os.getpid()}",
            "--read-only",
            "--user",
            "10001:10001",
        ]
        for volume in volumes:
            args += ["--volume", volume]
        podman(*args, image, *command)
        self._helpers.append(name)
        return address

    def play(self, w: Workload) -> None:
        """``podman kube play`` one workload on the run's network at its address."""
        path = self.run_dir / f"{w.name}.yaml"
        with path.open("w") as f:
            yaml.safe_dump_all([*self._config_maps_for(w), self.played_pod(w)], f, sort_keys=False)
        result = _podman(
            "kube", "play", "--network", self.network, "--ip", w.address, str(path), check=False, timeout=300
        )
        if result.returncode != 0:
            # An init container that fails stops kube play: say which, with its log.
            raise PlayFailedError(
                f"podman kube play {w.name} failed: {result.stderr.strip()[-1500:]}\n" + self.init_failures(w)
            )

    def init_failures(self, w: Workload) -> str:
        """The state and log tail of each init container of ``w`` that did not exit 0."""
        report = []
        for c in w.pod_spec.get("initContainers", []):
            name = w.container_name(c["name"])
            state = self.state(name) or {}
            if state.get("Status") == "exited" and state.get("ExitCode") == 0:
                continue
            report.append(
                f"init container {c['name']}: {state.get('Status', 'missing')}, exit code "
                f"{state.get('ExitCode')}; last lines of its log:\n{self.logs(name)}\n"
            )
        return "\n".join(report)

    def state(self, container: str) -> dict[str, Any] | None:
        result = _podman(
            "inspect",
            "--type",
            "container",
            "--format",
            "{{json .State}}",
            container,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            return None
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def restart_count(self, container: str) -> int:
        out = podman("inspect", "--type", "container", "--format", "{{.RestartCount}}", container, timeout=60)
        return int(out.strip() or 0)

    def logs(self, container: str, lines: int = LOG_TAIL_LINES) -> str:
        result = _podman("logs", "--tail", str(lines), container, check=False, timeout=60)
        return (result.stdout + result.stderr).rstrip() or "(empty log)"

    def wait_ready(self, workloads: Sequence[Workload], timeout: float) -> None:
        """Run every container's readiness probe (the startup probe first) until it passes; a
        container that does not pass in ``timeout`` s raises :class:`PodNotReadyError` naming
        the probe, its last answer and the container's last 50 log lines."""
        started = self.started or time.monotonic()
        pending = {(w.name, c["name"]): (w, c) for w in workloads for c in w.containers()}
        last: dict[tuple[str, str], tuple[Probe | None, str]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for key, (w, c) in list(pending.items()):
                name = w.container_name(c["name"])
                state = self.state(name) or {}
                if state.get("Status") != "running":
                    last[key] = (
                        None,
                        f"container {state.get('Status', 'missing')}, exit code {state.get('ExitCode')}",
                    )
                    continue
                probes = {p.kind: p for p in w.probes(c)}
                passed, detail, failed = True, "running, no readiness probe", None
                for kind in ("startupProbe", "readinessProbe"):
                    if kind in probes:
                        passed, detail = probes[kind].run(w.address, name)
                        if not passed:
                            failed = probes[kind]
                            break
                if passed:
                    del pending[key]
                    if not any(k[0] == w.name for k in pending):
                        w.ready_after = time.monotonic() - started
                else:
                    last[key] = (failed, detail)
            if not pending:
                return
            if time.monotonic() >= deadline:
                report = []
                for key, (w, c) in pending.items():
                    probe, detail = last.get(key, (None, "never checked"))
                    what = probe.describe() if probe else "no probe ran"
                    name = w.container_name(c["name"])
                    report.append(
                        f"pod {w.pod_name} (from {w.kind} {w.name}), container {c['name']}: not ready after "
                        f"{timeout:g} s; {what} -> {detail}\n"
                        + self.init_failures(w)
                        + f"last {LOG_TAIL_LINES} lines of its log:\n{self.logs(name)}"
                    )
                raise PodNotReadyError("\n\n".join(report))
            time.sleep(0.25)

    def down(self) -> None:
        """Remove every pod, secret and the network of this run, and its run directory."""
        remove_run(self.run_id)

    def __enter__(self) -> PlayedRelease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


# ---- cleaning by label ------------------------------------------------------------------------


def _labelled(kind: str) -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of every pod, secret or network carrying :data:`LABEL`."""
    if kind == "secret":
        ids = podman("secret", "ls", "--format", "{{.ID}}", check=False).split()
        found = []
        for secret_id in ids:
            out = _podman("secret", "inspect", secret_id, check=False).stdout
            for item in json.loads(out or "[]"):
                labels = item.get("Spec", {}).get("Labels") or {}
                if LABEL in labels:
                    found.append((secret_id, labels))
        return found
    listing = {"pod": ("pod", "ps"), "container": ("ps", "--all"), "network": ("network", "ls")}[kind]
    field_name = "{{.Names}}" if kind == "container" else "{{.Name}}"
    names = podman(*listing, "--filter", f"label={LABEL}", "--format", field_name, check=False).split()
    rows = []
    for name in names:
        out = _podman(kind, "inspect", name, check=False).stdout
        with contextlib.suppress(ValueError):
            item = json.loads(out or "{}")
            if isinstance(item, list):
                if not item:  # removed between the listing and the inspect (another run's teardown)
                    continue
                item = item[0]
            labels = item.get("Labels") or item.get("labels") or item.get("Config", {}).get("Labels") or {}
            rows.append((name, dict(labels)))
    return rows


def _is_stale(labels: Mapping[str, str], run_id: str | None) -> bool:
    """Whether an object with ``labels`` belongs to ``run_id`` (None: to a run whose process is gone)."""
    if run_id is not None:
        return labels.get(LABEL) == run_id
    try:
        pid = int(labels.get(PID_LABEL, "0"))
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return True
    except PermissionError:
        return False
    return pid <= 0


def _remove_run_dirs(name: str) -> None:
    if name.startswith(RUN_DIR_PREFIX):
        shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)
        shutil.rmtree(Path("/dev/shm") / name, ignore_errors=True)


def remove_run(run_id: str | None = None) -> list[str]:
    """Remove the pods, containers, secrets, network and run directory of ``run_id``; with None,
    those of every run whose process is gone (a run that was killed). Returns what it removed."""
    removal = {
        "pod": ("pod", "rm", "--force", "--time", "2"),
        "container": ("rm", "--force", "--time", "2"),
        "secret": ("secret", "rm"),
        "network": ("network", "rm", "--force"),
    }
    removed = []
    for kind, argv in removal.items():
        stale = [(name, labels) for name, labels in _labelled(kind) if _is_stale(labels, run_id)]
        if not stale:
            continue
        # One command per kind: podman stops the pods of a run in parallel.
        _podman(*argv, *[name for name, _ in stale], check=False, timeout=300)
        removed += [f"{kind} {name}" for name, _ in stale]
        if kind == "network":
            for _, labels in stale:
                _remove_run_dirs(Path(labels.get(f"{LABEL}.dir", "")).name)
    if run_id is not None:
        _remove_run_dirs(f"{RUN_DIR_PREFIX}{run_id}")
    if removed:
        logger.info("removed %s", ", ".join(removed))
    return removed


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while inside, so ``finally`` blocks (and pytest's
    fixture teardown) remove what the run started, as they do on Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
