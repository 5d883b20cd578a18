"""XGBoost runtime: a ``Booster`` (needs a DMatrix) or an ``XGBModel`` estimator."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import TREE_SHAP, Explanation, ModelRuntime


class XGBoostRuntime(ModelRuntime):
    framework = "xgboost"

    @classmethod
    def _load_model(cls, stored: Any) -> Any:
        import bentoml

        model = bentoml.xgboost.load_model(stored)
        if hasattr(model, "get_booster"):
            model = model.get_booster()
        model.set_param({"nthread": 1})
        return model

    def _predict(self, rows: np.ndarray) -> Any:
        # inplace_predict skips building a DMatrix: much cheaper for small batches.
        return self.model.inplace_predict(rows)

    def _explain(self, rows: np.ndarray) -> Explanation:
        import xgboost

        # TreeSHAP in XGBoost itself: one column per feature, then the bias (expected value).
        out = np.asarray(self.model.predict(xgboost.DMatrix(rows), pred_contribs=True), dtype=np.float64)
        return Explanation(TREE_SHAP, out[:, -1].copy(), out[:, :-1].copy(), self.predict(rows))
