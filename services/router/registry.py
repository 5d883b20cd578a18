"""The model registry: which models this router serves, their versions, the default and policies.

MLServer keeps its model registry apart from its REST and gRPC apps; so does the router. The
HTTP adapter asks the registry for a model by name and the registry answers with a
:class:`~services.router.models.ServedModel`. It knows nothing of HTTP, Redis or cache keys:
the default model is shared between replicas through a
:class:`~services.router.shared_state.SharedRecords` (Redis in production, memory otherwise).

The shared default record is ``{"model", "configured"}``: a record made over another
configured default is ignored, so a deploy that changes ``default_model`` is not overridden
by an older swap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from services.router import metrics
from services.router.models import READY, ServedModel
from services.router.shared_state import Record, SharedRecords
from winemeup.errors import NotReady, UnknownModel
from winemeup.schema import FieldError

logger = logging.getLogger(__name__)

DEFAULT_RECORD = "default-model"
"""Name of the shared record of the hot-swapped default model."""


class TrafficPolicy(Protocol):
    """How a served name resolves to a model per request (a canary split, a shadow).

    A policy is registered under a served name with :meth:`ModelRegistry.set_policy`; without
    one, a name resolves to the model of that name.
    """

    def members(self) -> Iterable[str]:
        """The model names this policy may route to (each must be registered)."""
        ...


@dataclass(frozen=True, slots=True)
class DefaultSwap:
    """The outcome of changing the default model."""

    model: ServedModel
    previous: str
    shared: bool
    """True when other replicas will adopt it (the shared record was written)."""


class ModelRegistry:
    """Models by name, the current default model and the traffic policies of served names."""

    def __init__(
        self,
        models: Iterable[ServedModel],
        configured_default: str,
        shared: SharedRecords,
    ):
        self._models: dict[str, ServedModel] = {m.name: m for m in models}
        if configured_default not in self._models:
            raise ValueError(f"default model {configured_default!r} is not among {', '.join(self._models)}")
        self.configured_default = configured_default
        self.default = configured_default
        self.shared = shared
        self.policies: dict[str, TrafficPolicy] = {}
        self._background: set[asyncio.Future[Any]] = set()

    # ---- lookup -----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Served model names, in configuration order."""
        return list(self._models)

    def models(self) -> list[ServedModel]:
        """Every served model, in configuration order."""
        return list(self._models.values())

    def get(self, name: str) -> ServedModel | None:
        """The model served under ``name``, or None."""
        return self._models.get(name)

    def resolve(self, name: str | None) -> ServedModel:
        """The model a request naming ``name`` (None: the default) is served by; UnknownModel."""
        model = self._models.get(name or self.default)
        if model is None:
            raise UnknownModel(
                f"unknown model '{name}'; this router serves {', '.join(self._models)}",
                [FieldError("model", f"unknown model '{name}'")],
            )
        return model

    def describe(self) -> list[dict[str, Any]]:
        """Each model's entry of the model list, with ``default`` marking the default."""
        entries = []
        for model in self._models.values():
            entry = model.describe()
            entry["default"] = model.name == self.default
            entries.append(entry)
        return entries

    def set_policy(self, name: str, policy: TrafficPolicy | None) -> None:
        """Route ``name`` through ``policy`` (None removes it); every member must be served."""
        if policy is None:
            self.policies.pop(name, None)
            return
        unknown = [m for m in policy.members() if m not in self._models]
        if unknown:
            raise UnknownModel(f"the policy for '{name}' names unknown models: {', '.join(unknown)}")
        self.policies[name] = policy

    # ---- readiness --------------------------------------------------------------------------

    def default_ready(self) -> ServedModel:
        """The default model when this pod can serve it; NotReady while it loads in this pod.

        A runner is shared by every router pod: when it is down, its model answers 503, but
        the pod stays ready so that the other models and cached answers keep working.
        """
        model = self._models[self.default]
        if model.in_process and model.status != READY:
            self._spawn(model.warm())
            raise NotReady(
                f"default model '{model.name}' is {model.status}: {model.reason or 'not loaded yet'}"
            )
        return model

    def not_ready(self) -> list[str]:
        """Names of the models that cannot answer now."""
        return sorted(m.name for m in self._models.values() if m.status != READY)

    # ---- the default model ------------------------------------------------------------------

    def _apply_default(self, name: str, why: str) -> None:
        if name == self.default:
            return
        previous, self.default = self.default, name
        metrics.set_default_model(name, self.names)
        logger.info("default model %s -> %s (%s)", previous, name, why)
        self._spawn(self._models[name].warm())

    async def set_default(self, name: str) -> DefaultSwap:
        """Make ``name`` the default here at once, and for other replicas through the shared record."""
        model = self.resolve(name)
        previous = self.default
        self._apply_default(model.name, "admin request")
        record = {"model": model.name, "configured": self.configured_default}
        shared = self.shared.shared and await self.shared.write(DEFAULT_RECORD, record)
        return DefaultSwap(model, previous, shared)

    def adopt_default(self, record: Record) -> None:
        """Adopt the default model another replica swapped to, if it was swapped from our config."""
        name, configured = record.get("model"), record.get("configured")
        if configured == self.configured_default and isinstance(name, str) and name in self._models:
            self._apply_default(name, "swapped on another replica")

    async def sync_default(self) -> None:
        """Read the shared default record once and adopt it (the poller does this periodically)."""
        record = await self.shared.read(DEFAULT_RECORD)
        if record is not None:
            self.adopt_default(record)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, warm_all: bool = False) -> None:
        """Start the models' background work, warm the default (or all).

        The shared default record is followed by the one poller of shared records
        (:class:`~services.router.shared_state.RecordPoller`) through :meth:`adopt_default`.
        """
        for model in self._models.values():
            await model.start()
        metrics.set_default_model(self.default, self.names)
        self._spawn(self._warm(warm_all))

    async def _warm(self, warm_all: bool) -> None:
        await self._models[self.default].warm()
        if warm_all:
            for model in self._models.values():
                await model.warm()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop background work and the models' probes; release the shared store."""
        for task in list(self._background):
            task.cancel()
        for model in self._models.values():
            await model.close()
        await self.shared.close()
