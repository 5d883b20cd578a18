"""Model insight stored with a model version: prediction intervals and drift reference bins.

Training writes two small JSON files into a model's version directory of the store:

* ``insight/intervals.json``: split-conformal half-widths per wine type and level (80 %,
  90 %), absolute or normalised by a difficulty estimate (the spread of the calibration
  residuals in bins of the predicted score), read by :class:`Intervals`;
* ``insight/drift_reference.json``: per wine type and measurement, quantile bin edges of the
  training rows and the share of those rows in each bin, read by :class:`DriftReference`.

:class:`DriftWindow` keeps the last N served rows of each wine type in a fixed-size ring
(O(1) memory whatever the traffic) and, off the request path, computes the population
stability index (PSI) of every measurement against the reference bins, and the share of
values outside the schema's physical range.

This module is the pure core the router builds on: numpy and :mod:`winemeup.schema` only
(no web framework, Redis or BentoML). The binning rule used to build the reference is the
one the window uses, so a reference fed its own rows has a PSI of exactly 0.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA, WINE_TYPES

INSIGHT_DIR = "insight"
INTERVALS_FILE = f"{INSIGHT_DIR}/intervals.json"
"""Where a model version's interval calibration lives, relative to its version directory."""
DRIFT_REFERENCE_FILE = f"{INSIGHT_DIR}/drift_reference.json"
"""Where a model version's drift reference lives, relative to its version directory."""
INTERVALS_FORMAT = "winemeup.intervals/1"
DRIFT_REFERENCE_FORMAT = "winemeup.drift-reference/1"

INTERVAL_METHODS = ("absolute", "normalised")
"""``absolute``: score ± q. ``normalised``: score ± q x spread(score bin), per wine type."""

PSI_FLOOR = 1e-4
"""Shares below this are taken as this in the PSI's logarithm (an empty bin is not infinite drift)."""

_WINE_TYPE_COLUMN = SCHEMA.names.index("wine_type")


class InsightError(Exception):
    """A model version's insight files are missing, malformed or cannot answer the question."""


class NoCalibrationError(InsightError):
    """The model version was stored without calibration data (trained before intervals existed)."""

    def __init__(self, model: str, path: Path | None = None):
        self.model = model
        where = f" ({path} not found)" if path is not None else ""
        super().__init__(
            f"model {model} has no prediction-interval calibration{where}; retrain it "
            f"(python -m training train {model.partition(':')[0]}) to get intervals"
        )


class NoDriftReferenceError(InsightError):
    """The model version was stored without drift reference bins."""

    def __init__(self, model: str, path: Path | None = None):
        self.model = model
        where = f" ({path} not found)" if path is not None else ""
        super().__init__(f"model {model} has no drift reference{where}; retrain it to get one")


class InsightFormatError(InsightError):
    """An insight file exists but is not in the expected format."""


class UnknownLevelError(InsightError, ValueError):
    """An interval level was asked for that the model was not calibrated at."""


class _HasPath(Protocol):
    @property
    def path(self) -> Path: ...


# -- files ------------------------------------------------------------------------------------


def _version_dir(entry: _HasPath | Path) -> Path:
    return entry if isinstance(entry, Path) else Path(entry.path)


def _model_label(entry: _HasPath | Path) -> str:
    tag = getattr(entry, "tag", None)
    return str(tag) if tag else _version_dir(entry).parent.name or str(entry)


