"""The OpenAPI 3.1 document of the router, generated from the API contract (:mod:`winemeup.api`).

Components are pydantic's JSON Schemas of the declared types; paths come from the route
table (method, path, types, who may call it) and each handler's docstring (summary and
description). Only what a deployment decides is added at start-up: the served model names
and the most instances a batch may carry.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from winemeup.api import ErrorBody

_REF = "#/components/schemas/{model}"

# Error statuses every body-carrying route may answer, and what they mean.
_BODY_ERRORS = {
    "400": "Malformed body: empty, not JSON, NaN or Infinity",
    "413": "Body too large",
    "415": "Not application/json, or compressed (Content-Encoding)",
    "422": "Invalid fields; `details` names each one",
}


class _RouteLike(Protocol):
    method: str
    path: str
    auth: str
    request_type: type[BaseModel] | None
    response_type: type[BaseModel] | None
    media_type: str
    tag: str
    errors: dict[str, str]

    @property
    def handler(self) -> Any: ...


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(ErrorBody)}}}


def _served_names(schemas: dict[str, Any], models: list[str]) -> None:
    """Constrain every ``model`` request field to the names this router serves."""
    for schema in schemas.values():
        field = schema.get("properties", {}).get("model")
        if field is None or "additionalProperties" not in schema:  # requests forbid extras
            continue
        for branch in field.get("anyOf", [field]):
            if branch.get("type") == "string":
                branch["enum"] = list(models)


def _operation(route: _RouteLike) -> dict[str, Any]:
    doc = inspect.getdoc(route.handler) or ""
    summary, _, description = doc.partition("\n")
    op: dict[str, Any] = {
        "summary": summary.strip(),
        "operationId": route.handler.__name__,
        "tags": [route.tag],
    }
    if description.strip():
        op["description"] = description.strip()
    content: dict[str, Any] = {}
    if route.response_type is not None:
        content = {route.media_type: {"schema": _ref(route.response_type)}}
    elif route.media_type != "application/json":
        content = {route.media_type: {"schema": {"type": "string"}}}
    else:
        content = {route.media_type: {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    if route.request_type is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.request_type)}},
        }
        responses.update({status: _error(text) for status, text in _BODY_ERRORS.items()})
    if route.auth != "open":
        op["security"] = [{"ApiKey": []}, {"Bearer": []}]
        responses["401"] = _error("Missing or invalid API key")
        responses.setdefault("400", _error("More than one X-API-Key header"))
        responses["429"] = _error("Over the key's budget: Retry-After says when to retry")
    if route.auth == "admin":
        responses["403"] = _error("The key is not an admin key")
    responses.update({status: _error(text) for status, text in route.errors.items()})
    op["responses"] = responses
    return op


def build_openapi(
    routes: list[Any],
    models: list[str],
    batch_max_rows: int | None = None,
    explain_max_rows: int | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document; each route's docstring gives its summary and description."""
    requests = {r.request_type for r in routes if r.request_type is not None}
    responses = {r.response_type for r in routes if r.response_type is not None} | {ErrorBody}
    _, top = models_json_schema(
        [(t, "validation") for t in sorted(requests, key=str)]
        + [(t, "serialization") for t in sorted(responses - requests, key=str)],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    _served_names(schemas, models)
    for name, most in (("BatchRequest", batch_max_rows), ("ExplainBatchRequest", explain_max_rows)):
        if most is not None and name in schemas:
            schemas[name]["properties"]["instances"]["maxItems"] = most
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WineMeUp",
            "version": "1",
            "description": "Wine quality (UCI Wine Quality, red and white) from seven model families.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


SWAGGER_HTML = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>WineMeUp API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""
