"""Every Prometheus metric of the router, declared once, in its own registry.

Units are in the names; labels are low-cardinality (route template, model name, placement,
status class). Label children used on the hot path are cached so a request does not pay for
label lookups.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# `_created` samples double the series count and no dashboard here reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2500, 5000, 10000)

REQUESTS = Counter(
    "winemeup_router_requests_total",
    "HTTP requests answered, by route template, model and status class.",
    ["route", "model", "status_class"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "winemeup_router_request_duration_seconds",
    "Time from request start to response, for prediction routes, by model and placement.",
    ["model", "placement"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CACHE_HITS = Counter(
    "winemeup_router_cache_hits_total", "Predictions answered from the cache.", ["backend"], registry=REGISTRY
)
CACHE_MISSES = Counter(
    "winemeup_router_cache_misses_total",
    "Predictions not found in the cache.",
    ["backend"],
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "winemeup_router_cache_errors_total",
    "Cache operations that failed or timed out (the request was served without the cache).",
    ["backend"],
    registry=REGISTRY,
)
RUNNER_ERRORS = Counter(
    "winemeup_router_runner_errors_total",
    "Calls to a model runner that failed (connection refused, bad answer), by model.",
    ["model"],
    registry=REGISTRY,
)
RUNNER_TIMEOUTS = Counter(
    "winemeup_router_runner_timeouts_total",
    "Calls to a model runner that exceeded runner_timeout_seconds, by model.",
    ["model"],
    registry=REGISTRY,
)
RUNNER_CALL_ROWS = Histogram(
    "winemeup_router_runner_call_rows",
    "Rows sent in one runner /predict call (micro-batching gathers concurrent misses).",
    ["model"],
    buckets=_ROWS_BUCKETS,
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "winemeup_router_model_load_seconds",
    "Seconds the last load of an inline model took.",
    ["model"],
    registry=REGISTRY,
)
# ---- model insight (explanations, drift) --------------------------------------------------------
EXPLAIN_SECONDS = Histogram(
    "winemeup_router_explain_duration_seconds",
    "Time one model call took to explain the cache misses of an explain request, by model.",
    ["model"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
EXPLAIN_CACHE = Counter(
    "winemeup_router_explain_cache_total",
    "Explained rows by whether the explanation cache held them (hit or miss).",
    ["result"],
    registry=REGISTRY,
)
RUNNER_INFLIGHT = Gauge(
    "winemeup_router_runner_inflight_requests",
    "Requests of this router waiting on a model's runner (queued for a call or in one); "
    "the autoscaling rule sums it over router pods.",
    ["model"],
    registry=REGISTRY,
)
EXPLAIN_REFUSED = Counter(
    "winemeup_router_explain_refused_total",
    "Explain requests refused with 429 because the model's explanations in flight were at their bound.",
    ["model"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "winemeup_router_rate_limited_total",
    "Requests refused with 429 because their API key was over its budget, by key class.",
    ["key_class"],
    registry=REGISTRY,
)
DRIFT_PSI = Gauge(
    "winemeup_router_drift_psi",
    "Population stability index of the served-rows window against the training bins, per measurement "
    "and wine type (NaN without in-range values).",
    ["feature", "wine_type"],
    registry=REGISTRY,
)
DRIFT_OUT_OF_RANGE = Gauge(
    "winemeup_router_drift_out_of_range_ratio",
    "Share of the window's values outside the feature's physical range, per measurement and wine type.",
    ["feature", "wine_type"],
    registry=REGISTRY,
)
DRIFT_OUT_OF_RANGE_ROWS = Gauge(
    "winemeup_router_drift_out_of_range_rows_ratio",
    "Share of the window's rows with at least one value out of range, per wine type.",
    ["wine_type"],
    registry=REGISTRY,
)
DRIFT_WINDOW_ROWS = Gauge(
    "winemeup_router_drift_window_rows",
    "Served rows in the drift window, per wine type (at most drift_window_rows).",
    ["wine_type"],
    registry=REGISTRY,
)
DRIFT_AGGREGATION_SECONDS = Gauge(
    "winemeup_router_drift_aggregation_seconds",
    "Time the last drift aggregation took (in a worker thread, off the request path).",
    registry=REGISTRY,
)
MODEL_READY = Gauge(
    "winemeup_router_model_ready",
    "1 when the model can answer now, 0 when it is loading or unavailable.",
    ["model", "placement"],
    registry=REGISTRY,
)
DEFAULT_MODEL = Gauge(
    "winemeup_router_default_model",
    "1 for the model currently used when a request names none, 0 for the others.",
    ["model"],
    registry=REGISTRY,
)
MODEL_SERVING_PATH = Gauge(
    "winemeup_router_model_serving_path",
    "1 for the path that serves the model (onnx: its accelerated artifact; framework: the library).",
    ["model", "placement", "path"],
    registry=REGISTRY,
)
ACCELERATED_FALLBACKS = Counter(
    "winemeup_router_accelerated_fallbacks_total",
    "Loads of a model that fell back to its framework because the ONNX artifact was missing, "
    "corrupt or failed parity.",
    ["model", "placement"],
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "winemeup_router_batch_rows",
    "Instances per /v1/predict/batch request.",
    buckets=_ROWS_BUCKETS,
    registry=REGISTRY,
)

# ---- traffic policies (canary split, shadow) ----------------------------------------------------
SERVED_ROWS = Counter(
    "winemeup_router_served_rows_total",
    "Rows answered under a name that has a canary split, by that name (requested) and the model "
    "that served them (the served share per model).",
    ["requested", "model"],
    registry=REGISTRY,
)
SPLIT_WEIGHT = Gauge(
    "winemeup_router_split_weight_percent",
    "Configured share (percent) of a name's (requested) traffic each model serves; absent without a split.",
    ["requested", "model"],
    registry=REGISTRY,
)
SHADOW_FRACTION = Gauge(
    "winemeup_router_shadow_fraction",
    "Configured fraction (0..1) of a model's traffic also scored by its shadow.",
    ["model", "shadow"],
    registry=REGISTRY,
)
SHADOW_SCORE_DIFFERENCE = Histogram(
    "winemeup_router_shadow_score_difference",
    "Shadow score minus the served score, per shadowed row (quality points).",
    ["model", "shadow"],
    buckets=(-2.0, -1.0, -0.5, -0.25, -0.1, -0.05, -0.01, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
    registry=REGISTRY,
)
SHADOW_GRADES = Counter(
    "winemeup_router_shadow_grades_total",
    "Shadowed rows, by whether the shadow's quality grade agrees with the served one.",
    ["model", "shadow", "agreement"],
    registry=REGISTRY,
)
SHADOW_SHED = Counter(
    "winemeup_router_shadow_shed_total",
    "Shadow calls dropped because shadow_max_inflight calls were already running.",
    ["model", "shadow"],
    registry=REGISTRY,
)
SHADOW_ERRORS = Counter(
    "winemeup_router_shadow_errors_total",
    "Shadow calls that failed (the client's answer was not affected).",
    ["model", "shadow"],
    registry=REGISTRY,
)
SHADOW_INFLIGHT = Gauge("winemeup_router_shadow_inflight", "Shadow calls running now.", registry=REGISTRY)
# ---- rollouts (a candidate version beside the stable one) ---------------------------------------
ROLLOUT_CANDIDATE_PERCENT = Gauge(
    "winemeup_router_rollout_candidate_percent",
    "Share of a model's wines its candidate version answers at the rollout's step (0 in shadow "
    "and after a roll back, 100 once promoted).",
    ["model"],
    registry=REGISTRY,
)
ROLLOUT_PHASE = Gauge(
    "winemeup_router_rollout_phase",
    "1 for the phase a model's rollout is in (running, promoted, rolled_back).",
    ["model", "phase"],
    registry=REGISTRY,
)
ROLLOUT_DECISION = Gauge(
    "winemeup_router_rollout_decision",
    "1 for the gate's last decision at the current step (hold, advance, promote, rollback).",
    ["model", "decision"],
    registry=REGISTRY,
)
ROLLOUT_FIGURE = Gauge(
    "winemeup_router_rollout_figure",
    "The gate's figures at the current step over every replica (winesCompared, "
    "meanAbsScoreDifference, gradeAgreement, candidateErrorRate, p99LatencyRatio).",
    ["model", "figure"],
    registry=REGISTRY,
)
ROLLOUT_FALLBACKS = Counter(
    "winemeup_router_rollout_fallbacks_total",
    "Requests whose candidate rows failed and were answered by the stable version instead.",
    ["model"],
    registry=REGISTRY,
)
ROLLOUT_COMPARISONS_SHED = Counter(
    "winemeup_router_rollout_comparisons_shed_total",
    "Comparisons (the other version scoring served wines) dropped because too many were running.",
    ["model"],
    registry=REGISTRY,
)
RUNNER_CONNECTIONS_RECYCLED = Counter(
    "winemeup_router_runner_connections_recycled_total",
    "Kept-alive runner connections closed for reaching runner_connection_max_age_seconds.",
    registry=REGISTRY,
)


@lru_cache(maxsize=1024)
def request_counter(route: str, model: str, status_class: str) -> Any:
    """The cached ``requests_total`` child for one label set."""
    return REQUESTS.labels(route, model, status_class)


@lru_cache(maxsize=64)
def latency_histogram(model: str, placement: str) -> Any:
    """The cached latency histogram child for one model and placement."""
    return REQUEST_SECONDS.labels(model, placement)


def set_default_model(default: str, models: list[str]) -> None:
    """Mark ``default`` with 1 and every other model with 0."""
    for name in models:
        DEFAULT_MODEL.labels(name).set(1.0 if name == default else 0.0)


def set_serving_path(model: str, placement: str, path: str) -> None:
    """Mark the path that serves ``model`` with 1 and the other with 0."""
    for candidate in ("onnx", "framework"):
        MODEL_SERVING_PATH.labels(model, placement, candidate).set(1.0 if candidate == path else 0.0)


def set_rollout_states(states: dict[str, tuple[float, str]]) -> None:
    """Each rollout's candidate share (percent) and phase; models without a rollout vanish."""
    ROLLOUT_CANDIDATE_PERCENT.clear()
    ROLLOUT_PHASE.clear()
    for name, (percent, phase) in states.items():
        ROLLOUT_CANDIDATE_PERCENT.labels(name).set(percent)
        ROLLOUT_PHASE.labels(name, phase).set(1)


def set_rollout_decision(model: str, action: str, figures: dict[str, Any]) -> None:
    """The gate's last decision on ``model`` and the figures behind it (NaN where none yet)."""
    for each in ("hold", "advance", "promote", "rollback"):
        ROLLOUT_DECISION.labels(model, each).set(1 if each == action else 0)
    for figure in ("winesCompared", "meanAbsScoreDifference", "gradeAgreement", "candidateErrorRate",
                   "p99LatencyRatio"):  # fmt: skip
        value = figures.get(figure)
        ROLLOUT_FIGURE.labels(model, figure).set(float("nan") if value is None else value)


def exposition() -> bytes:
    """The Prometheus text exposition of the router's registry."""
    return generate_latest(REGISTRY)
