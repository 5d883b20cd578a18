"""LightGBM runtime: the model store gives back a ``lightgbm.Booster``."""

from __future__ import annotations

from typing import Any

import numpy as np

from winemeup.runtimes.base import ModelRuntime


class LightGBMRuntime(ModelRuntime):
    framework = "lightgbm"

    @classmethod
    def _load_model(cls, stored: Any) -> Any:
        import bentoml

        return bentoml.lightgbm.load_model(stored)

    def _predict(self, rows: np.ndarray) -> Any:
        # Single-threaded predict is faster than OpenMP start-up for a request's few rows.
        return self.model.predict(rows, num_threads=self.threads_for(rows.shape[0]))
