"""Validators of custom resources against their CRDs' OpenAPI v3 schemas, offline."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema


def crd_validator(crd: dict[str, Any], version: str) -> jsonschema.Draft7Validator:
    """A JSON Schema validator of ``version`` of ``crd``, as strict as the API server: undeclared
    properties are refused (it prunes them), ``nullable`` allows null."""
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(served["schema"]["openAPIV3Schema"])))


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ("properties", "patternProperties", "definitions"):
                node[key] = {k: _strict(v) for k, v in value.items()}
            elif isinstance(value, dict | list):
                node[key] = _strict(value)
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        return [_strict(v) for v in node]
    return node
