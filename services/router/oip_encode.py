"""The Open Inference Protocol's answers: infer outputs and model metadata.

Requests are decoded by :mod:`services.router.oip`, which describes both input layouts.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from services.router.oip import MATRIX_INPUT, OUTPUT_QUALITY, OUTPUT_SCORE, InferRequest
from winemeup.schema import SCHEMA

_NAMES = tuple(SCHEMA.names)

_WIRE_TYPES = {"FP64": "<f8", "FP32": "<f4", "INT32": "<i4"}
_STRUCT_CODES = {"FP64": "d", "FP32": "f", "INT32": "i"}


def encode_infer(
    request: InferRequest,
    model: str,
    version: str,
    scores: Sequence[float] | np.ndarray,
    quality: Sequence[int] | np.ndarray,
    extra: Mapping[str, tuple[str, Sequence[float] | np.ndarray]] | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The infer response body, and the JSON length when binary tensor data follows it.

    ``extra`` holds further outputs by name (datatype FP64/FP32/INT32, values) that
    ``request.outputs`` may name; ``parameters`` become the response's ``parameters``.
    Values may be lists or arrays; lists of FP64 and INT32 values go into JSON as they are.
    """
    values: dict[str, tuple[str, Sequence[Any] | np.ndarray]] = {
        OUTPUT_SCORE: ("FP64", scores),
        OUTPUT_QUALITY: ("INT32", quality),
        **(extra or {}),
    }
    outputs, blobs = [], []
    for requested in request.outputs:
        datatype, array = values[requested.name]
        entry: dict[str, Any] = {"name": requested.name, "datatype": datatype, "shape": [len(array)]}
        if requested.binary:
            if type(array) is list:
                blob = struct.pack(f"<{len(array)}{_STRUCT_CODES[datatype]}", *array)
            else:
                blob = np.ascontiguousarray(array, dtype=_WIRE_TYPES[datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif type(array) is list and datatype != "FP32":
            entry["data"] = array
        else:
            entry["data"] = np.asarray(array, dtype=_WIRE_TYPES[datatype]).tolist()
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if parameters:
        doc["parameters"] = parameters
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def model_metadata(model: str, version: str, platform: str) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs (the column layout), outputs, and the matrix layout."""
    inputs = [
        {"name": f.name, "datatype": "BYTES" if f.kind == "category" else "FP64", "shape": [-1]}
        for f in SCHEMA.features
    ]
    return {
        "name": model,
        "versions": [version],
        "platform": platform,
        "inputs": inputs,
        "outputs": [
            {"name": OUTPUT_SCORE, "datatype": "FP64", "shape": [-1]},
            {"name": OUTPUT_QUALITY, "datatype": "INT32", "shape": [-1]},
        ],
        "parameters": {
            "alternative_input": {
                "name": MATRIX_INPUT,
                "datatype": "FP64",
                "shape": [-1, len(_NAMES)],
                "columns": list(_NAMES),
                "wine_type": "0 = red, 1 = white",
            },
            "feature_units": {f.name: f.unit for f in SCHEMA.features if f.unit},
        },
    }
