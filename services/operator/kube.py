"""The thin layer that talks to the Kubernetes API server (the one part never run here).

Everything it decides comes from the pure modules: :func:`~services.operator.reconcile.desired_objects`,
:func:`~services.operator.status.compute_status`, :mod:`~services.operator.traffic` and
:func:`~services.operator.lease.decide`. This module only reads objects, applies the desired
ones with server-side apply under the operator's own field manager, deletes runner objects no
WineModel wants any more, writes status, and holds the Lease. It is level-based: each pass
lists what is there and recomputes everything, so a missed event or a failed pass heals at the
next one; a side service that is down (the router) degrades a condition, never the pass.

No API server runs on the machine this was written on: this module was not run against one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from services.operator import metrics
from services.operator.lease import LeaseAction, decide, lease_spec
from services.operator.reconcile import SpecError, desired_objects, runner_name
from services.operator.release import ReleaseContext
from services.operator.resources import (
    FIELD_MANAGER,
    GROUP,
    MANAGED_BY,
    VERSION,
    WINEMODELS,
    WINETRAFFICS,
    model_of,
)
from services.operator.rollout import drive_rollout
from services.operator.status import Observed, RouterReport, compute_status, condition, router_reports
from services.operator.traffic import RouterAdmin, accept, convergence

logger = logging.getLogger(__name__)

HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"
"""Field manager that keeps spec.replicas when an autoscaler takes the count over (see _hand_over)."""
RUNNER_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("keda.sh/v1alpha1", "ScaledObject"),
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """The API calls the operator makes, in one namespace."""

    def __init__(self, namespace: str):
        from kubernetes import client, config

        config.load_incluster_config()
        self.namespace = namespace
        self.api = client.ApiClient()
        self._dynamic: Any = None
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)

    @property
    def dynamic(self) -> Any:
        """The dynamic client, made at first use: making it asks the API server for discovery,
        which at start-up would turn an API server that is down into a crash instead of a pass
        that fails and is retried (seen running the image without one)."""
        if self._dynamic is None:
            from kubernetes import dynamic

            self._dynamic = dynamic.DynamicClient(self.api)
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def list_custom(self, plural: str) -> list[dict[str, Any]]:
        answer: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
        return list(answer.get("items", []))

    def apply(self, obj: dict[str, Any], manager: str = FIELD_MANAGER) -> None:
        """Server-side apply under ``manager``; conflicts are forced (the operator owns these objects)."""
        self._resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=obj, namespace=self.namespace, field_manager=manager, force_conflicts=True
        )

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return dict(self._resource(api_version, kind).get(name=name, namespace=self.namespace).to_dict())
        except NotFoundError:
            return None

    def runner_objects(self, instance: str) -> list[dict[str, Any]]:
        """Every runner object this operator created for the release (by label)."""
        selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/managed-by={MANAGED_BY}"
        found = []
        for api_version, kind in RUNNER_KINDS:
            try:
                items = (
                    self._resource(api_version, kind)
                    .get(namespace=self.namespace, label_selector=selector)
                    .items
                )
            except Exception:  # a kind the cluster lacks (KEDA not installed)
                continue
            found += [dict(i.to_dict()) for i in items]
        return found

    def delete(self, obj: dict[str, Any]) -> None:
        self._resource(obj["apiVersion"], obj["kind"]).delete(
            name=obj["metadata"]["name"], namespace=self.namespace
        )

    def pods(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        items = self.core.list_namespaced_pod(self.namespace, label_selector=label_selector).items
        return [self.api.sanitize_for_serialization(p) for p in items]

    def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, plural, name, {"status": status}
        )

    def router_addresses(self, service: str, port: int) -> list[str]:
        """http://<ip>:<port> of every ready endpoint of the router Service (the pods' own port,
        from the EndpointSlice; ``port``, the Service's, only when the slice names none)."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        out = []
        for s in slices:
            ports = [p.port for p in s.ports or [] if p.port and p.name in ("http", None)]
            port = ports[0] if ports else port
            for endpoint in s.endpoints or []:
                if endpoint.conditions is None or endpoint.conditions.ready is not False:
                    out += [f"http://{address}:{port}" for address in endpoint.addresses]
        return sorted(out)

    def hold_lease(self, name: str, me: str, duration: int) -> bool:
        """Create, renew or take over the Lease when this replica may; True while it leads."""
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC)
        try:
            lease = self.coordination.read_namespaced_lease(name, self.namespace)
            s: Any = lease.spec
            current: dict[str, Any] | None = {
                "holderIdentity": s.holder_identity,
                "renewTime": s.renew_time,
                "leaseDurationSeconds": s.lease_duration_seconds,
                "acquireTime": s.acquire_time,
                "leaseTransitions": s.lease_transitions,
            }
        except ApiException as e:
            if e.status != 404:
                raise
            lease, current = None, None
        action = decide(current, me, now)
        if action is LeaseAction.WAIT:
            return False
        new = lease_spec(action, current, me, now, duration)
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in new.items()},
        }
        try:
            if lease is None:
                self.coordination.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]
            else:
                body["metadata"]["resourceVersion"] = lease.metadata.resource_version  # type: ignore[union-attr]
                self.coordination.replace_namespaced_lease(name, self.namespace, body)  # type: ignore[arg-type]
        except ApiException as e:
            if e.status == 409:  # another replica wrote first
                return False
            raise
        return True


