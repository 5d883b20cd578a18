"""Run in a subprocess by test_training_store.py: save all seven families, load them back.

Usage: python roundtrip_script.py BENTOML_HOME DATA_DIR OTHER_HOME. Prints one JSON object.
BentoML fixes its home when first used, hence a process of its own with a fresh home.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.store import ModelStoreError, save_model, use_model_store, verify_round_trip

use_model_store(Path(sys.argv[1]))

import numpy as np  # noqa: E402

from training.data import load_wine_data  # noqa: E402
from training.models import default_params, fit, predict  # noqa: E402
from winemeup.runtimes import MODEL_NAMES, load_runtime  # noqa: E402

data = load_wine_data(Path(sys.argv[2])).sample(per_type=120, seed=5)
report: dict[str, object] = {}
for name in MODEL_NAMES:
    model = fit(name, default_params(name, fast=True, seed=0, n_jobs=1), data.X, data.y)
    before = predict(model, data.X)
    tag = save_model(
        name,
        model,
        labels={"dataset": "0123456789ab"},
        metadata={"metrics": {"cv": {"overall": {"rmse": 0.5}}}, "feature_order": ["a"]},
    )
    runtime = load_runtime(name)
    after = runtime.predict(data.X)
    verify_round_trip(tag, data.X, before)
    try:
        verify_round_trip(tag, data.X, before + 1e-9)
        caught = ""
    except ModelStoreError as e:
        caught = str(e)
    report[name] = {
        "tag": tag,
        "equal": bool(np.array_equal(before, after)),
        "max_diff": float(np.max(np.abs(before - after))),
        "labels": runtime.info.labels,
        "runtime": type(runtime).__name__,
        "metrics": runtime.info.metrics,
        "mismatch_error": caught,
    }
try:
    use_model_store(Path(sys.argv[3]))
    report["switch_error"] = ""
except ModelStoreError as e:
    report["switch_error"] = str(e)
print(json.dumps(report))
