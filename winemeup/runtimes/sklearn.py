"""scikit-learn runtime: random forest, extra trees, histogram gradient boosting, SVR pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import TREE_SHAP, ExplainUnavailable, Explanation, ModelInfo, ModelRuntime
from winemeup.runtimes.explain import baseline_shapley


class SklearnRuntime(ModelRuntime):
    framework = "sklearn"

    def __init__(self, model: Any, info: ModelInfo, batch_threads: int = 1):
        super().__init__(model, info, batch_threads)
        self._explainer: Any = None  # shap.TreeExplainer, built on the first explanation

    @classmethod
    def _load_model(cls, stored: Any) -> Any:
        import bentoml

        model = bentoml.sklearn.load_model(stored)
        # Forests fan predict out over joblib workers; for request-sized batches a single
        # thread is faster and leaves the other core to the server.
        if hasattr(model, "n_jobs"):
            model.n_jobs = 1
        return model

    def _predict(self, rows: np.ndarray) -> Any:
        return self.model.predict(rows)

    def _explain(self, rows: np.ndarray) -> Explanation:
        steps = getattr(self.model, "named_steps", None)
        if steps is not None and "scale" in steps:
            # The scaled SVR: model-agnostic, against the mean training row.
            return baseline_shapley(self.predict, rows, np.asarray(steps["scale"].mean_, dtype=np.float64))
        explainer = self._tree_explainer()
        contributions = np.asarray(explainer.shap_values(rows, check_additivity=False), dtype=np.float64)
        base = np.full(rows.shape[0], float(np.asarray(explainer.expected_value).reshape(-1)[0]))
        return Explanation(TREE_SHAP, base, contributions, self.predict(rows))

    def _tree_explainer(self) -> Any:
        if self._explainer is None:
            try:
                import shap
            except ImportError as e:
                raise ExplainUnavailable(
                    f"model {self.info.name}: TreeSHAP for scikit-learn trees needs the shap package ({e})"
                ) from e
            self._explainer = shap.TreeExplainer(self.model)
        return self._explainer
