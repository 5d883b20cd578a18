"""Baseline 2: a BentoML service calling the LightGBM runner through ``bentoml.depends(url=...)``.

This is BentoML 1.4's own way of composing services. The gateway validates nothing beyond
BentoML's typing and forwards each request as a one-row call to the runner.

Run: ``bentoml serve benchmarks.baseline_bentoml:DependsGateway --port 8200`` with
``WINEMEUP_BASELINE_RUNNER_URL`` pointing at a runner.
"""

from __future__ import annotations

from typing import Any

import bentoml

from benchmarks.settings import BaselineSettings
from winemeup.schema import SCHEMA, quality_grade

settings = BaselineSettings()


@bentoml.service(name="baseline-depends-gateway", workers=1, traffic={"timeout": 10})
class DependsGateway:
    runner = bentoml.depends(url=settings.runner_url)

    @bentoml.api
    async def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        row = SCHEMA.validate(features)
        answer = await self.runner.to_async.predict(rows=[row])
        score = float(answer["scores"][0])
        return {"score": score, "quality": quality_grade(score), "cached": False}
