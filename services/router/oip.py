"""The Open Inference Protocol (KServe/Triton/MLServer "V2"), REST: pure encoding and decoding.

No web framework and no model here: :func:`parse_infer` turns an infer request body (JSON,
or JSON followed by binary tensor data) into the feature matrix the predictor takes, and
:func:`~services.router.oip_encode.encode_infer` turns scores back into the protocol's
outputs. The routes that call them live with the other HTTP adapters.

Two input layouts are answered:

* **columns**: one input per feature, named by the API field names, shape ``[N]`` (or
  ``[N, 1]``); measurements FP32 or FP64, ``wine_type`` BYTES ``red``/``white``. This is the
  layout of MLServer's pandas codec.
* **matrix**: one input ``features``, shape ``[N, 12]``, FP32 or FP64, in the schema's order,
  with ``wine_type`` as 0 (red) or 1 (white).

Outputs: ``score`` (FP64 ``[N]``) and ``quality`` (INT32 ``[N]``). The binary tensor data
extension is read and written (``Inference-Header-Content-Length``), because the standard
clients use it by default. Errors are :class:`ProtocolError` with the protocol's
``{"error": "<string>"}`` body; the message names the input and the row.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from services.router.validation import fast_row
from winemeup.schema import SCHEMA

HEADER_LENGTH = "inference-header-content-length"
"""Request and response header: bytes of JSON before the binary tensor data."""

MATRIX_INPUT = "features"
OUTPUT_SCORE = "score"
OUTPUT_QUALITY = "quality"
OUTPUTS = (OUTPUT_SCORE, OUTPUT_QUALITY)
_NUMBER_TYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
_NAMES = tuple(SCHEMA.names)
_WIDTH = len(_NAMES)
_WINE_TYPE = _NAMES.index("wine_type")
_LOWS = np.array([f.minimum for f in SCHEMA.features])
_HIGHS = np.array([f.maximum for f in SCHEMA.features])
_ROW = struct.Struct(f"<{len(SCHEMA)}d")
_ROW_BYTES = _ROW.size
# The datatype each feature's tensor has in the column layout: BYTES for categories.
_COLUMN_TYPES = {f.name: ("BYTES",) if f.kind == "category" else ("FP64", "FP32") for f in SCHEMA.features}
_PAIRS = tuple((_NAMES.index(a), _NAMES.index(b)) for a, b in SCHEMA.not_exceeding)


class ProtocolError(Exception):
    """A request the protocol rejects; ``status`` is 400, 404 or 503, ``message`` the error string."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    """A decoded infer request: the model-input rows and what to answer with."""

    rows: np.ndarray
    outputs: list[RequestedOutput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs_named: bool = False
    """True when the request listed its outputs (else every default output is answered)."""


# ---- decoding ---------------------------------------------------------------------------------


def parse_infer(
    body: bytes, header_length: str | None = None, extra_outputs: tuple[str, ...] = ()
) -> InferRequest:
    """Decode an infer request body into the feature matrix; :class:`ProtocolError` otherwise.

    ``extra_outputs`` are output names the caller can also answer (beyond score and quality)
    when a request names them.
    """
    json_part, binary = _split(body, header_length)
    try:
        doc = orjson.loads(json_part)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"request body is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    rows = _one_valid_binary_row(inputs, binary) if binary else _one_valid_row(inputs)
    if rows is None:
        tensors = _tensors(inputs, binary)
        rows = _matrix(tensors) if MATRIX_INPUT in tensors else _columns(tensors)
        _check_values(rows, matrix=MATRIX_INPUT in tensors)
    request_id = doc.get("id")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be an object")
    return InferRequest(
        rows=rows,
        outputs=_outputs(
            doc.get("outputs"), bool(parameters.get("binary_data_output", False)), (*OUTPUTS, *extra_outputs)
        ),
        id=str(request_id) if request_id is not None else None,
        parameters=parameters,
        outputs_named=doc.get("outputs") is not None,
    )


def _one_valid_row(inputs: list[Any]) -> np.ndarray | None:
    """The (1, 12) matrix of one wine in the column layout with JSON data, if certainly valid.

    The common single-row request is checked as ``/v1`` checks one wine
    (:func:`~services.router.validation.fast_row`); anything it cannot prove valid returns
    None, and the general decoder then finds and names the problem.
    """
    if len(inputs) != _WIDTH:
        return None
    instance: dict[str, Any] = {}
    for spec in inputs:
        # Exactly name, datatype, shape and data: no parameters (binary data, or anything else).
        try:
            if len(spec) != 4:
                return None
            name, data, shape = spec["name"], spec["data"], spec["shape"]
            if spec["datatype"] not in _COLUMN_TYPES[name]:
                return None
        except (KeyError, TypeError):  # not an object, a key missing, an unknown or unhashable name
            return None
        if type(data) is not list or len(data) != 1 or (shape != [1] and shape != [1, 1]) or name in instance:
            return None
        instance[name] = data[0]
    row = fast_row(instance)
    return None if row is None else np.array((row,), dtype=np.float64)


def _one_valid_binary_row(inputs: list[Any], binary: bytes) -> np.ndarray | None:
    """The (1, 12) matrix of one wine sent as one binary FP64 ``features`` row, if certainly valid.

    Anything else (or anything out of range) returns None, for the general decoder to handle.
    """
    if len(inputs) != 1 or len(binary) != _ROW_BYTES:
        return None
    spec = inputs[0]
    try:
        if (
            len(spec) != 4
            or spec["name"] != MATRIX_INPUT
            or spec["datatype"] != "FP64"
            or spec["shape"] != [1, _WIDTH]
            or spec["parameters"] != {"binary_data_size": _ROW_BYTES}
        ):
            return None
    except (KeyError, TypeError):
        return None
    row = list(_ROW.unpack(binary))
    row[_WINE_TYPE] = 1.0 - row[_WINE_TYPE]  # the protocol's 0 (red) is the model's 1
    return np.array((row,), dtype=np.float64) if SCHEMA.row_valid(row) else None


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(
            f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
        ) from None
    if not 0 < length <= len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes"
        )
    return body[:length], body[length:]


@dataclass
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[Any]
    """Binary data: float64 numbers or a list of str (BYTES); JSON data: the flat list of values."""


def _tensors(inputs: list[Any], binary: bytes) -> dict[str, _Tensor]:
    tensors: dict[str, _Tensor] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError(f"inputs[{i}] must be an object with a 'name'")
        name = spec["name"]
        if name in tensors:
            raise ProtocolError(f"input '{name}' is given twice")
        datatype, shape = spec.get("datatype"), spec.get("shape")
        if not isinstance(datatype, str):
            raise ProtocolError(f"input '{name}': 'datatype' must be a string")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProtocolError(f"input '{name}': 'shape' must be a list of non-negative integers")
        count = math.prod(shape)
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ProtocolError(f"input '{name}': 'parameters' must be an object")
        size = parameters.get("binary_data_size") if parameters else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ProtocolError(
                    f"input '{name}': binary_data_size {size} exceeds the {len(binary) - offset} bytes "
                    "of binary data left in the body"
                )
            values: np.ndarray | list[Any] = _decode_binary(
                name, datatype, binary[offset : offset + size], count
            )
            offset += size
        else:
            values = _decode_json(name, datatype, spec.get("data"), count)
        tensors[name] = _Tensor(name, datatype, shape, values)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def _decode_binary(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray:
    if datatype in _NUMBER_TYPES:
        dtype = _NUMBER_TYPES[datatype]
        if len(raw) != count * dtype.itemsize:
            raise ProtocolError(
                f"input '{name}': {len(raw)} bytes of {datatype} data for {count} elements "
                f"(expected {count * dtype.itemsize})"
            )
        return np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if datatype == "BYTES":
        items: list[str] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise ProtocolError(f"input '{name}': BYTES element {len(items)} has a cut length prefix")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise ProtocolError(f"input '{name}': BYTES element {len(items)} runs past the data")
            items.append(raw[pos : pos + length].decode("utf-8", errors="replace"))
            pos += length
        if len(items) != count:
            raise ProtocolError(f"input '{name}': {len(items)} BYTES elements for shape of {count}")
        return np.array(items, dtype=object)
    raise ProtocolError(f"input '{name}': datatype {datatype} is not accepted (FP32, FP64 or BYTES)")


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [data]


_NUMBER = (int, float)


def _decode_json(name: str, datatype: str, data: Any, count: int) -> list[Any]:
    """The tensor's values as a flat list, checked against its datatype and element count."""
    if data is None:
        raise ProtocolError(f"input '{name}' has no 'data' (and no binary_data_size)")
    # Data already flat (the common case) is used as it is; nested data is flattened.
    flat = data if isinstance(data, list) and not any(type(v) is list for v in data) else _flatten(data)
    if len(flat) != count:
        raise ProtocolError(f"input '{name}': {len(flat)} values for a shape of {count} elements")
    if datatype in _NUMBER_TYPES:
        for i, v in enumerate(flat):
            if type(v) is not float and (isinstance(v, bool) or not isinstance(v, _NUMBER)):
                raise ProtocolError(f"input '{name}' row {i}: must be a number, got {v!r}")
        return flat
    if datatype == "BYTES":
        for i, v in enumerate(flat):
            if not isinstance(v, str):
                raise ProtocolError(f"input '{name}' row {i}: must be a string, got {v!r}")
        return flat
    raise ProtocolError(f"input '{name}': datatype {datatype} is not accepted (FP32, FP64 or BYTES)")


