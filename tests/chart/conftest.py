"""Fixtures of the chart checks: the chart rendered once per values file (session scope)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_render import VALUES_FILES, Render, helm_template, parse


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    """The chart rendered with its defaults and with each values file under ci/, once."""
    out: dict[str, Render] = {}
    for name, path in VALUES_FILES.items():
        text = helm_template(*(["-f", str(path)] if path else []))
        out[name] = Render(name, path, text, parse(text))
    return out


@pytest.fixture(scope="session")
def render_dir(renders: dict[str, Render], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each render written to <dir>/<name>.yaml (for tools that read files)."""
    directory = tmp_path_factory.mktemp("renders")
    for name, render in renders.items():
        (directory / f"{name}.yaml").write_text(render.text)
    return directory
