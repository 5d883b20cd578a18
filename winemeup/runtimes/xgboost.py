"""XGBoost runtime: a ``Booster`` (needs a DMatrix) or an ``XGBModel`` estimator."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import ModelRuntime


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
