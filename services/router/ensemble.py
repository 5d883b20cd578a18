"""An ensemble served like any model: its members' scores blended with fixed weights.

:class:`EnsembleModel` is a :class:`~services.router.models.ServedModel`, so the registry, the
predictor (cache keys, single-flight) and every route treat it as one model. Its members are
other served models in any placement (inline or runner); a batch makes one call per member,
all members at once. Its version is derived from the versions its members answered with
(:meth:`~services.router.policies.Ensemble.version`), so a cached blend can never outlive a
member's version. ``on_member_down``: ``fail`` answers 503 when a member is down,
``renormalize`` blends the members that answered (and says so in its version).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from services.router.models import LOADING, READY, UNAVAILABLE, ServedModel
from services.router.policies import Ensemble, PolicyError
from winemeup.errors import ModelUnavailable

PLACEMENT = "ensemble"


class EnsembleModel(ServedModel):
    """A served model whose answer is the weighted mean of its members' scores."""

    placement = PLACEMENT

    def __init__(self, spec: Ensemble, members: list[ServedModel]):
        super().__init__(spec.name)
        self.spec = spec
        self.members = members
        self.framework = PLACEMENT

    # ``status`` and ``version`` follow the members: no state of its own to go stale.
    @property  # type: ignore[override]
    def status(self) -> str:
        statuses = [m.status for m in self.members]
        if all(s == READY for s in statuses) or (
            self.spec.on_member_down == "renormalize" and READY in statuses
        ):
            status = READY
        elif LOADING in statuses and UNAVAILABLE not in statuses:
            status = LOADING
        else:
            status = UNAVAILABLE
        self._ready_gauge.set(1 if status == READY else 0)
        return status

    @status.setter
    def status(self, value: str) -> None:
        pass

    @property  # type: ignore[override]
    def version(self) -> str | None:
        versions = {m.name: m.version for m in self.members if m.status == READY and m.version}
        if not versions or (self.spec.on_member_down == "fail" and len(versions) < len(self.members)):
            return None
        return self.spec.version(versions)  # type: ignore[arg-type]

    @version.setter
    def version(self, value: str | None) -> None:
        pass

    @property  # type: ignore[override]
    def reason(self) -> str:
        down = [f"{m.name}: {m.reason or m.status}" for m in self.members if m.status != READY]
        return "; ".join(down)

    @reason.setter
    def reason(self, value: str) -> None:
        pass

    def _outcome(self, results: list[Any]) -> dict[str, Any]:
        """The members' results that succeeded; ModelUnavailable when the blend cannot be made."""
        ok: dict[str, Any] = {}
        down: list[str] = []
        for member, result in zip(self.members, results, strict=True):
            if isinstance(result, ModelUnavailable):
                down.append(f"member {member.name} ({result.reason})")
            elif isinstance(result, BaseException):
                raise result
            else:
                ok[member.name] = result
        if down and (self.spec.on_member_down == "fail" or not ok):
            raise ModelUnavailable(self.name, "; ".join(down))
        return ok

    async def ensure_ready(self) -> str:
        results = await asyncio.gather(*(m.ensure_ready() for m in self.members), return_exceptions=True)
        return self.spec.version(self._outcome(list(results)))

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        results = await asyncio.gather(*(m.predict(matrix) for m in self.members), return_exceptions=True)
        answered = self._outcome(list(results))
        try:
            blend = self.spec.blend({name: scores for name, (scores, _) in answered.items()})
        except PolicyError as e:  # every member down
            raise ModelUnavailable(self.name, e.problem) from e
        return blend, self.spec.version({name: version for name, (_, version) in answered.items()})

    async def warm(self) -> None:
        await asyncio.gather(*(m.warm() for m in self.members))

    def describe(self) -> dict[str, Any]:
        entry = super().describe()
        entry["members"] = dict(self.spec.members)
        entry["on_member_down"] = self.spec.on_member_down
        if self.spec.description:
            entry["description"] = self.spec.description
        return entry


def build_ensembles(specs: list[Any], models: list[ServedModel]) -> list[EnsembleModel]:
    """Ensembles from their settings documents (``{"name", "members", "on_member_down"}``).

    Raises :class:`~services.router.policies.PolicyError` naming ``ensembles[i].<field>``.
    """
    by_name: dict[str, ServedModel] = {m.name: m for m in models}
    built: list[EnsembleModel] = []
    for i, doc in enumerate(specs):
        try:
            spec = Ensemble.from_dict(doc)
            spec.validate([*by_name])
        except PolicyError as e:
            raise PolicyError(f"ensembles[{i}].{e.field}", e.problem) from e
        model = EnsembleModel(spec, [by_name[m] for m in spec.members])
        by_name[spec.name] = model
        built.append(model)
    return built