class Operator:
    """One reconcile pass over every WineModel and WineTraffic of the namespace."""

    def __init__(self, cluster: Cluster, release: ReleaseContext, router: RouterAdmin):
        self.cluster = cluster
        self.release = release
        self.router = router

    def _hand_over(self, obj: dict[str, Any], live: dict[str, Any] | None) -> None:
        """Before an apply that drops spec.replicas (an autoscaler took over), keep the live count
        under another manager: otherwise the API server removes the field this manager owned and
        the Deployment falls back to 1 replica until the autoscaler notices."""
        if live is None or "replicas" in obj["spec"]:
            return
        owned = any(
            m.get("manager") == FIELD_MANAGER and "f:replicas" in str(m.get("fieldsV1", {}).get("f:spec", {}))
            for m in (live.get("metadata", {}).get("managedFields") or [])
        )
        if owned:
            keep = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": obj["metadata"]["name"]},
                "spec": {"replicas": live["spec"]["replicas"]},
            }
            self.cluster.apply(keep, HANDOVER_MANAGER)

    def reconcile_model(
        self, wm: dict[str, Any], router_models: dict[str, Any] | None
    ) -> set[tuple[str, str]]:
        """Apply one WineModel's objects and write its status; the (kind, name) it wants."""
        name = wm["metadata"]["name"]
        model = model_of(name) or name
        wanted: set[tuple[str, str]] = set()
        spec_error = apply_error = ""
        try:
            objects = desired_objects(wm, self.release)
        except SpecError as e:
            objects, spec_error = [], str(e)
        deployment_name = runner_name(self.release, model) if model_of(name) else ""
        for obj in objects:
            wanted.add((obj["kind"], obj["metadata"]["name"]))
            try:
                if obj["kind"] == "Deployment":
                    self._hand_over(obj, self.cluster.get("apps/v1", "Deployment", obj["metadata"]["name"]))
                self.cluster.apply(obj)
            except Exception as e:  # reported in the status, retried next pass
                apply_error = f"applying {obj['kind']}/{obj['metadata']['name']} failed: {e}"
                logger.warning("%s", apply_error)
        deployment = self.cluster.get("apps/v1", "Deployment", deployment_name) if deployment_name else None
        selector = (deployment or {}).get("spec", {}).get("selector", {}).get("matchLabels")
        reports = router_reports(router_models) if router_models is not None else None
        rollout, rollout_status = (None, None)
        if model_of(name) and not spec_error:
            rollout, rollout_status = drive_rollout(
                self.router, self.release.router_url, model, wm.get("spec") or {}
            )
        observed = Observed(
            wine_model=wm,
            model=model,
            deployment=deployment,
            pods=self.cluster.pods(selector) if selector else [],
            router=None if reports is None else reports.get(model, RouterReport(False)),
            service_url=f"http://{deployment_name}.{self.release.namespace}.svc:3000"
            if deployment_name
            else "",
            spec_error=spec_error,
            apply_error=apply_error,
            rollout=rollout,
            rollout_status=rollout_status,
        )
        status = compute_status(observed, _now())
        self.cluster.patch_status(WINEMODELS, name, status)
        ready = condition(status, "Ready")["status"] == "True"
        metrics.MODEL_READY.labels(model).set(1.0 if ready else 0.0)
        metrics.RECONCILES.labels("WineModel", "ok" if not (spec_error or apply_error) else "error").inc()
        return wanted

    def reconcile_traffic(self, wt: dict[str, Any], ready: set[str]) -> None:
        """Accept, apply and check convergence of one WineTraffic; write its status."""
        spec = wt.get("spec") or {}
        generation = int(wt["metadata"].get("generation") or 0)
        previous = (wt.get("status") or {}).get("conditions") or []
        accepted = accept(spec, ready)
        conditions = [accepted]
        replicas: list[dict[str, Any]] = []
        if accepted.status == "True":
            applied = self.router.apply(self.release.router_url, spec)
            conditions.append(applied)
            if applied.status == "True":
                addresses = self.cluster.router_addresses(
                    self.release.router_service, self.release.router_port
                )
                converged, replicas = convergence(spec, [self.router.view(a) for a in addresses])
                conditions.append(converged)
                metrics.TRAFFIC_CONVERGED.labels(wt["metadata"]["name"]).set(
                    1.0 if converged.status == "True" else 0.0
                )
        now = _now()
        status = {
            "observedGeneration": generation,
            "conditions": [c.as_dict(now, generation, previous) for c in conditions],
            "replicas": replicas,
        }
        self.cluster.patch_status(WINETRAFFICS, wt["metadata"]["name"], status)
        metrics.RECONCILES.labels("WineTraffic", "ok" if accepted.status == "True" else "error").inc()

    def run_pass(self) -> None:
        """Recompute everything from what is there (level-based)."""
        with metrics.PASS_SECONDS.time():
            router_models = self.router.models(self.release.router_url)
            wanted: set[tuple[str, str]] = set()
            for wm in self.cluster.list_custom(WINEMODELS):
                try:
                    wanted |= self.reconcile_model(wm, router_models)
                except Exception:
                    logger.exception("reconciling WineModel %s failed", wm["metadata"]["name"])
                    metrics.RECONCILES.labels("WineModel", "error").inc()
            for obj in self.cluster.runner_objects(self.release.release):
                if (obj["kind"], obj["metadata"]["name"]) not in wanted:
                    logger.info("deleting %s/%s: no WineModel wants it", obj["kind"], obj["metadata"]["name"])
                    self.cluster.delete(obj)
            ready = _ready_models(self.cluster.list_custom(WINEMODELS)) | _router_ready_inline(router_models)
            for wt in self.cluster.list_custom(WINETRAFFICS):
                try:
                    self.reconcile_traffic(wt, ready)
                except Exception:
                    logger.exception("reconciling WineTraffic %s failed", wt["metadata"]["name"])
                    metrics.RECONCILES.labels("WineTraffic", "error").inc()


def _ready_models(items: list[dict[str, Any]]) -> set[str]:
    """Models whose WineModel is Ready."""
    out = set()
    for wm in items:
        model = model_of(wm["metadata"]["name"])
        for c in (wm.get("status") or {}).get("conditions") or []:
            if model and c.get("type") == "Ready" and c.get("status") == "True":
                out.add(model)
    return out


def _router_ready_inline(router_models: dict[str, Any] | None) -> set[str]:
    """Models served inline in the router (no WineModel) that the router reports ready."""
    return {
        m["name"]
        for m in (router_models or {}).get("models", [])
        if m.get("placement") == "inline" and m.get("status") == "ready"
    }
