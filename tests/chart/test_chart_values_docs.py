"""Every values key is commented and described by values.schema.json."""

from __future__ import annotations

import json
import re

import pytest
from chart_render import CHART

pytestmark = pytest.mark.chart

# Kubernetes objects passed through as they are: their fields are documented by Kubernetes.
NATIVE = {
    "resources",
    "podSecurityContext",
    "containerSecurityContext",
    "behavior",
    "namespaceSelector",
    "podSelector",
    "seccompProfile",
    "capabilities",
    "requests",
    "limits",
    "scaleUp",
    "scaleDown",
    "matchLabels",
    "lifecycle",
}


def _keys() -> list[tuple[int, str, bool]]:
    """(line number, dotted key, has a comment right above) of every values key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    out, stack = [], []
    for number, line in enumerate(lines, 1):
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):", line)
        if not match or line.lstrip().startswith(("#", "-")):
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, key))
        if any(p in NATIVE for p in parents):
            continue
        previous = next((x for x in reversed(lines[: number - 1]) if x.strip()), "")
        out.append((number, ".".join([*parents, key]), previous.lstrip().startswith("#")))
    return out


def test_every_values_key_has_a_comment() -> None:
    keys = _keys()
    assert len(keys) > 150
    missing = [f"line {n}: {k}" for n, k, commented in keys if not commented]
    assert not missing, "values keys without a comment:\n" + "\n".join(missing)


def test_every_values_key_is_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def lookup(path: list[str]) -> dict | None:
        node = schema
        for key in path:
            while "allOf" in node and "properties" not in node:
                node = schema["definitions"][node["allOf"][0]["$ref"].rsplit("/", 1)[1]] | node
            if "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
            properties = node.get("properties", {})
            if key not in properties:
                return None
            node = properties[key]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        return node

    undescribed = []
    for _, dotted, _ in _keys():
        node = lookup(dotted.split("."))
        if node is None or not node.get("description"):
            undescribed.append(dotted)
    assert not undescribed, "values keys the schema does not describe:\n" + "\n".join(undescribed)