def _matrix(tensors: dict[str, _Tensor]) -> np.ndarray:
    extra = sorted(set(tensors) - {MATRIX_INPUT})
    if extra:
        raise ProtocolError(f"input '{MATRIX_INPUT}' carries every feature: unexpected inputs {extra}")
    t = tensors[MATRIX_INPUT]
    if t.datatype not in _NUMBER_TYPES:
        raise ProtocolError(f"input '{MATRIX_INPUT}': datatype must be FP32 or FP64, got {t.datatype}")
    if len(t.shape) != 2 or t.shape[1] != _WIDTH:
        raise ProtocolError(f"input '{MATRIX_INPUT}': shape must be [N, {_WIDTH}], got {t.shape}")
    rows = np.array(t.values, dtype=np.float64).reshape(t.shape[0], _WIDTH)
    # The protocol's wine_type is 0 (red) / 1 (white); the model's is 1 (red) / 0 (white).
    rows[:, _WINE_TYPE] = 1.0 - rows[:, _WINE_TYPE]
    return rows


def _columns(tensors: dict[str, _Tensor]) -> np.ndarray:
    unknown = sorted(set(tensors) - set(_NAMES))
    if unknown:
        raise ProtocolError(f"unknown inputs {unknown}: expected the {_WIDTH} features or '{MATRIX_INPUT}'")
    missing = [n for n in _NAMES if n not in tensors]
    if missing:
        raise ProtocolError(f"missing inputs {missing}")
    counts = {}
    for t in tensors.values():
        if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)):
            raise ProtocolError(f"input '{t.name}': shape must be [N] or [N, 1], got {t.shape}")
        counts[t.name] = t.shape[0]
    if len(set(counts.values())) != 1:
        raise ProtocolError(f"inputs have different row counts: {counts}")
    columns: list[Any] = []
    for name in _NAMES:
        t = tensors[name]
        if name == "wine_type":
            if t.datatype != "BYTES":
                raise ProtocolError(
                    f"input 'wine_type': datatype must be BYTES ('red'/'white'), got {t.datatype}"
                )
            bad = next((i for i, v in enumerate(t.values) if v not in ("red", "white")), None)
            if bad is not None:
                raise ProtocolError(
                    f"input 'wine_type' row {bad}: must be 'red' or 'white', got {t.values[bad]!r}"
                )
            columns.append([1.0 if v == "red" else 0.0 for v in t.values])
        else:
            if t.datatype not in _NUMBER_TYPES:
                raise ProtocolError(f"input '{name}': datatype must be FP32 or FP64, got {t.datatype}")
            columns.append(t.values)
    # One conversion of every column at once; rows are then the transposed copy.
    return np.array(columns, dtype=np.float64).T.copy()


