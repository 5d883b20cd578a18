"""Fresh virtual environments built from one lock each, cached by the lock's hash.

Each environment holds exactly what an image installs from ``requirements/<lock>.lock``
(``--no-deps --require-hashes``, as the Dockerfiles do), on Python 3.11, the locks' version.
It is kept under ``$XDG_CACHE_HOME/winemeup/lock-envs/<lock>-<hash of the lock>/`` (default
``~/.cache``), outside the checkout, so that a later run, from this checkout or a fresh clone,
reuses it until the lock or the interpreter changes; older environments of the same lock are
removed. The environment points at the base interpreter, not at a checkout's venv.
Installing uses uv (the dev venv has it): the same wheels and files as pip, from a shared cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCKS = REPO_ROOT / "requirements"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "winemeup" / "lock-envs"
READY = ".ready"
"""Written last: an environment without it is half-built and is made again."""


class LockEnvError(RuntimeError):
    """An environment could not be built from its lock; the message carries the installer's output."""


def lock_hash(lock: Path) -> str:
    """Hash of the lock file and the interpreter version, what an environment depends on."""
    digest = hashlib.sha256(lock.read_bytes())
    digest.update(sys.version.split()[0].encode())
    return digest.hexdigest()[:12]


def uv_binary() -> Path | None:
    """The dev venv's uv (make venv installs it), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file():
        return beside
    found = shutil.which("uv")
    return Path(found) if found else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_env(name: str, python: str, uv: Path, lock: Path | None = None) -> tuple[Path, float]:
    """The environment of ``requirements/<name>.lock`` (or ``lock``): its directory, and the
    seconds spent building it now (0.0 when it came from the cache)."""
    lock = lock or LOCKS / f"{name}.lock"
    env_dir = CACHE / f"{name}-{lock_hash(lock)}"
    with _locked(CACHE / f".{name}.lock"):
        if (env_dir / READY).is_file():
            return env_dir, 0.0
        started = time.monotonic()
        shutil.rmtree(env_dir, ignore_errors=True)
        for stale in CACHE.iterdir():
            if stale.is_dir() and re.fullmatch(re.escape(name) + r"-[0-9a-f]{12}", stale.name):
                shutil.rmtree(stale, ignore_errors=True)
        commands = [
            [str(uv), "venv", "--quiet", "--python", python, str(env_dir)],
            [str(uv), "pip", "install", "--quiet", "--python", str(env_dir / "bin" / "python"),
             "--no-deps", "--require-hashes", "--compile-bytecode", "-r", str(lock)],
        ]  # fmt: skip
        for command in commands:
            env = {**os.environ, "VIRTUAL_ENV": ""}
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                shutil.rmtree(env_dir, ignore_errors=True)
                raise LockEnvError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        (env_dir / READY).write_text(lock.name + "\n")
        return env_dir, time.monotonic() - started
