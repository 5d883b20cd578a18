"""The pure reconcile: one WineModel in, the desired runner objects out.

The objects are the ones ``charts/winemeup/templates/runners.yaml`` renders for the same
model values (the chart tests hold the two equal for every ``ci/`` values file), apart from
the labels, which say the operator manages them and which WineModel generation they came
from, and the owner reference that lets the garbage collector remove them with their
WineModel. Nothing here talks to the API server.

While an autoscaler (HPA or KEDA ScaledObject) owns the replica count, the Deployment carries
no ``replicas``: server-side apply then never takes the field back from the autoscaler.
"""

from __future__ import annotations

import copy
from typing import Any

from services.operator.release import ReleaseContext
from services.operator.resources import (
    API_VERSION,
    GENERATION_ANNOTATION,
    MANAGED_BY,
    WINEMODEL,
    model_of,
    slug,
)

Obj = dict[str, Any]

SCHEDULING_KEYS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
)


class SpecError(ValueError):
    """A WineModel the operator cannot turn into objects; ``field`` names the culprit."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def component_name(fullname: str, suffix: str, limit: int = 63) -> str:
    """``<fullname>-<suffix>`` in at most ``limit`` characters, the full name cut first (as
    the chart's ``winemeup.componentName``: two runners never truncate to one name)."""
    head = fullname[: limit - 1 - len(suffix)]
    if head.endswith("-"):
        head = head[:-1]
    return f"{head}-{suffix}"


def runner_component(model: str) -> str:
    """The component label of a model's runner: runner-random-forest."""
    return f"runner-{slug(model)}"


def runner_name(release: ReleaseContext, model: str) -> str:
    """Name of the model's Deployment, Service, autoscaler and PDB."""
    return component_name(release.fullname, runner_component(model))


def candidate_component(model: str) -> str:
    """The component label of a model's candidate runner: runner-lightgbm-candidate (its
    selectors never match the stable runner's pods)."""
    return f"{runner_component(model)}-candidate"


def candidate_name(release: ReleaseContext, model: str) -> str:
    """Name of the candidate runner's Deployment, Service, autoscaler and PDB."""
    return component_name(release.fullname, candidate_component(model))


def selector_labels(release: ReleaseContext, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": release.name,
        "app.kubernetes.io/instance": release.release,
        "app.kubernetes.io/component": component,
    }


def _merge(base: Any, over: Any) -> Any:
    """Sprig's mergeOverwrite for values: ``over`` key by key over ``base``; empty values do
    not overwrite (as in the chart)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = _merge(out.get(key), value) if key in out else copy.deepcopy(value)
        return out
    if over in (None, "", {}, []) and base is not None:
        return copy.deepcopy(base)
    return copy.deepcopy(over)


def effective_spec(wine_model: Obj, release: ReleaseContext) -> Obj:
    """The WineModel's spec with the release's runner defaults filled in (``winemeup.runnerValues``)."""
    name = wine_model["metadata"]["name"]
    model = model_of(name)
    if model is None:
        raise SpecError("metadata.name", f"{name!r} is not a model family")
    spec = wine_model.get("spec") or {}
    d = release.runner
    image = spec.get("image") or ""
    if not image:
        repository = f"{d.image.repository_prefix}{slug(model)}"
        if d.image.registry:
            repository = f"{d.image.registry.rstrip('/')}/{repository}"
        image = f"{repository}:{d.image.tag}"
    autoscaling = _merge(d.autoscaling, spec.get("autoscaling") or {})
    keda = _merge(d.keda.model_dump(by_alias=True), autoscaling.get("keda") or {})
    autoscaling["keda"] = keda
    if autoscaling.get("enabled") and int(autoscaling["minReplicas"]) > int(autoscaling["maxReplicas"]):
        raise SpecError(
            "spec.autoscaling.minReplicas",
            f"{autoscaling['minReplicas']} exceeds maxReplicas {autoscaling['maxReplicas']}",
        )
    replicas = spec.get("replicas", d.replicas)
    if not isinstance(replicas, int) or replicas < 0:
        raise SpecError("spec.replicas", f"must be an integer >= 0, got {replicas!r}")
    own_scheduling = spec.get("scheduling") or {}
    scheduling = {k: own_scheduling.get(k) or d.scheduling.get(k) for k in SCHEDULING_KEYS}
    disruption = _merge(
        {"enabled": d.pod_disruption_budget.get("enabled", True),
         "maxUnavailable": d.pod_disruption_budget.get("maxUnavailable", 1)},
        spec.get("disruption") or {},
    )  # fmt: skip
    sha = spec.get("modelSha256") or ""
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha)):
        raise SpecError("spec.modelSha256", "must be 64 hex digits")
    if sha and not spec.get("modelUri"):
        raise SpecError("spec.modelSha256", "is set without spec.modelUri")
    uri = spec.get("modelUri") or ""
    if uri and not sha:
        raise SpecError(
            "spec.modelSha256", "is required with spec.modelUri: a runner never serves an unchecked archive"
        )
    insecure = bool(spec.get("allowInsecureModelUri"))
    if uri.startswith("http://") and not insecure:
        raise SpecError("spec.modelUri", "is http://: use https://, or set spec.allowInsecureModelUri")
    return {
        "model": model,
        "image": image,
        "imagePullPolicy": spec.get("imagePullPolicy") or d.image.pull_policy,
        "replicas": replicas,
        "autoscaling": autoscaling,
        "resources": spec.get("resources") or d.resources,
        "scheduling": scheduling,
        "disruption": disruption,
        "modelUri": spec.get("modelUri") or "",
        "modelSha256": sha,
        "allowInsecureModelUri": insecure,
        "version": "",
        "track": "",
    }


def candidate_spec(wine_model: Obj, eff: Obj) -> Obj | None:
    """The candidate runner's effective spec (``winemeup.candidateValues``): the stable one's
    with the candidate's image (else the stable image), its own model source and the store
    version it serves; None without ``spec.candidate``."""
    candidate = (wine_model.get("spec") or {}).get("candidate")
    if candidate is None:
        return None
    version = candidate.get("version") or ""
    if not version:
        raise SpecError(
            "spec.candidate.version", "is required: the model store version the candidate runner serves"
        )
    uri = candidate.get("modelUri") or ""
    sha = candidate.get("modelSha256") or ""
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha)):
        raise SpecError("spec.candidate.modelSha256", "must be 64 hex digits")
    if sha and not uri:
        raise SpecError("spec.candidate.modelSha256", "is set without spec.candidate.modelUri")
    if uri and not sha:
        raise SpecError(
            "spec.candidate.modelSha256",
            "is required with spec.candidate.modelUri: a runner never serves an unchecked archive",
        )
    insecure = bool(candidate.get("allowInsecureModelUri"))
    if uri.startswith("http://") and not insecure:
        raise SpecError(
            "spec.candidate.modelUri", "is http://: use https://, or set spec.candidate.allowInsecureModelUri"
        )
    return {
        **copy.deepcopy(eff),
        "image": candidate.get("image") or eff["image"],
        "modelUri": uri,
        "modelSha256": sha,
        "allowInsecureModelUri": insecure,
        "version": version,
        "track": "candidate",
    }


def _metadata(
    wine_model: Obj, release: ReleaseContext, name: str, component: str, model: str, track: str = ""
) -> Obj:
    labels = {
        **release.labels,
        **selector_labels(release, component),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "winemeup.io/tier": "runner",
        "winemeup.io/model": model,
        **({"winemeup.io/track": track} if track else {}),
        GENERATION_ANNOTATION: str(wine_model["metadata"].get("generation", 0)),
    }
    meta: Obj = {"name": name, "namespace": release.namespace, "labels": labels}
    uid = wine_model["metadata"].get("uid")
    if uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": WINEMODEL,
                "name": wine_model["metadata"]["name"],
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def _topology_spread(constraints: list[Obj] | None, selector: dict[str, str]) -> list[Obj]:
    out = []
    for c in constraints or []:
        c = copy.deepcopy(c)
        if not c.get("labelSelector"):
            c["labelSelector"] = {"matchLabels": dict(selector)}
        out.append(c)
    return out


def _deployment(wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str) -> Obj:
    d = release.runner
    model = eff["model"]
    selector = selector_labels(release, component)
    fetch = eff["modelUri"] != ""
    pod_spec: Obj = copy.deepcopy(d.pod_common)
    pod_spec["terminationGracePeriodSeconds"] = d.termination_grace_period_seconds
    if eff["scheduling"]["priorityClassName"]:
        pod_spec["priorityClassName"] = eff["scheduling"]["priorityClassName"]
    if fetch:
        command = ["python", "-m", "services.runner.fetch_model", "--model", model, "--uri", eff["modelUri"]]
        command += ["--sha256", eff["modelSha256"]]
        if eff["allowInsecureModelUri"]:
            command.append("--allow-insecure-http")
        command += ["--timeout-seconds", str(d.model_fetch["timeoutSeconds"])]
        pod_spec["initContainers"] = [
            {
                "name": "model-fetch",
                "image": eff["image"],
                "imagePullPolicy": eff["imagePullPolicy"],
                "command": command,
                "env": [
                    {"name": "BENTOML_HOME", "value": "/opt/winemeup/fetched"},
                    {"name": "BENTOML_DO_NOT_TRACK", "value": "True"},
                    {"name": "TMPDIR", "value": "/tmp"},
                ],
                "securityContext": copy.deepcopy(d.container_security_context),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": copy.deepcopy(d.model_fetch["resources"]),
                "volumeMounts": [
                    {"name": "model-store", "mountPath": "/opt/winemeup/fetched"},
                    {"name": "model-download", "mountPath": "/tmp"},
                    *copy.deepcopy(d.extra_volume_mounts),
                ],
            }
        ]
    container: Obj = {
        "name": "runner",
        "image": eff["image"],
        "imagePullPolicy": eff["imagePullPolicy"],
        "securityContext": copy.deepcopy(d.container_security_context),
        "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
        + (
            [{"name": "metrics", "containerPort": d.metrics_port, "protocol": "TCP"}]
            if d.metrics_port
            else []
        ),
        "envFrom": [{"configMapRef": {"name": d.config_map}}, *copy.deepcopy(d.extra_env_from)],
        "env": [
            {"name": "WINEMEUP_RUNNER_MODEL", "value": model},
            *([{"name": "WINEMEUP_RUNNER_VERSION", "value": eff["version"]}] if eff["version"] else []),
            *copy.deepcopy(d.extra_env),
        ],
        "startupProbe": copy.deepcopy(d.probes["startup"]),
        "readinessProbe": copy.deepcopy(d.probes["readiness"]),
        "livenessProbe": copy.deepcopy(d.probes["liveness"]),
        "resources": copy.deepcopy(eff["resources"]),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "prometheus-multiproc", "mountPath": "/opt/winemeup/bentoml/prometheus_multiproc_dir"},
            {"name": "bentoml-tmp", "mountPath": "/opt/winemeup/bentoml/tmp"},
        ],
    }
    if d.lifecycle:
        container["lifecycle"] = copy.deepcopy(d.lifecycle)
    if fetch:
        container["volumeMounts"].append(
            {
                "name": "model-store",
                "mountPath": "/opt/winemeup/bentoml/models",
                "subPath": "models",
                "readOnly": True,
            }
        )
    container["volumeMounts"] += copy.deepcopy(d.extra_volume_mounts)
    pod_spec["containers"] = [container]
    volumes = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "prometheus-multiproc", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "bentoml-tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if fetch:
        volumes += [
            {"name": "model-store", "emptyDir": {"sizeLimit": d.model_fetch["storeSizeLimit"]}},
            {"name": "model-download", "emptyDir": {"sizeLimit": d.model_fetch["downloadSizeLimit"]}},
        ]
    pod_spec["volumes"] = volumes + copy.deepcopy(d.extra_volumes)
    for key in ("nodeSelector", "tolerations", "affinity"):
        if eff["scheduling"][key]:
            pod_spec[key] = copy.deepcopy(eff["scheduling"][key])
    spread = _topology_spread(eff["scheduling"]["topologySpreadConstraints"], selector)
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    spec: Obj = {}
    if not eff["autoscaling"].get("enabled"):
        spec["replicas"] = eff["replicas"]
    spec |= {
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": {
                    **selector,
                    "app.kubernetes.io/part-of": "winemeup",
                    **d.pod_labels,
                    "winemeup.io/tier": "runner",
                    "winemeup.io/model": model,
                    **({"winemeup.io/track": eff["track"]} if eff["track"] else {}),
                },
                "annotations": {
                    "checksum/config": d.config_checksum,
                    **({"checksum/secret": d.secret_checksum} if d.secret_checksum else {}),
                    **d.pod_annotations,
                },
            },
            "spec": pod_spec,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(wine_model, release, name, component, model, eff["track"]),
        "spec": spec,
    }


def _service(wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str) -> Obj:
    meta = _metadata(wine_model, release, name, component, eff["model"], eff["track"])
    port = release.runner.metrics_port
    if release.runner.service_annotations:
        meta["annotations"] = dict(release.runner.service_annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(release, component),
            "ports": [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]
            + (
                [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
                if port
                else []
            ),
        },
    }


def _hpa(wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str) -> Obj:
    a = eff["autoscaling"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(wine_model, release, name, component, eff["model"], eff["track"]),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": a["minReplicas"],
            "maxReplicas": a["maxReplicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": a["targetCPUUtilizationPercentage"],
                        },
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def _format_number(value: Any) -> str:
    """A threshold as KEDA's metadata wants it (a string), as the chart's toString prints it."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _scaled_object(wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str) -> Obj:
    a = eff["autoscaling"]
    k = a["keda"]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(wine_model, release, name, component, eff["model"], eff["track"]),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": a["minReplicas"],
            "maxReplicaCount": a["maxReplicas"],
            "pollingInterval": k["pollingIntervalSeconds"],
            "cooldownPeriod": k["cooldownPeriodSeconds"],
            "fallback": {"failureThreshold": k["failureThreshold"], "replicas": k["fallbackReplicas"]},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
                }
            },
            "triggers": [
                {
                    "type": "cpu",
                    "metricType": "Utilization",
                    "metadata": {"value": _format_number(a["targetCPUUtilizationPercentage"])},
                },
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": k["serverAddress"],
                        "query": k["query"].replace("{model}", eff["model"]),
                        "threshold": _format_number(k["targetInflightPerPod"]),
                    },
                },
            ],
        },
    }