def _check_values(rows: np.ndarray, *, matrix: bool) -> None:
    """Ranges and the cross-field rule, naming the first offending input and row."""
    if rows.shape[0] == 0:
        raise ProtocolError("inputs hold no rows")
    finite = np.isfinite(rows)
    low, high = rows < _LOWS, rows > _HIGHS
    bad = ~finite | low | high
    if matrix:
        codes = rows[:, _WINE_TYPE]
        bad[:, _WINE_TYPE] = (codes != 0.0) & (codes != 1.0)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        f = SCHEMA.features[j]
        where = (
            f"input '{MATRIX_INPUT}' row {i} column {j} ({f.name})" if matrix else f"input '{f.name}' row {i}"
        )
        if f.kind == "category":
            raise ProtocolError(f"{where}: wine_type must be 0 (red) or 1 (white), got {1.0 - rows[i, j]:g}")
        shown = "NaN" if np.isnan(rows[i, j]) else f"{rows[i, j]:g}"
        raise ProtocolError(f"{where}: must be between {f.minimum:g} and {f.maximum:g} {f.unit}, got {shown}")
    for a, b in _PAIRS:
        over = np.flatnonzero(rows[:, a] > rows[:, b])
        if over.size:
            i = int(over[0])
            raise ProtocolError(
                f"row {i}: {_NAMES[a]} ({rows[i, a]:g}) must not exceed {_NAMES[b]} ({rows[i, b]:g})"
            )


def _outputs(spec: Any, binary_default: bool, known: tuple[str, ...] = OUTPUTS) -> list[RequestedOutput]:
    if spec is None:
        return [RequestedOutput(name, binary_default) for name in OUTPUTS]
    if not isinstance(spec, list) or not spec:
        raise ProtocolError("'outputs' must be a non-empty list")
    out = []
    for i, item in enumerate(spec):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"outputs[{i}] must be an object with a 'name'")
        if item["name"] not in known:
            raise ProtocolError(f"unknown output '{item['name']}': this model answers {list(known)}")
        parameters = item.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ProtocolError(f"outputs[{i}]: 'parameters' must be an object")
        binary = parameters.get("binary_data", binary_default) if parameters else binary_default
        out.append(RequestedOutput(item["name"], bool(binary)))
    return out
