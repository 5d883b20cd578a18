"""Tools the tests need from the system (redis-server, chromium, helm...): found, or the run says so.

Every test that cannot run because something is missing goes through :func:`unavailable`:
it skips on a developer machine and fails when ``CI=true``, so a broken install never turns
into a green run of skips. :func:`require_binary` and :func:`require_path` are its usual forms.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str) -> NoReturn:
    """Something the test needs is missing (``message`` says what and how to get it): skip the
    test on a developer machine, fail it when ``CI=true``."""
    if in_ci():
        pytest.fail(f"{message}; CI=true, so a missing tool fails the run", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, install_hint: str) -> str:
    """The path of executable ``name`` on PATH, or :func:`unavailable`."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({install_hint})")
    return path


def require_path(path: Path, install_hint: str) -> Path:
    """``path`` (a tool or file outside PATH, e.g. ``.tools/bin/helm``), or :func:`unavailable`."""
    if not path.exists():
        unavailable(f"{path} is missing ({install_hint})")
    return path
