"""Write a copy of charts/winemeup whose ci/*-values.yaml carry the kind overrides.

    python .github/scripts/ct_kind_values.py --tag TAG --out DIR     (writes DIR/winemeup)

`ct install` installs a chart once per ci/*-values.yaml and takes no per-file extra values, so
the files it installs are written here: each original file with `common`, then its own entry
under `files`, of .github/ct/kind-overrides.yaml merged over it. tests/ci checks that every
result renders against values.schema.json and names only this commit's local images.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "winemeup"
OVERRIDES = REPO / ".github" / "ct" / "kind-overrides.yaml"
PLACEHOLDER = "@IMAGE_TAG@"


def merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return override


def _with_tag(value: Any, tag: str) -> Any:
    if isinstance(value, dict):
        return {key: _with_tag(item, tag) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_tag(item, tag) for item in value]
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, tag)
    return value


def excluded(overrides: Path = OVERRIDES) -> dict[str, str]:
    """The ci files ct install leaves out, each with the reason."""
    return dict(yaml.safe_load(overrides.read_text()).get("excluded") or {})


def kind_values(tag: str, chart: Path = CHART, overrides: Path = OVERRIDES) -> dict[str, dict[str, Any]]:
    """Each ci/*-values.yaml file name mapped to its values with the kind overrides merged in
    (the files under ``excluded`` left out)."""
    spec = yaml.safe_load(overrides.read_text())
    files = sorted((chart / "ci").glob("*-values.yaml"))
    unknown = (set(spec.get("files") or {}) | set(spec.get("excluded") or {})) - {f.name for f in files}
    if unknown:
        raise SystemExit(f"{overrides} names ci files that do not exist: {sorted(unknown)}")
    result: dict[str, dict[str, Any]] = {}
    for path in files:
        if path.name in (spec.get("excluded") or {}):
            print(f"ct install leaves out {path.name}: {spec['excluded'][path.name]}", file=sys.stderr)
            continue
        values = yaml.safe_load(path.read_text()) or {}
        values = merge(values, spec.get("common") or {})
        values = merge(values, (spec.get("files") or {}).get(path.name) or {})
        result[path.name] = _with_tag(values, tag)
    return result


def write_chart(tag: str, out: Path, chart: Path = CHART, overrides: Path = OVERRIDES) -> Path:
    """Copy the chart to ``out/<chart name>`` with the merged ci files; return that directory."""
    values = kind_values(tag, chart, overrides)
    target = out / chart.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(chart, target, ignore=shutil.ignore_patterns("ci"))
    (target / "ci").mkdir()
    for name, merged in values.items():
        header = f"# charts/winemeup/ci/{name} with .github/ct/kind-overrides.yaml merged in.\n"
        (target / "ci" / name).write_text(header + yaml.safe_dump(merged, sort_keys=False))
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="tag of the images make images built")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the chart copy into")
    args = parser.parse_args(argv)
    if not args.tag.strip():
        parser.error("--tag is empty")
    print(write_chart(args.tag, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
