"""checkov over every render of the chart, in one run: no failed check. Skips are named, with
reasons, in charts/winemeup/.checkov.yaml (or as checkov.io/skip annotations on a resource)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from chart_render import CHART, CHECKOV, INSTALL_HINT

from tests.support.binaries import require_path

pytestmark = pytest.mark.chart


def test_checkov_passes_on_every_render(render_dir: Path) -> None:
    require_path(CHECKOV, INSTALL_HINT)
    result = subprocess.run(
        [str(CHECKOV), "-d", str(render_dir), "--config-file", str(CHART / ".checkov.yaml"), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 100, summary
    assert summary["passed"] > 1000, summary
    assert result.returncode == 0, result.stderr[-2000:]
