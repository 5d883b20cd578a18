"""Baseline 1: the original design this project grew from.

A plain FastAPI app with the LightGBM model loaded in-process, pydantic validation of the
request body and a Redis cache keyed by the SHA-256 of the request's JSON. Written the way
that design is usually written (async endpoints, redis.asyncio, one uvicorn worker), without
handicaps: numpy rows, not DataFrames, and the same Booster the router uses.

Run: ``uvicorn benchmarks.baseline_fastapi:app --port 8100``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel, Field, create_model

from benchmarks.settings import BaselineSettings
from winemeup.runtimes import load_runtime
from winemeup.schema import SCHEMA, quality_grade

settings = BaselineSettings()
# The seed design: the framework's own predict in-process (never the ONNX artifact).
runtime = load_runtime(settings.model, batch_threads=settings.batch_threads, path="framework")
cache = aioredis.Redis.from_url(settings.redis_url)

_fields: dict[str, Any] = {
    f.name: (Literal["red", "white"], ...)
    if f.kind == "category"
    else (float, Field(ge=f.minimum, le=f.maximum))
    for f in SCHEMA.features
}
WineFeatures = create_model("WineFeatures", **_fields)  # type: ignore[call-overload]


class BatchRequest(BaseModel):
    instances: list[WineFeatures]  # type: ignore[valid-type]


app = FastAPI(title="baseline: FastAPI + LightGBM + Redis")


def _row(features: BaseModel) -> list[float]:
    return SCHEMA.encode(features.model_dump())


@app.post("/predict")
async def predict(features: WineFeatures) -> dict[str, Any]:  # type: ignore[valid-type]
    key = "baseline:" + hashlib.sha256(features.model_dump_json().encode()).hexdigest()
    cached = await cache.get(key)
    if cached is not None:
        score = float(cached)
        return {"score": score, "quality": quality_grade(score), "cached": True}
    score = float(runtime.predict(np.array([_row(features)]))[0])
    await cache.set(key, score, ex=3600)
    return {"score": score, "quality": quality_grade(score), "cached": False}


@app.post("/predict/batch")
async def predict_batch(body: BatchRequest) -> dict[str, Any]:
    scores = runtime.predict(np.array([_row(f) for f in body.instances]))
    return {"predictions": [{"score": float(s), "quality": quality_grade(float(s))} for s in scores]}
