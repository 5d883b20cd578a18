"""Helpers of the training tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def head_lines(path: Path, rows: int) -> str:
    """The header and the first ``rows`` data lines of a CSV file."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[: rows + 1])


@dataclass
class ArchiveServer:
    """A real HTTP server on 127.0.0.1 serving files from a folder; counts the requests."""

    root: Path
    port: int
    requests: list[str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def build_archive(path: Path, members: dict[str, bytes]) -> Path:
    """Write a zip archive shaped like UCI's (``winequality/`` folder inside is tolerated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    path.write_bytes(buffer.getvalue())
    return path


def run_module(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 240.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training ...`` (or ``python -c``) from the repository root."""
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
