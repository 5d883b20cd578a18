"""LightGBM runtime: the model store gives back a ``lightgbm.Booster``."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import TREE_SHAP, Explanation, ModelRuntime


class LightGBMRuntime(ModelRuntime):
    framework = "lightgbm"

    @classmethod
    def _load_model(cls, stored: Any) -> Any:
        import bentoml

        return bentoml.lightgbm.load_model(stored)

    def _predict(self, rows: np.ndarray) -> Any:
        # Single-threaded predict is faster than OpenMP start-up for a request's few rows.
        return self.model.predict(rows, num_threads=self.threads_for(rows.shape[0]))

    def _explain(self, rows: np.ndarray) -> Explanation:
        # TreeSHAP in LightGBM itself: one column per feature, then the expected value.
        out = np.asarray(self.model.predict(rows, pred_contrib=True, num_threads=1), dtype=np.float64)
        return Explanation(TREE_SHAP, out[:, -1].copy(), out[:, :-1].copy(), self.predict(rows))
