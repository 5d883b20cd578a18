"""API-key checks: constant-time comparison against every configured key.

Keys arrive as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. The check compares
the presented key with *every* configured key using :func:`hmac.compare_digest` (no early
exit), so timing reveals neither which key matched nor how much of one did. Keys are never
logged.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable

from winemeup.errors import Forbidden, Unauthenticated


class Role(enum.IntEnum):
    """What a request may do."""

    NONE = 0
    USER = 1
    ADMIN = 2


class KeyRing:
    """The configured keys; ``role_of`` maps a presented key to a :class:`Role`."""

    def __init__(self, keys: Iterable[str], admin_keys: Iterable[str]):
        admin = [k.encode() for k in admin_keys if k]
        user = [k.encode() for k in keys if k]
        self._entries: list[tuple[bytes, Role]] = [(k, Role.ADMIN) for k in admin] + [
            (k, Role.USER) for k in user if k not in admin
        ]

    def role_of(self, presented: bytes | None) -> Role:
        """The role of a presented key (NONE when absent or unknown); constant-time per key."""
        if not presented:
            return Role.NONE
        role = Role.NONE
        for key, key_role in self._entries:
            if hmac.compare_digest(presented, key) and key_role > role:
                role = key_role
        return role

    def require(self, presented: bytes | None, admin: bool = False) -> Role:
        """The role of the key, or raise 401 (no valid key) / 403 (not an admin key)."""
        role = self.role_of(presented)
        if role is Role.NONE:
            if presented:
                raise Unauthenticated("the API key is not valid")
            raise Unauthenticated(
                "an API key is required: send 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
            )
        if admin and role is not Role.ADMIN:
            raise Forbidden("this route needs an admin API key")
        return role


def presented_key(x_api_key: bytes | None, authorization: bytes | None) -> bytes | None:
    """The key a request carries: ``X-API-Key`` first, else a Bearer ``Authorization``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip()
    return None
