"""The OpenAPI 3.1 document of the router, built from the feature schema and route docstrings."""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from winemeup.schema import SCHEMA


class _RouteLike(Protocol):
    method: str
    path: str
    auth: str
    request_schema: str | None
    response_schema: str | None
    tag: str

    @property
    def handler(self) -> Any: ...


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas(models: list[str]) -> dict[str, Any]:
    model_name = {
        "type": "string",
        "enum": models,
        "description": "Model name; omitted means the default model.",
    }
    score = {"type": "number", "description": "The model's quality score (0-10 scale, not rounded)."}
    quality = {"type": "integer", "minimum": 0, "maximum": 10, "description": "Score rounded half up."}
    cached = {"type": "boolean", "description": "True when the score came from the prediction cache."}
    return {
        "Features": SCHEMA.json_schema(),
        "PredictRequest": {
            "type": "object",
            "required": ["features"],
            "additionalProperties": False,
            "properties": {"features": _ref("Features"), "model": model_name},
        },
        "BatchRequest": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {"type": "array", "minItems": 1, "items": _ref("Features")},
                "model": model_name,
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["model", "model_version", "score", "quality", "cached"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "score": score,
                "quality": quality,
                "cached": cached,
            },
        },
        "BatchResponse": {
            "type": "object",
            "required": ["model", "model_version", "predictions"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["score", "quality", "cached"],
                        "properties": {"score": score, "quality": quality, "cached": cached},
                    },
                },
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "framework": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "placement": {"type": "string", "enum": ["inline", "runner"]},
                "status": {"type": "string", "enum": ["ready", "loading", "unavailable"]},
                "metrics": {"type": "object", "description": "Evaluation figures recorded at training time."},
                "default": {"type": "boolean"},
                "reason": {"type": "string"},
            },
        },
        "ModelList": {
            "type": "object",
            "properties": {
                "default": {"type": "string"},
                "models": {"type": "array", "items": _ref("Model")},
            },
        },
        "DefaultModelRequest": {
            "type": "object",
            "required": ["model"],
            "additionalProperties": False,
            "properties": {"model": {"type": "string", "enum": models}},
        },
        "DefaultModel": {
            "type": "object",
            "properties": {
                "default": {"type": "string"},
                "previous": {"type": "string"},
                "status": {"type": "string"},
            },
        },
        "FeatureList": {
            "type": "object",
            "properties": {
                "schema_version": {"type": "string"},
                "features": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                            },
                        },
                    },
                }
            },
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def build_openapi(routes: list[Any], models: list[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document; each route's docstring gives its summary and description."""
    paths: dict[str, Any] = {}
    for route in routes:
        doc = inspect.getdoc(route.handler) or ""
        summary, _, description = doc.partition("\n")
        op: dict[str, Any] = {
            "summary": summary.strip(),
            "operationId": route.handler.__name__,
            "tags": [route.tag],
            "responses": {},
        }
        if description.strip():
            op["description"] = description.strip()
        if route.response_schema:
            op["responses"]["200"] = {
                "description": "OK",
                "content": {"application/json": {"schema": _ref(route.response_schema)}},
            }
        else:
            op["responses"]["200"] = {"description": "OK"}
        if route.request_schema:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(route.request_schema)}},
            }
            op["responses"]["400"] = _error("Malformed body: empty, not JSON, NaN or Infinity")
            op["responses"]["413"] = _error("Body too large")
            op["responses"]["415"] = _error("Not application/json, or compressed (Content-Encoding)")
            op["responses"]["422"] = _error("Invalid fields; `details` names each one")
        if route.auth != "open":
            op["security"] = [{"ApiKey": []}, {"Bearer": []}]
            op["responses"]["401"] = _error("Missing or invalid API key")
        if route.auth == "admin":
            op["responses"]["403"] = _error("The key is not an admin key")
        if route.path.startswith("/v1/predict") or route.path == "/v1/models/default":
            op["responses"]["404"] = _error("Unknown model")
        if route.path.startswith("/v1/predict"):
            op["responses"]["503"] = _error("The model is unavailable (runner down or slow, load failed)")
        if route.path == "/readyz":
            op["responses"]["503"] = _error("An inline default model is still loading in this pod")
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WineMeUp",
            "version": "1",
            "description": "Wine quality (UCI Wine Quality, red and white) from seven model families.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(models),
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
