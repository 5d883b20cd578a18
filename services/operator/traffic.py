"""WineTraffic: validation (Accepted), applying through the router's admin API (Applied) and
convergence over every router replica (Converged).

The pure part (:func:`accept`, :func:`policy_document`, :func:`convergence`) decides; the
:class:`RouterAdmin` adapter speaks HTTP to the router's existing routes: ``PUT /v1/traffic``
(splits and shadows, both replaced) and ``PUT /v1/models/default``, then ``GET /v1/traffic``
and ``GET /v1/models`` on each replica. A WineTraffic that is not Accepted is never sent, so
the router keeps its current policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from services.operator.conditions import Condition, false, true, unknown
from services.operator.resources import FAMILIES

ACCEPTED = "Accepted"
APPLIED = "Applied"
CONVERGED = "Converged"


class _Problems(list[str]):
    def __init__(self, ready: set[str]):
        super().__init__()
        self.ready = ready

    def model(self, model: Any, where: str) -> None:
        if model not in FAMILIES:
            self.append(f"{where}: {model!r} is not a model family ({', '.join(FAMILIES)})")
        elif model not in self.ready:
            self.append(f"{where}: model {model} is not Ready")

    def split(self, name: str, weights: Any) -> None:
        where = f"spec.splits.{name}"
        self.model(name, where)
        if not isinstance(weights, Mapping) or not weights:
            self.append(f"{where}: must map models to percentages")
            return
        for model, weight in weights.items():
            self.model(model, f"{where}.{model}")
            if not _number(weight) or weight < 0:
                self.append(f"{where}.{model}: weight must be a number >= 0, got {weight!r}")
        total = sum(w for w in weights.values() if _number(w))
        if not math.isclose(total, 100.0, abs_tol=1e-6):
            self.append(f"{where}: weights add up to {total:g}, not 100")

    def shadow(self, source: str, shadow: Any) -> None:
        where = f"spec.shadows.{source}"
        self.model(source, where)
        if not isinstance(shadow, Mapping):
            self.append(f"{where}: must be {{target, fraction}}")
            return
        self.model(shadow.get("target"), f"{where}.target")
        if shadow.get("target") == source:
            self.append(f"{where}.target: a model cannot shadow itself")
        fraction: Any = shadow.get("fraction")
        if not _number(fraction) or not 0 <= fraction <= 1:
            self.append(f"{where}.fraction: must be 0..1, got {fraction!r}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problems(spec: Mapping[str, Any], ready: set[str]) -> list[str]:
    problems = _Problems(ready)
    if spec.get("default") is not None:
        problems.model(spec["default"], "spec.default")
    for name, weights in (spec.get("splits") or {}).items():
        problems.split(name, weights)
    for source, shadow in (spec.get("shadows") or {}).items():
        problems.shadow(source, shadow)
    return list(problems)


def accept(spec: Mapping[str, Any], ready: Iterable[str]) -> Condition:
    """Accepted: every name a model family that is Ready now, weights adding up to 100,
    fractions 0..1. ``ready``: the models the router reports ready (and whose WineModel is Ready)."""
    problems = _problems(spec, set(ready))
    if problems:
        return false(ACCEPTED, "Invalid", "; ".join(problems) + "; the router keeps its current policy")
    return true(ACCEPTED, "Valid", "names and weights are valid and every named model is Ready")


def policy_document(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PUT /v1/traffic`` body: both sections, so what the WineTraffic leaves out is removed."""
    return {
        "splits": {n: {m: float(w) for m, w in ws.items()} for n, ws in (spec.get("splits") or {}).items()},
        "shadows": {
            s: {"target": v["target"], "fraction": float(v["fraction"])}
            for s, v in (spec.get("shadows") or {}).items()
        },
    }


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What one router replica reports: its policies and default, or why it could not be read."""

    address: str
    traffic: dict[str, Any] | None = None
    default: str | None = None
    error: str = ""


def _same_policies(seen: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return {k: seen.get(k) or {} for k in ("splits", "shadows")} == {
        k: wanted[k] for k in ("splits", "shadows")
    }


def convergence(spec: Mapping[str, Any], views: list[ReplicaView]) -> tuple[Condition, list[dict[str, Any]]]:
    """Converged: every router replica reports the WineTraffic's policies and default.

    Returns the condition and a per-replica summary for ``status.replicas``.
    """
    wanted = policy_document(spec)
    summary = []
    lagging = []
    for v in views:
        if v.error or v.traffic is None:
            ok, msg = False, v.error or "no answer"
        elif not _same_policies(v.traffic, wanted):
            ok, msg = False, "reports other splits or shadows"
        elif spec.get("default") is not None and v.default != spec["default"]:
            ok, msg = False, f"default model is {v.default}"
        else:
            ok, msg = True, "reports the policy"
        summary.append({"address": v.address, "converged": ok, "message": msg})
        if not ok:
            lagging.append(f"{v.address}: {msg}")
    if not views:
        return unknown(CONVERGED, "NoRouterReplicas", "no ready router replica to ask"), summary
    if lagging:
        return false(CONVERGED, "ReplicasDiffer", f"{len(lagging)} of {len(views)} router replicas lag: "
                     + "; ".join(lagging)), summary  # fmt: skip
    return true(CONVERGED, "AllReplicas", f"all {len(views)} router replicas report the policy"), summary


class RouterAdmin:
    """The router's admin API over HTTP, with the release's admin key."""

    def __init__(self, admin_key: str, timeout_seconds: float = 5.0):
        self._headers = {"X-API-Key": admin_key}
        self._timeout = timeout_seconds

    def apply(self, base_url: str, spec: Mapping[str, Any]) -> Condition:
        """PUT the policies (and the default, when given); Applied=True when both answer 2xx.

        Nothing is sent when the router already reports them (each pass would otherwise log an
        admin change)."""
        current = self.view(base_url)
        if not current.error and convergence(spec, [current])[0].status == "True":
            return true(APPLIED, "InForce", "the router already reports this policy")
        try:
            with httpx.Client(base_url=base_url, headers=self._headers, timeout=self._timeout) as client:
                answer = client.put("/v1/traffic", json=policy_document(spec))
                if answer.is_success and spec.get("default") is not None:
                    answer = client.put("/v1/models/default", json={"model": spec["default"]})
        except httpx.HTTPError as e:
            return false(APPLIED, "RouterUnreachable", f"{base_url}: {type(e).__name__}: {e}")
        if not answer.is_success:
            return false(
                APPLIED,
                f"RouterAnswered{answer.status_code}",
                f"{answer.request.method} {answer.request.url.path} answered {answer.status_code}: "
                f"{answer.text[:500]}",
            )
        return true(APPLIED, "RouterAccepted", "the router's admin API answered 2xx")

    def rollouts(self, base_url: str) -> dict[str, Any] | None:
        """``GET /v1/rollouts`` (None when the router cannot be read)."""
        try:
            answer = httpx.get(base_url + "/v1/rollouts", headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.is_success else None

    def put_rollout(self, base_url: str, body: Mapping[str, Any]) -> tuple[int | None, str]:
        """``PUT /v1/rollouts``: the status code and body (None and the error when unreachable)."""
        try:
            answer = httpx.put(
                base_url + "/v1/rollouts", json=dict(body), headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"
        return answer.status_code, answer.text

    def models(self, base_url: str) -> dict[str, Any] | None:
        """``GET /v1/models`` (None when the router cannot be read)."""
        try:
            answer = httpx.get(base_url + "/v1/models", headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.is_success else None

    def view(self, base_url: str) -> ReplicaView:
        """One replica's policies and default model."""
        try:
            with httpx.Client(base_url=base_url, headers=self._headers, timeout=self._timeout) as client:
                traffic = client.get("/v1/traffic")
                models = client.get("/v1/models")
        except httpx.HTTPError as e:
            return ReplicaView(base_url, error=f"{type(e).__name__}: {e}")
        if not (traffic.is_success and models.is_success):
            return ReplicaView(base_url, error=f"answered {traffic.status_code}/{models.status_code}")
        return ReplicaView(base_url, traffic.json(), models.json().get("default"))
