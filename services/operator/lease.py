"""Leader election on a coordination.k8s.io Lease: the decision, as a pure function.

One replica leads; the others wait. A holder renews its Lease every pass; a Lease not renewed
for ``leaseDurationSeconds`` may be taken over. The API call that writes the decision carries
the Lease's resourceVersion, so two replicas taking over at once cannot both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Any


class LeaseAction(Enum):
    """What this replica does with the Lease now."""

    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take-over"
    WAIT = "wait"


def decide(spec: dict[str, Any] | None, me: str, now: datetime) -> LeaseAction:
    """The action for replica ``me`` given the Lease's spec (None: no Lease yet).

    ``spec`` uses the API's field names: holderIdentity, renewTime (datetime),
    leaseDurationSeconds.
    """
    if spec is None:
        return LeaseAction.CREATE
    holder = spec.get("holderIdentity")
    if holder == me:
        return LeaseAction.RENEW
    renewed = spec.get("renewTime")
    duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or 15))
    if not holder or renewed is None or renewed + duration < now:
        return LeaseAction.TAKE_OVER
    return LeaseAction.WAIT


def lease_spec(
    action: LeaseAction, old: dict[str, Any] | None, me: str, now: datetime, duration: int
) -> dict[str, Any]:
    """The Lease spec to write for ``action`` (not WAIT)."""
    spec = dict(old or {})
    spec.update({"holderIdentity": me, "renewTime": now, "leaseDurationSeconds": duration})
    if action is not LeaseAction.RENEW:
        spec["acquireTime"] = now
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
            0 if action is LeaseAction.CREATE else 1
        )
    return spec
