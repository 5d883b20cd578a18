"""The router's API contract: every request, response and error body, declared once.

The router's OpenAPI document is generated from these types, its fast validation path is
parity-tested against them, and the UI client reads the router's answers with them. The wine
itself (:class:`Features`) is derived from :data:`winemeup.schema.SCHEMA`, so no feature name
is spelled here.

One error body shape everywhere (router and runners)::

    {"error": "<message>", "code": "<stable code>", "details": [{"field": ..., "problem": ...}]}

``error`` is a plain string so that the Open Inference Protocol's ``{"error": "<string>"}``
is the same body without its optional fields.

This module imports pydantic and the feature schema only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)

from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA

__all__ = [
    "INTERVAL_LEVELS",
    "BatchRequest",
    "BatchResponse",
    "DefaultModelChange",
    "DefaultModelRequest",
    "DriftFeature",
    "DriftReport",
    "DriftType",
    "ErrorBody",
    "ExplainBatchRequest",
    "ExplainBatchResponse",
    "ExplainRequest",
    "ExplainResponse",
    "ExplainedInstance",
    "FeatureContribution",
    "FeatureInfo",
    "FeatureList",
    "Features",
    "FieldProblem",
    "Health",
    "Interval",
    "IntervalLevel",
    "ModelInfo",
    "ModelList",
    "PredictRequest",
    "PredictResponse",
    "Readiness",
    "ScoredInstance",
]

_RULES = "; ".join(f"{a} must not exceed {b}" for a, b in SCHEMA.not_exceeding)
FEATURES_DESCRIPTION = (
    "One wine, by API name. Training headers (e.g. 'fixed acidity', 'pH') are accepted as aliases "
    "of the API names. Cross-field rule, checked after the ranges (a 422 names the field): "
    f"{_RULES}."
)


def _feature_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in SCHEMA.features:
        alias = AliasChoices(f.name, f.header) if f.header != f.name else None
        if f.kind == "category":
            kind: Any = Literal[f.choices]  # type: ignore[valid-type]
            fields[f.name] = (
                kind,
                Field(description=f.description, examples=[f.example], validation_alias=alias),
            )
        else:
            fields[f.name] = (
                float,
                Field(
                    ge=f.minimum,
                    le=f.maximum,
                    allow_inf_nan=False,
                    strict=True,
                    description=f"{f.description} ({f.unit}); training header '{f.header}'",
                    examples=[f.example],
                    validation_alias=alias,
                ),
            )
    return fields


def _one_spelling(cls: type[BaseModel], data: Any) -> Any:
    """Reject a feature given under both its API name and its training header."""
    if isinstance(data, dict):
        for f in SCHEMA.features:
            if f.header != f.name and f.name in data and f.header in data:
                raise ValueError(f"{f.name} is given twice (as '{f.name}' and '{f.header}')")
    return data


def _rules_hold(self: BaseModel) -> BaseModel:
    """The schema's cross-field rules (a must not exceed b)."""
    for a, b in SCHEMA.not_exceeding:
        if getattr(self, a) > getattr(self, b):
            raise ValueError(f"{a} must not exceed {b}")
    return self


if TYPE_CHECKING:

    class Features(BaseModel):
        """One wine (fields generated from the feature schema)."""

        def __getattr__(self, name: str) -> Any: ...

else:
    Features = create_model(
        "Features",
        __config__=ConfigDict(
            extra="forbid",
            populate_by_name=True,
            title="Features",
            json_schema_extra={"description": FEATURES_DESCRIPTION, "example": SCHEMA.example()},
        ),
        __doc__=FEATURES_DESCRIPTION,
        __validators__={
            "one_spelling": model_validator(mode="before")(classmethod(_one_spelling)),
            "rules_hold": model_validator(mode="after")(_rules_hold),
        },
        **_feature_fields(),
    )

