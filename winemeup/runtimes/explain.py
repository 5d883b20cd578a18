"""Explanation methods that work on any model: baseline Shapley values.

For the tree models the framework's own TreeSHAP is exact and cheap (see each runtime's
``_explain``). The RBF SVR has no such structure, so it is explained model-agnostically:
exact Shapley values of the game ``v(S) = f(x_S, b_rest)``, where ``b`` is one reference wine
(the mean training row). All 2^12 = 4,096 coalitions are scored in one batch per row, so the
values are exact, ``f(b) + sum(contributions) == f(x)`` holds to rounding, and the cost is
4,096 model evaluations per explained row.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from winemeup.runtimes.base import Explanation

BASELINE_SHAPLEY = (
    "baseline Shapley values: exact Shapley values of f(x_S, reference_rest) over all 4,096 feature "
    "coalitions, against one reference wine (the mean training row); base is the reference's score"
)

MODEL_AGNOSTIC = frozenset({"svr"})
"""Model families explained by baseline Shapley values rather than their framework's TreeSHAP."""


def _coalitions(width: int) -> tuple[np.ndarray, np.ndarray]:
    masks = np.arange(2**width, dtype=np.int64)
    bits = ((masks[:, None] >> np.arange(width)) & 1).astype(bool)
    return masks, bits


def baseline_shapley(
    predict: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, baseline: np.ndarray
) -> Explanation:
    """Exact Shapley values of each row against ``baseline`` (see the module docstring)."""
    n, width = rows.shape
    masks, bits = _coalitions(width)
    size = bits.sum(axis=1)
    weight = np.array(
        [math.factorial(s) * math.factorial(width - s - 1) / math.factorial(width) for s in range(width)]
    )
    contributions = np.empty((n, width))
    base = np.empty(n)
    scores = np.empty(n)
    for r in range(n):
        games = np.where(bits, rows[r], baseline)
        value = np.asarray(predict(games), dtype=np.float64).reshape(-1)
        for i in range(width):
            without = masks[~bits[:, i]]
            contributions[r, i] = float(
                np.sum(weight[size[without]] * (value[without | (1 << i)] - value[without]))
            )
        base[r] = value[0]
        scores[r] = value[-1]
    return Explanation(BASELINE_SHAPLEY, base, contributions, scores)