def _pdb(wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str) -> Obj:
    spec: Obj = {"maxUnavailable": eff["disruption"]["maxUnavailable"]}
    policy = release.runner.pod_disruption_budget.get("unhealthyPodEvictionPolicy")
    if policy:
        spec["unhealthyPodEvictionPolicy"] = policy
    spec["selector"] = {"matchLabels": selector_labels(release, component)}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(wine_model, release, name, component, eff["model"], eff["track"]),
        "spec": spec,
    }


def desired_objects(wine_model: Obj, release: ReleaseContext) -> list[Obj]:
    """The Deployment, Service, autoscaler (HPA, or KEDA ScaledObject) and PDB of one WineModel.

    With ``spec.candidate``, the candidate runner's objects follow (``<runner>-candidate``,
    serving the candidate's store version), as the chart renders them; the rollout itself goes
    through the router (:mod:`services.operator.rollout`). Raises SpecError naming the field
    when the WineModel cannot be served.
    """
    eff = effective_spec(wine_model, release)
    model = eff["model"]
    objects = _runner_objects(wine_model, release, eff, runner_name(release, model), runner_component(model))
    candidate = candidate_spec(wine_model, eff)
    if candidate is not None:
        objects += _runner_objects(
            wine_model, release, candidate, candidate_name(release, model), candidate_component(model)
        )
    return objects


def _runner_objects(
    wine_model: Obj, release: ReleaseContext, eff: Obj, name: str, component: str
) -> list[Obj]:
    """One runner's Deployment, Service, autoscaler and PDB."""
    objects = [
        _deployment(wine_model, release, eff, name, component),
        _service(wine_model, release, eff, name, component),
    ]
    if eff["autoscaling"].get("enabled"):
        build = _scaled_object if eff["autoscaling"]["keda"].get("enabled") else _hpa
        objects.append(build(wine_model, release, eff, name, component))
    if eff["disruption"].get("enabled"):
        objects.append(_pdb(wine_model, release, eff, name, component))
    return objects


def autoscaled(objects: list[Obj]) -> bool:
    """Whether an autoscaler among ``objects`` owns the Deployment's replica count."""
    return any(o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject") for o in objects)
