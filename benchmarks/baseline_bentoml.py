"""Baseline 2: a BentoML service calling the LightGBM runner through ``bentoml.depends(url=...)``.

This is BentoML 1.4's own way of composing services. The gateway validates the features with
the same schema as the router and forwards each request as a one-row call to the runner.
Passing the runner's class as well as its URL gives the client the runner's
``runner_connection`` settings: without them the client recycles its session every 100
requests and drops the calls in flight (HTTP 500 under concurrency).

Run: ``bentoml serve benchmarks.baseline_bentoml:DependsGateway --port 8200`` with
``WINEMEUP_BASELINE_RUNNER_URL`` pointing at a runner and ``WINEMEUP_RUNNER_MODEL=lightgbm``
(importing the runner's class reads its settings; it does not load a model).
"""

from __future__ import annotations

from typing import Any

import bentoml

from benchmarks.settings import BaselineSettings
from services.runner.service import ModelRunner
from winemeup.schema import SCHEMA, quality_grade

settings = BaselineSettings()


@bentoml.service(name="baseline-depends-gateway", workers=1, traffic={"timeout": 10})
class DependsGateway:
    runner = bentoml.depends(on=ModelRunner, url=settings.runner_url)

    @bentoml.api
    async def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        row = SCHEMA.validate(features)
        answer = await self.runner.to_async.predict(rows=[row])
        score = float(answer.scores[0])
        return {"score": score, "quality": quality_grade(score), "cached": False}
