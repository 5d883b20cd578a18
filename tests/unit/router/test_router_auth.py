"""API keys: roles, header forms, 401 versus 403."""

from __future__ import annotations

import pytest

from services.router.auth import KeyRing, Role, presented_key
from winemeup.errors import Forbidden, Unauthenticated

RING = KeyRing(["user-1", "user-2"], ["admin-1"])


@pytest.mark.parametrize(
    ("key", "role"),
    [
        (b"user-1", Role.USER),
        (b"user-2", Role.USER),
        (b"admin-1", Role.ADMIN),
        (b"user-", Role.NONE),
        (b"user-10", Role.NONE),
        (b"", Role.NONE),
        (None, Role.NONE),
    ],
)
def test_role_of(key: bytes | None, role: Role) -> None:
    assert RING.role_of(key) is role


def test_admin_key_listed_as_user_key_stays_admin() -> None:
    ring = KeyRing(["both"], ["both"])
    assert ring.role_of(b"both") is Role.ADMIN


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "expected"),
    [
        (b"abc", None, b"abc"),
        (None, b"Bearer abc", b"abc"),
        (None, b"bearer   abc ", b"abc"),
        (b"xyz", b"Bearer abc", b"xyz"),
        (None, b"Basic abc", None),
        (None, b"Bearer ", None),
        (None, None, None),
    ],
)
def test_presented_key(x_api_key: bytes | None, authorization: bytes | None, expected: bytes | None) -> None:
    assert presented_key(x_api_key, authorization) == expected


def test_require() -> None:
    assert RING.require(b"user-1") is Role.USER
    assert RING.require(b"admin-1", admin=True) is Role.ADMIN
    with pytest.raises(Unauthenticated, match="required"):
        RING.require(None)
    with pytest.raises(Unauthenticated, match="not valid"):
        RING.require(b"wrong")
    with pytest.raises(Forbidden):
        RING.require(b"user-1", admin=True)


def test_errors_never_echo_the_key() -> None:
    with pytest.raises(Unauthenticated) as info:
        RING.require(b"secret-guess")
    assert "secret-guess" not in str(info.value.body())
