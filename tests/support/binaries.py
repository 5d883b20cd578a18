"""Tools the tests need from the system (redis-server, chromium, helm...): found, or the run says so."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_binary(name: str, install_hint: str) -> str:
    """The path of executable ``name``. Missing, it skips the test on a developer machine but
    fails it when ``CI=true``: a broken install must not turn into a green run of skips."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed ({install_hint})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so a missing tool fails the run", pytrace=False)
    pytest.skip(message)
