"""The release context: what every runner of one Helm release shares, as the chart renders it.

In operator mode the chart writes this document (``release.json`` in the operator's
ConfigMap) from the same values ``runners.yaml`` reads in Helm mode: ``runnerDefaults``, the
pod and container security contexts, the runner ConfigMap and its checksum, the labels. A
WineModel holds only what ``models.<name>`` holds; everything else comes from here, so a
WineModel applied with kubectl gets the release's defaults, as a model in the values does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class RunnerImage(_Doc):
    """How a runner image is named when a WineModel gives none."""

    registry: str = ""
    repository_prefix: str = "winemeup-runner-"
    tag: str
    pull_policy: str = "IfNotPresent"


class Keda(_Doc):
    """KEDA ScaledObject settings (CPU plus in-flight requests per pod from Prometheus)."""

    enabled: bool = False
    server_address: str = ""
    query: str = ""
    """PromQL with ``{model}`` where the model name goes (the chart's recorded series)."""
    target_inflight_per_pod: float = 4.0
    fallback_replicas: int = 2
    failure_threshold: int = 3
    polling_interval_seconds: int = 15
    cooldown_period_seconds: int = 300


class RunnerDefaults(_Doc):
    """``runnerDefaults`` as the chart resolved it (probes merged, PDB policy per cluster version)."""

    image: RunnerImage
    replicas: int = 1
    autoscaling: dict[str, Any]
    resources: dict[str, Any]
    scheduling: dict[str, Any]
    pod_disruption_budget: dict[str, Any]
    config_map: str
    config_checksum: str
    secret_checksum: str = ""
    """checksum/secret of the runner pods (rolls them when the runner token changes); empty: none."""
    metrics_port: int | None = None
    """Port of the runner's /metrics apart from the API (a container and Service port named metrics)."""
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    pod_common: dict[str, Any]
    container_security_context: dict[str, Any]
    termination_grace_period_seconds: int = 30
    lifecycle: dict[str, Any] | None = None
    probes: dict[str, dict[str, Any]]
    extra_env: list[dict[str, Any]] = Field(default_factory=list)
    extra_env_from: list[dict[str, Any]] = Field(default_factory=list)
    extra_volumes: list[dict[str, Any]] = Field(default_factory=list)
    extra_volume_mounts: list[dict[str, Any]] = Field(default_factory=list)
    model_fetch: dict[str, Any]
    service_annotations: dict[str, str] = Field(default_factory=dict)
    keda: Keda = Field(default_factory=Keda)


class ReleaseContext(_Doc):
    """One Helm release, as the operator needs it."""

    release: str
    namespace: str
    fullname: str
    name: str
    """The chart name (app.kubernetes.io/name)."""
    labels: dict[str, str]
    """Labels of every object besides the selector labels (chart, version, part-of, commonLabels)."""
    runner: RunnerDefaults
    router_url: str
    """Base URL of the router Service (admin API)."""
    router_service: str
    """Name of the router Service (its endpoints are the replicas asked for convergence)."""
    router_port: int = 8000