ModelName = Annotated[str, StringConstraints(min_length=1)]
_MODEL_FIELD = Field(
    None,
    description="Model name; omitted or null means the current default model.",
    examples=["lightgbm"],
)
_SCORE_FIELD = Field(description="The model's quality score (0-10 scale, not rounded).", examples=[5.2])
_QUALITY_FIELD = Field(
    ge=QUALITY_MIN, le=QUALITY_MAX, description="The score rounded half up to a quality grade.", examples=[5]
)
_CACHED_FIELD = Field(description="True when the score came from the prediction cache.")

INTERVAL_LEVELS: tuple[float, ...] = (0.8, 0.9)
"""The nominal coverage levels training calibrates prediction intervals at."""


def _interval_level(level: float) -> float:
    if level not in INTERVAL_LEVELS:
        raise ValueError(f"must be one of {', '.join(f'{lv:g}' for lv in INTERVAL_LEVELS)}")
    return level


IntervalLevel = Annotated[
    float,
    Field(strict=True),
    AfterValidator(_interval_level),
    WithJsonSchema({"type": "number", "enum": list(INTERVAL_LEVELS)}),
]
"""A coverage level (float Literals are not valid typing, hence a validator and an enum schema)."""
_INTERVAL_FIELD = Field(
    None,
    description="Ask for a split-conformal prediction interval at this nominal coverage (0.8 or 0.9); "
    "a model stored without calibration data answers 409.",
    examples=[0.9],
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- requests ---------------------------------------------------------------------------------


class PredictRequest(_Request):
    """One wine to score."""

    features: Features = Field(description="The wine to score.")
    model: ModelName | None = _MODEL_FIELD
    interval: IntervalLevel | None = _INTERVAL_FIELD


class BatchRequest(_Request):
    """Many wines to score with one model (at most the router's ``batch_max_rows``)."""

    instances: list[Features] = Field(min_length=1, description="The wines to score, answered in this order.")
    model: ModelName | None = _MODEL_FIELD
    interval: IntervalLevel | None = _INTERVAL_FIELD


class ExplainRequest(_Request):
    """One wine to explain."""

    features: Features = Field(description="The wine to explain.")
    model: ModelName | None = _MODEL_FIELD


class ExplainBatchRequest(_Request):
    """Many wines to explain with one model (at most the router's ``batch_max_rows``)."""

    instances: list[Features] = Field(
        min_length=1, description="The wines to explain, answered in this order."
    )
    model: ModelName | None = _MODEL_FIELD


class DefaultModelRequest(_Request):
    """The model to make the default."""

    model: ModelName = Field(description="Name of a served model.", examples=["xgboost"])


# ---- responses --------------------------------------------------------------------------------


class Interval(BaseModel):
    """A split-conformal prediction interval of one score, clipped to the quality scale."""

    level: float = Field(description="Nominal coverage (0.8 or 0.9).", examples=[0.9])
    low: float = Field(description="Lower bound on the quality scale.", examples=[4.4])
    high: float = Field(description="Upper bound on the quality scale.", examples=[6.0])


_INTERVAL_ANSWER = Field(None, description="Present when the request asked for an interval.")


class PredictResponse(BaseModel):
    """The score of one wine."""

    model: str = Field(description="The model that scored it.", examples=["lightgbm"])
    model_version: str = Field(description="The version of that model (part of every cache key).")
    score: float = _SCORE_FIELD
    quality: int = _QUALITY_FIELD
    cached: bool = _CACHED_FIELD
    interval: Interval | None = _INTERVAL_ANSWER


class ScoredInstance(BaseModel):
    """The score of one wine of a batch."""

    score: float = _SCORE_FIELD
    quality: int = _QUALITY_FIELD
    cached: bool = _CACHED_FIELD
    interval: Interval | None = _INTERVAL_ANSWER
    model: str | None = Field(
        None, description="The model that scored this wine, when a canary split spread the batch."
    )
    model_version: str | None = Field(None, description="Its version (with `model`).")


class BatchResponse(BaseModel):
    """The scores of a batch, in input order."""

    model: str = Field(description="The model that scored it.", examples=["lightgbm"])
    model_version: str = Field(description="The version of that model.")
    predictions: list[ScoredInstance] = Field(description="One entry per instance, in input order.")


class FeatureContribution(BaseModel):
    """What one feature added to (or took from) the score."""

    feature: str = Field(description="API name of the feature.", examples=["alcohol"])
    value: float | str = Field(description="The wine's value of it, as sent.", examples=[9.4])
    contribution: float = Field(description="Its share of score - base, on the quality scale.")


_METHOD_FIELD = Field(
    description="How the contributions were computed (TreeSHAP or baseline Shapley) and what base means."
)
_BASE_FIELD = Field(description="The value the contributions start from: base + sum(contributions) = score.")


class ExplainedInstance(BaseModel):
    """The explanation of one wine's score."""

    base: float = _BASE_FIELD
    score: float = _SCORE_FIELD
    quality: int = _QUALITY_FIELD
    cached: bool = Field(description="True when the explanation came from the explanation cache.")
    contributions: list[FeatureContribution] = Field(description="One entry per feature, in schema order.")


class ExplainResponse(ExplainedInstance):
    """Per-feature contributions to one wine's score."""

    model: str = Field(description="The model explained.", examples=["lightgbm"])
    model_version: str = Field(description="The version of that model (part of every cache key).")
    method: str = _METHOD_FIELD


class ExplainBatchResponse(BaseModel):
    """Explanations of a batch, in input order."""

    model: str = Field(description="The model explained.", examples=["lightgbm"])
    model_version: str = Field(description="The version of that model.")
    method: str = _METHOD_FIELD
    explanations: list[ExplainedInstance] = Field(description="One entry per instance, in input order.")


class DriftFeature(BaseModel):
    """Drift of one measurement for one wine type."""

    feature: str = Field(examples=["alcohol"])
    psi: float | None = Field(
        description="Population stability index against the training bins; null with no in-range value."
    )
    out_of_range: float = Field(description="Share of the window's values outside the physical range.")


class DriftType(BaseModel):
    """Drift of one wine type's window of served rows."""

    wine_type: str = Field(examples=["white"])
    rows: int = Field(description="Rows of this type in the window.")
    max_psi: float | None = Field(description="The largest PSI over the measurements.")
    out_of_range_rows: float = Field(description="Share of rows with at least one value out of range.")
    features: list[DriftFeature]


class DriftReport(BaseModel):
    """PSI per measurement and wine type of the router's window of served rows."""

    enabled: bool = Field(description="False when drift monitoring is switched off or has no reference.")
    reference: str | None = Field(description="The model version whose training bins are the reference.")
    window_rows: int = Field(description="Most rows the window holds per wine type.")
    psi_threshold: float = Field(description="PSI above which the dashboard marks a feature as drifted.")
    updated_seconds_ago: float | None = Field(
        description="Age of the last aggregation; null before the first."
    )
    reason: str = Field("", description="Why drift is not monitored (present only then).")
    types: list[DriftType]


class ModelInfo(BaseModel):
    """One served model."""

    name: str = Field(description="Model name.", examples=["lightgbm"])
    framework: str | None = Field(description="Training framework; null until first loaded or probed.")
    version: str | None = Field(description="Model version; null until first loaded or probed.")
    placement: Literal["inline", "runner", "ensemble"] = Field(
        description="In the router's process, behind its own runner, or an ensemble of served models."
    )
    status: Literal["ready", "loading", "unavailable"] = Field(description="Whether it can answer now.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation figures from training.")
    serving: dict[str, Any] = Field(
        default_factory=dict, description="The serving path (`path`: onnx or framework) and why."
    )
    default: bool = Field(False, description="True for the current default model.")
    reason: str = Field("", description="Why it is not ready (present only then).")
    members: dict[str, float] | None = Field(
        None, description="An ensemble's members and their weights (present only for ensembles)."
    )
    on_member_down: Literal["fail", "renormalize"] | None = Field(
        None, description="An ensemble's answer when a member is down: 503, or blend the others."
    )


class ModelList(BaseModel):
    """Every served model and the current default."""

    default: str = Field(description="The current default model.", examples=["lightgbm"])
    models: list[ModelInfo]


class ShadowPolicy(BaseModel):
    """A shadow: a fraction of a model's traffic also scored by another model, after answering."""

    model_config = ConfigDict(extra="forbid")

    target: ModelName = Field(description="The shadow model.", examples=["catboost"])
    fraction: float = Field(1.0, ge=0, le=1, description="Share of the rows shadowed (sticky per wine).")


class ShadowStats(BaseModel):
    """One replica's figures of a shadow since it started."""

    model: str = Field(description="The served model.")
    shadow: str = Field(description="Its shadow.")
    rows: int = Field(description="Rows scored by the shadow.")
    grade_agreement: float | None = Field(description="Share of those rows where both grades agree.")
    mean_difference: float | None = Field(description="Mean of the shadow score minus the served score.")
    shed_calls: int = Field(description="Shadow calls dropped because too many were running.")
    failed_calls: int = Field(description="Shadow calls that failed.")


_SPLITS = "Canary splits: a served name -> {model: percent}, adding up to 100 (sticky per wine)."
_SPLITS_EXAMPLE = {"lightgbm": {"lightgbm": 90, "xgboost": 10}}
_SHADOWS = "Shadows: a served model -> its shadow and the fraction of its rows shadowed."
_SHADOWS_EXAMPLE = {"lightgbm": {"target": "catboost", "fraction": 0.1}}


class TrafficChange(_Request):
    """New canary splits and/or shadows; a section left out is kept as it is."""

    splits: dict[str, dict[str, float]] | None = Field(None, description=_SPLITS, examples=[_SPLITS_EXAMPLE])
    shadows: dict[str, ShadowPolicy] | None = Field(None, description=_SHADOWS, examples=[_SHADOWS_EXAMPLE])


class TrafficPolicies(BaseModel):
    """The canary splits and shadows in force."""

    splits: dict[str, dict[str, float]] = Field(description=_SPLITS, examples=[_SPLITS_EXAMPLE])
    shadows: dict[str, ShadowPolicy] = Field(description=_SHADOWS, examples=[_SHADOWS_EXAMPLE])
    shared: bool = Field(description="True when other replicas follow these policies (through Redis).")
    served_rows: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Rows this replica served per split name and model since it started (GET only).",
    )
    shadow_stats: list[ShadowStats] = Field(
        default_factory=list, description="This replica's shadow figures since it started (GET only)."
    )


