"""Kubernetes-style conditions (type, status, reason, message, lastTransitionTime)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition; ``status`` is "True", "False" or "Unknown"."""

    type: str
    status: str
    reason: str
    message: str

    def as_dict(self, now: str, generation: int, previous: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The condition as the status stores it; the transition time moves only when the status does."""
        since = now
        for old in previous or []:
            if old.get("type") == self.type and old.get("status") == self.status:
                since = old.get("lastTransitionTime") or now
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message[:4096],
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }


def true(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "True", reason, message)


def false(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "False", reason, message)


def unknown(type_: str, reason: str, message: str) -> Condition:
    return Condition(type_, "Unknown", reason, message)