def _read_json(path: Path, expected_format: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InsightFormatError(f"{path}: unreadable ({e})") from e
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise InsightFormatError(f"{path}: not a {expected_format} document")
    return document


def write_json(version_dir: Path, relative: str, document: Mapping[str, Any]) -> Path:
    """Write one insight document into a model's version directory (atomically: temp + rename)."""
    path = Path(version_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


# -- prediction intervals ---------------------------------------------------------------------


def level_key(level: float) -> str:
    """How a level is spelled in the files: ``0.8`` -> ``"0.8"``, ``0.90`` -> ``"0.9"``."""
    return f"{float(level):g}"


@dataclass(frozen=True)
class ScaleBins:
    """A difficulty estimate: the spread of calibration residuals in bins of the predicted score.

    ``edges`` are the k-1 inner edges, ``scales`` the k spreads; ``absolute`` intervals use
    no edges and one scale of 1.
    """

    edges: np.ndarray
    scales: np.ndarray

    @classmethod
    def unit(cls) -> ScaleBins:
        return cls(np.empty(0), np.ones(1))

    def scale(self, scores: np.ndarray) -> np.ndarray:
        return self.scales[np.searchsorted(self.edges, scores, side="right")]

    def to_dict(self) -> dict[str, list[float]]:
        return {"score_edges": [float(e) for e in self.edges], "scales": [float(s) for s in self.scales]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScaleBins:
        edges = np.asarray(raw.get("score_edges", []), dtype=np.float64)
        scales = np.asarray(raw.get("scales", [1.0]), dtype=np.float64)
        if scales.size != edges.size + 1 or not np.all(scales > 0) or np.any(np.diff(edges) < 0):
            raise ValueError("scales must be positive and one more than the sorted score edges")
        return cls(edges, scales)


@dataclass(frozen=True)
class Calibration:
    """One method's calibration for one wine type: the difficulty bins and a quantile per level."""

    bins: ScaleBins
    quantiles: dict[str, float]
    """Conformal quantile of |residual| / scale, by :func:`level_key`."""

    def half_width(self, scores: np.ndarray, level: str) -> np.ndarray:
        return self.quantiles[level] * self.bins.scale(scores)

    def to_dict(self) -> dict[str, Any]:
        return {**self.bins.to_dict(), "quantiles": dict(self.quantiles)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Calibration:
        quantiles = {level_key(float(k)): float(v) for k, v in raw["quantiles"].items()}
        if not all(math.isfinite(q) and q >= 0 for q in quantiles.values()):
            raise ValueError("quantiles must be finite and non-negative")
        return cls(ScaleBins.from_dict(raw), quantiles)


def wine_type_mask(wine_types: Any, size: int) -> np.ndarray:
    """Boolean "is red" per row from ``"red"``/``"white"`` strings or the model encoding (red=1.0)."""
    values = np.asarray(wine_types)
    if values.ndim == 0:
        values = np.full(size, values.item())
    if values.shape != (size,):
        raise ValueError(f"expected {size} wine types, got shape {values.shape}")
    if values.dtype.kind in "USO":
        text = values.astype(str)
        unknown = ~np.isin(text, WINE_TYPES)
        if unknown.any():
            raise ValueError(
                f"unknown wine type {str(text[unknown][0])!r}; expected one of {', '.join(WINE_TYPES)}"
            )
        return np.asarray(text == WINE_TYPES[0])
    return np.asarray(values.astype(np.float64) >= 0.5)


class Intervals:
    """Split-conformal prediction intervals of one model version, per wine type.

    Build it with :func:`read_intervals` (from a store entry) or :meth:`from_dict`.
    """

    def __init__(
        self,
        model: str,
        calibrations: Mapping[str, Mapping[str, Calibration]],
        selected: Mapping[str, str],
        document: Mapping[str, Any] | None = None,
    ):
        self.model = model
        self._calibrations = {t: dict(c) for t, c in calibrations.items()}
        self.selected = dict(selected)
        """The method served per wine type (``absolute`` or ``normalised``)."""
        self.document = dict(document or {})
        levels = {
            lvl
            for by_method in self._calibrations.values()
            for c in by_method.values()
            for lvl in c.quantiles
        }
        self.levels = tuple(sorted(float(x) for x in levels))
        """The levels the model was calibrated at (e.g. 0.8, 0.9)."""

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], model: str | None = None) -> Intervals:
        """Parse an ``intervals.json`` document (also the shape of ensembles' calibration)."""
        name = model or str(document.get("model", "?"))
        try:
            by_type = document["by_type"]
            calibrations = {
                wine_type: {
                    method: Calibration.from_dict(by_type[wine_type][method]) for method in INTERVAL_METHODS
                }
                for wine_type in WINE_TYPES
            }
            selected = {t: str(by_type[t].get("selected", "absolute")) for t in WINE_TYPES}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InsightFormatError(f"model {name}: malformed interval calibration ({e!r})") from e
        if any(m not in INTERVAL_METHODS for m in selected.values()):
            raise InsightFormatError(f"model {name}: unknown interval method in {selected}")
        return cls(name, calibrations, selected, document)

    def _level(self, level: float) -> str:
        for known in self.levels:
            if abs(known - float(level)) < 1e-9:
                return level_key(known)
        offered = ", ".join(f"{lvl:g}" for lvl in self.levels)
        raise UnknownLevelError(f"model {self.model} has intervals at level(s) {offered}, not {level:g}")

    def interval(
        self, scores: Any, wine_types: Any, level: float, method: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per score: the interval at ``level`` for each row's wine type.

        ``wine_types`` holds ``"red"``/``"white"`` or the model encoding (red=1.0), one per
        score (or one for all). Bounds are clipped to the quality scale (0-10). ``method``
        overrides the stored choice (``absolute`` or ``normalised``).
        """
        key = self._level(level)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        red = wine_type_mask(wine_types, scores.size)
        half = np.empty_like(scores)
        for wine_type, mask in ((WINE_TYPES[0], red), (WINE_TYPES[1], ~red)):
            if mask.any():
                chosen = method or self.selected[wine_type]
                if chosen not in INTERVAL_METHODS:
                    raise ValueError(f"unknown interval method {chosen!r}; expected {INTERVAL_METHODS}")
                half[mask] = self._calibrations[wine_type][chosen].half_width(scores[mask], key)
        low = np.clip(scores - half, QUALITY_MIN, QUALITY_MAX)
        high = np.clip(scores + half, QUALITY_MIN, QUALITY_MAX)
        return low, high


def read_intervals(entry: _HasPath | Path) -> Intervals:
    """The intervals of a model version (a :class:`~winemeup.runtimes.store.StoreEntry` or its path).

    Raises :class:`NoCalibrationError` (the router's 409) when the version has none.
    """
    path = _version_dir(entry) / INTERVALS_FILE
    if not path.is_file():
        raise NoCalibrationError(_model_label(entry), path)
    return Intervals.from_dict(_read_json(path, INTERVALS_FORMAT), model=_model_label(entry))


# -- drift ------------------------------------------------------------------------------------


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin of each value for k-1 inner ``edges``: 0..k-1 (a value on an edge goes above it).

    The one binning rule of both the reference (training) and the window (serving).
    """
    return np.searchsorted(edges, values, side="right")


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` quantile bins of ``values``; repeated edges (ties) merged."""
    inner = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (a - e) ln(a / e), shares floored at ``floor``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureBins:
    """Reference bins of one measurement for one wine type."""

    edges: np.ndarray
    """k-1 inner quantile edges of the reference rows."""
    expected: np.ndarray
    """Share of the (in-range) reference rows in each of the k bins."""

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "edges": [float(x) for x in self.edges],
            "expected": [round(float(x), 8) for x in self.expected],
        }


@dataclass(frozen=True)
class DriftReference:
    """Per wine type and measurement, the reference distribution a served window is compared with."""

    by_type: dict[str, dict[str, FeatureBins]]
    rows: dict[str, int]
    document: dict[str, Any]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(f.name for f in SCHEMA.measurements)

    @classmethod
    def build(cls, X: np.ndarray, bins: int = 10, source: str = "") -> DriftReference:
        """Quantile bins of model-input rows (schema order, wine_type red=1.0) per wine type."""
        X = np.asarray(X, dtype=np.float64)
        red = X[:, _WINE_TYPE_COLUMN] >= 0.5
        by_type: dict[str, dict[str, FeatureBins]] = {}
        rows: dict[str, int] = {}
        for wine_type, mask in ((WINE_TYPES[0], red), (WINE_TYPES[1], ~red)):
            part = X[mask]
            if part.shape[0] == 0:
                continue
            rows[wine_type] = int(part.shape[0])
            features: dict[str, FeatureBins] = {}
            for feature in SCHEMA.measurements:
                column = part[:, SCHEMA.names.index(feature.name)]
                column = column[(column >= feature.minimum) & (column <= feature.maximum)]
                if column.size == 0:  # nothing in range to bin: one bin holding everything
                    features[feature.name] = FeatureBins(np.empty(0), np.ones(1))
                    continue
                edges = quantile_edges(column, bins)
                counts = np.bincount(bin_index(edges, column), minlength=edges.size + 1)
                features[feature.name] = FeatureBins(edges, counts / max(1, column.size))
            by_type[wine_type] = features
        document = {
            "format": DRIFT_REFERENCE_FORMAT,
            "schema_version": SCHEMA.version,
            "bins": bins,
            "source": source,
            "binning": "quantile bins of the reference rows; a value on an edge goes to the bin above; "
            "values outside the schema's physical range are not binned but counted as out of range",
            "psi_floor": PSI_FLOOR,
        }
        return cls(by_type, rows, document)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.document,
            "by_type": {
                wine_type: {
                    "rows": self.rows[wine_type],
                    "features": {name: bins.to_dict() for name, bins in features.items()},
                }
                for wine_type, features in self.by_type.items()
            },
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], model: str = "?") -> DriftReference:
        try:
            by_type: dict[str, dict[str, FeatureBins]] = {}
            rows: dict[str, int] = {}
            for wine_type, raw in document["by_type"].items():
                features = {}
                for name in (f.name for f in SCHEMA.measurements):
                    spec = raw["features"][name]
                    edges = np.asarray(spec["edges"], dtype=np.float64)
                    expected = np.asarray(spec["expected"], dtype=np.float64)
                    if expected.size != edges.size + 1:
                        raise ValueError(f"{wine_type}/{name}: {edges.size} edges but {expected.size} shares")
                    features[name] = FeatureBins(edges, expected)
                by_type[str(wine_type)] = features
                rows[str(wine_type)] = int(raw.get("rows", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InsightFormatError(f"model {model}: malformed drift reference ({e!r})") from e
        meta = {k: v for k, v in document.items() if k != "by_type"}
        return cls(by_type, rows, meta)


def read_drift_reference(entry: _HasPath | Path) -> DriftReference:
    """The drift reference of a model version; :class:`NoDriftReferenceError` when it has none."""
    path = _version_dir(entry) / DRIFT_REFERENCE_FILE
    if not path.is_file():
        raise NoDriftReferenceError(_model_label(entry), path)
    return DriftReference.from_dict(_read_json(path, DRIFT_REFERENCE_FORMAT), model=_model_label(entry))


@dataclass(frozen=True)
class TypeDrift:
    """Drift of one wine type's window against its reference."""

    rows: int
    """Rows of this type in the window."""
    psi: dict[str, float]
    """PSI per measurement (NaN when the window holds no in-range value of it)."""
    out_of_range: dict[str, float]
    """Share of the window's values outside the schema's physical range, per measurement."""
    out_of_range_rows: float
    """Share of the window's rows with at least one value out of range."""


class DriftWindow:
    """The last ``size`` served rows of each wine type, compared with a :class:`DriftReference`.

    :meth:`add` (the request path) stores one row as a tuple in a fixed-size ring per wine
    type: at most ``2 x size`` rows are held whatever the traffic (about 0.4 kB a row). A
    tuple ring, not a numpy one: writing a Python row into a numpy array was measured at
    about twice the cost of the whole :meth:`add`. :meth:`report` (off the request path: a
    timer, a metrics scrape) turns the window into arrays, bins it and computes PSI and
    out-of-range shares. Safe to call from several threads.
    """

    def __init__(self, reference: DriftReference, size: int = 5000):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.reference = reference
        self.size = size
        self._rings: list[list[tuple[float, ...] | None]] = [[None] * size for _ in WINE_TYPES]
        self._next = [0, 0]
        self._seen = [0, 0]
        self._lock = threading.Lock()

    def add(self, row: Sequence[float]) -> None:
        """Record one served model-input row (12 floats in schema order, wine_type red=1.0)."""
        t = 0 if row[_WINE_TYPE_COLUMN] >= 0.5 else 1
        item = tuple(row)
        with self._lock:
            i = self._next[t]
            self._rings[t][i] = item
            self._next[t] = i + 1 if i + 1 < self.size else 0
            self._seen[t] += 1

    def add_rows(self, rows: np.ndarray) -> None:
        """Record a batch of model-input rows, ``(n, 12)``."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(SCHEMA))
        red = rows[:, _WINE_TYPE_COLUMN] >= 0.5
        for t, mask in enumerate((red, ~red)):
            count = int(mask.sum())
            items = [tuple(r) for r in rows[mask][-self.size :].tolist()]
            with self._lock:
                ring, start = self._rings[t], self._next[t]
                head = items[: self.size - start]
                ring[start : start + len(head)] = head
                tail = items[len(head) :]
                ring[: len(tail)] = tail
                self._next[t] = (start + len(items)) % self.size
                self._seen[t] += count

    def seen(self) -> dict[str, int]:
        """Rows recorded per wine type since the window was created."""
        return dict(zip(WINE_TYPES, self._seen, strict=True))

    def held(self) -> dict[str, int]:
        """Rows held in the window per wine type (at most ``size``)."""
        return {wine_type: min(seen, self.size) for wine_type, seen in self.seen().items()}

    def rows(self, wine_type: str) -> np.ndarray:
        """The rows of one wine type now in the window, ``(held, 12)`` (in no particular order)."""
        t = WINE_TYPES.index(wine_type)
        with self._lock:
            items = self._rings[t][: min(self._seen[t], self.size)]
        return np.array(items, dtype=np.float64).reshape(-1, len(SCHEMA))

    def report(self) -> dict[str, TypeDrift]:
        """PSI and out-of-range shares per wine type (types without reference bins are left out)."""
        out: dict[str, TypeDrift] = {}
        for wine_type in WINE_TYPES:
            reference = self.reference.by_type.get(wine_type)
            if reference is not None:
                out[wine_type] = _type_drift(reference, self.rows(wine_type))
        return out


def _type_drift(reference: Mapping[str, FeatureBins], window: np.ndarray) -> TypeDrift:
    n = window.shape[0]
    psi_by: dict[str, float] = {}
    out_by: dict[str, float] = {}
    any_out = np.zeros(n, dtype=bool)
    for feature in SCHEMA.measurements:
        column = window[:, SCHEMA.names.index(feature.name)]
        outside = (column < feature.minimum) | (column > feature.maximum)
        any_out |= outside
        out_by[feature.name] = float(outside.mean()) if n else 0.0
        inside = column[~outside]
        bins = reference[feature.name]
        if inside.size == 0:
            psi_by[feature.name] = float("nan")
            continue
        counts = np.bincount(bin_index(bins.edges, inside), minlength=bins.expected.size)
        psi_by[feature.name] = psi(bins.expected, counts / inside.size)
    return TypeDrift(
        rows=n, psi=psi_by, out_of_range=out_by, out_of_range_rows=float(any_out.mean()) if n else 0.0
    )


__all__ = [
    "DRIFT_REFERENCE_FILE",
    "DRIFT_REFERENCE_FORMAT",
    "INTERVALS_FILE",
    "INTERVALS_FORMAT",
    "INTERVAL_METHODS",
    "Calibration",
    "DriftReference",
    "DriftWindow",
    "FeatureBins",
    "InsightError",
    "InsightFormatError",
    "Intervals",
    "NoCalibrationError",
    "NoDriftReferenceError",
    "ScaleBins",
    "TypeDrift",
    "UnknownLevelError",
    "bin_index",
    "level_key",
    "psi",
    "quantile_edges",
    "read_drift_reference",
    "read_intervals",
    "wine_type_mask",
    "write_json",
]