class DefaultModelChange(BaseModel):
    """The outcome of a hot swap of the default model."""

    default: str = Field(description="The new default model.")
    previous: str = Field(description="The default model before the swap.")
    status: Literal["ready", "loading", "unavailable"] = Field(description="The new default's status.")
    shared: bool = Field(description="True when other replicas adopt it (through Redis).")


class FeatureInfo(BaseModel):
    """One input feature as the schema defines it."""

    name: str
    header: str = Field(description="Its column header in the UCI CSV files.")
    unit: str
    minimum: float
    maximum: float
    description: str
    kind: Literal["number", "category"]
    choices: list[str]
    example: float | str


class FeatureList(BaseModel):
    """The feature schema."""

    schema_version: str
    features: list[FeatureInfo]


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness of this router pod."""

    status: Literal["ready"]
    default_model: str
    default_model_status: Literal["ready", "loading", "unavailable"]
    version: str | None
    models_not_ready: list[str] = Field(description="Models that cannot answer now (their requests get 503).")
    cache: dict[str, Any] = Field(description="Cache backend and, with Redis, whether it answers.")


# ---- errors -----------------------------------------------------------------------------------


class FieldProblem(BaseModel):
    """What is wrong with one field."""

    field: str = Field(examples=["instances[3].ph"])
    problem: str = Field(examples=["must be between 2.5 and 4.5 pH, got 7"])


class ErrorBody(BaseModel):
    """Every error answer of the router and the runners."""

    error: str = Field(
        description="What went wrong, for people.", examples=["1 invalid field: features.ph: ..."]
    )
    code: str = Field(
        "",
        description="Stable machine-readable code (validation_error, unknown_model, too_many_requests, "
        "model_unavailable, ...).",
        examples=["validation_error"],
    )
    details: list[FieldProblem] = Field(
        default_factory=list, description="One entry per invalid field (always present; empty when none is)."
    )
