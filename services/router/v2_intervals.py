"""Prediction intervals on the Open Inference Protocol: two extra outputs of ``/v2/.../infer``.

A request asks with the parameter ``interval`` (0.8 or 0.9, the levels training calibrates),
or by naming the outputs ``interval_low`` / ``interval_high`` (then at 0.9). The bounds come
from the served version's calibration, exactly as ``"interval"`` on ``/v1/predict``; a model
stored without calibration answers 409 naming it, an uncalibrated level 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import numpy as np

from services.router.oip import InferRequest, ProtocolError
from services.router.v2 import ExtraOutputs, InferContext

OUTPUTS = ("interval_low", "interval_high")
DEFAULT_LEVEL = 0.9

IntervalsOf = Callable[[InferContext, float], Awaitable[tuple[np.ndarray, np.ndarray]]]
"""``(context, level) -> (low, high)``: the router's calibrated intervals, each row's from the
model that served it."""


def requested_level(request: InferRequest) -> float:
    """The level a request asks for (its ``interval`` parameter, else 0.9)."""
    value = request.parameters.get("interval", DEFAULT_LEVEL)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            f"parameter 'interval' must be a coverage level such as 0.8 or 0.9, got {value!r}"
        )
    return float(value)


def interval_outputs(intervals_of: IntervalsOf) -> ExtraOutputs:
    """The extra outputs ``interval_low`` and ``interval_high`` (FP64, one per row)."""

    async def compute(context: InferContext) -> Mapping[str, tuple[str, np.ndarray]]:
        level = requested_level(context.request)
        low, high = await intervals_of(context, level)
        return {"interval_low": ("FP64", np.asarray(low)), "interval_high": ("FP64", np.asarray(high))}

    return ExtraOutputs(
        names=OUTPUTS,
        compute=compute,
        wanted=lambda request: request.parameters.get("interval") is not None,
        metadata=[
            {
                "name": name,
                "datatype": "FP64",
                "shape": [-1],
                "parameters": {"asked_by": "parameter interval"},
            }
            for name in OUTPUTS
        ],
    )
