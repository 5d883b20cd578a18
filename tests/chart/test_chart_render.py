"""`helm lint --strict` and rendering with every values file; the schema and render-time checks."""

from __future__ import annotations

import subprocess

import pytest
from chart_render import CHART, VALUES_FILES, helm_template, install_notes, parse, tool

pytestmark = pytest.mark.chart


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_helm_lint_strict(name: str) -> None:
    path = VALUES_FILES[name]
    result = subprocess.run(
        [str(tool("helm")), "lint", "--strict", str(CHART), *(["-f", str(path)] if path else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_values_file_renders(renders) -> None:
    assert set(renders) == set(VALUES_FILES)
    for render in renders.values():
        kinds = {d["kind"] for d in render.docs}
        assert {"Deployment", "Service", "ConfigMap"} <= kinds, render.name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "models.gpt.enabled=true"], "additional properties 'gpt' not allowed"),
        (["--set", "models.svr.placement=gpu"], "placement"),
        (["--set", "containerSecurityContext.allowPrivilegeEscalation=true"], "allowPrivilegeEscalation"),
        (["--set", "podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["--set", "router.unknownKey=1"], "unknownKey"),
        (["--set", "redis.external.url=http://nope"], "url"),
        (
            ["--set", "models.lightgbm.enabled=false"],
            'router.defaultModel "lightgbm" is not an enabled model',
        ),
    ],
)
def test_bad_values_are_refused_with_a_reason(args: list[str], message: str) -> None:
    with pytest.raises(AssertionError) as refused:
        helm_template(*args)
    assert message in str(refused.value)


def test_names_stay_within_63_characters_and_distinct_with_a_long_release_name() -> None:
    release = "w" * 53  # the longest release name helm accepts
    docs = parse(helm_template(release=release))
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert all(len(name) <= 63 for _, name in names), [n for _, n in names if len(n) > 63]
    assert len(set(names)) == len(names), "two resources truncated to the same name"
    runners = {n for k, n in names if k == "Deployment" and "-runner-" in n}
    assert len(runners) == 7


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_install_dry_run_renders_hooks_and_notes(name: str) -> None:
    """`helm install --dry-run=client` (no cluster): hooks, NOTES.txt and all templates render."""
    path = VALUES_FILES[name]
    notes = install_notes(*(["-f", str(path)] if path else []))
    assert "helm test wm -n winemeup" in notes
    assert "/v1/predict" in notes and "kubectl -n winemeup get secret" in notes
