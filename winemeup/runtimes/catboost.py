"""CatBoost runtime: a ``CatBoostRegressor``; a plain ``CatBoost`` may answer (n, 1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import TREE_SHAP, Explanation, ModelRuntime


class CatBoostRuntime(ModelRuntime):
    framework = "catboost"

    @classmethod
    def _load_model(cls, stored: Any) -> Any:
        import bentoml

        return bentoml.catboost.load_model(stored)

    def _predict(self, rows: np.ndarray) -> Any:
        # The base class flattens the (n, 1) shape a plain CatBoost model can return.
        return self.model.predict(rows, thread_count=self.threads_for(rows.shape[0]))

    def _explain(self, rows: np.ndarray) -> Explanation:
        from catboost import Pool

        # CatBoost's ShapValues: one column per feature, then the expected value.
        out = np.asarray(
            self.model.get_feature_importance(data=Pool(rows), type="ShapValues", thread_count=1),
            dtype=np.float64,
        )
        return Explanation(TREE_SHAP, out[:, -1].copy(), out[:, :-1].copy(), self.predict(rows))
