"""scikit-learn runtime: random forest, extra trees, histogram gradient boosting, SVR pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import ModelRuntime


class SklearnRuntime(ModelRuntime):
    framework = "sklearn"

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
