"""Every Prometheus metric of the operator, declared once, in its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "winemeup_operator_reconciles_total",
    "Reconciles of one resource, by kind (WineModel, WineTraffic) and result (ok, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
PASS_SECONDS = Histogram(
    "winemeup_operator_pass_duration_seconds",
    "Time one full pass over every WineModel and WineTraffic took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
LEADER = Gauge("winemeup_operator_leader", "1 while this replica holds the Lease.", registry=REGISTRY)
MODEL_READY = Gauge(
    "winemeup_operator_model_ready",
    "1 when the WineModel's Ready condition is True.",
    ["model"],
    registry=REGISTRY,
)
TRAFFIC_CONVERGED = Gauge(
    "winemeup_operator_traffic_converged",
    "1 when every router replica reports the WineTraffic's policy.",
    ["name"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The Prometheus text exposition of the operator's registry."""
    return generate_latest(REGISTRY)
