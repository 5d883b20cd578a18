"""The runner's pure core: checks requests and turns them into model calls.

Imports neither BentoML nor a web framework; :mod:`services.runner.service` is the thin
BentoML adapter around :class:`ModelServer`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.runner.errors import (
    BatchTooLargeError,
    InvalidFeaturesError,
    InvalidRowsError,
    ModelNotLoadedError,
    NotExplainableError,
)
from services.runner.explainer import Explainer, ThreadExplainer
from winemeup.errors import TooManyRequests, ValidationFailed
from winemeup.insight import DRIFT_REFERENCE_FILE, INTERVALS_FILE
from winemeup.runtimes import ExplainUnavailable, ModelRuntime
from winemeup.schema import SCHEMA, FieldError, quality_grade

logger = logging.getLogger(__name__)

WIDTH = len(SCHEMA)

# The schema's ranges by model-input column: a category column holds one of its codes.
_NUMERIC = np.array([f.kind == "number" for f in SCHEMA.features])
_LOWS = np.array([f.minimum if f.kind == "number" else 0.0 for f in SCHEMA.features])
_HIGHS = np.array([f.maximum if f.kind == "number" else 1.0 for f in SCHEMA.features])
_CATEGORY_CODES = {
    i: sorted({SCHEMA.encode({**SCHEMA.example(), f.name: c})[i] for c in f.choices})
    for i, f in enumerate(SCHEMA.features)
    if f.kind == "category"
}
_NOT_EXCEEDING = tuple((SCHEMA.names.index(a), SCHEMA.names.index(b)) for a, b in SCHEMA.not_exceeding)
_SMALL_BATCH = 8
"""Up to this many rows, comparing Python floats one by one costs less than numpy's per-call
overhead (a 2-row batch: about 3 µs against 9 µs for the array comparisons)."""
MAX_REPORTED = 10
"""Most offending fields one error names."""


class OutOfRangeError(ValidationFailed):
    """A row's value lies outside the feature schema's physical range (the router's rule too)."""


class ExplainBusyError(TooManyRequests):
    """Every explanation slot of this worker is taken: retry later (429 with Retry-After)."""


def _all_valid(matrix: np.ndarray) -> bool:
    """Whether every value of ``matrix`` is finite and in range, every category value one of
    its codes and no cross-field rule broken: the fast yes of valid batches.

    False only sends the batch to the full checks, which name the problems. Every test is a
    comparison that holds, and comparisons with NaN never hold: NaN and infinities fail too.
    """
    if len(matrix) <= _SMALL_BATCH:
        return all(map(SCHEMA.row_valid, matrix.tolist()))
    ok = matrix >= _LOWS
    ok &= matrix <= _HIGHS
    if not ok.all():
        return False
    for column, codes in _CATEGORY_CODES.items():
        values = matrix[:, column]
        hit = values == codes[0]
        for code in codes[1:]:
            hit |= values == code
        if not hit.all():
            return False
    return all(bool((matrix[:, a] <= matrix[:, b]).all()) for a, b in _NOT_EXCEEDING)


def check_ranges(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` if every value lies in the schema's range; :class:`OutOfRangeError` naming the
    first offending fields (``rows[i][j]`` and the feature) otherwise."""
    if matrix.size == 0 or _all_valid(matrix):
        return matrix
    bad = (matrix < _LOWS) | (matrix > _HIGHS)
    for column, codes in _CATEGORY_CODES.items():
        bad[:, column] = ~np.isin(matrix[:, column], codes)
    crossed = [(a, b, matrix[:, a] > matrix[:, b]) for a, b in _NOT_EXCEEDING]
    if not bad.any() and not any(c.any() for _, _, c in crossed):
        return matrix
    errors: list[FieldError] = []
    for r, c in np.argwhere(bad)[:MAX_REPORTED]:
        f = SCHEMA.features[c]
        value = float(matrix[r, c])
        if f.kind == "category":
            allowed = ", ".join(f"{code:g}" for code in _CATEGORY_CODES[int(c)])
            problem = f"{f.name} must be one of the codes {allowed}, got {value:g}"
        else:
            problem = f"{f.name} must be between {f.minimum:g} and {f.maximum:g} {f.unit}, got {value:g}"
        errors.append(FieldError(f"rows[{r}][{c}]", problem))
    for a, b, rows in crossed:
        for r in np.flatnonzero(rows)[: max(0, MAX_REPORTED - len(errors))]:
            low, high = SCHEMA.names[a], SCHEMA.names[b]
            errors.append(
                FieldError(
                    f"rows[{r}][{a}]",
                    f"{low} must not exceed {high} ({matrix[r, a]:g} > {matrix[r, b]:g})",
                )
            )
    raise OutOfRangeError(errors)


def runner_name(model: str) -> str:
    """Service, bento and image name of a model's runner: DNS-friendly, dashes only."""
    return f"winemeup-runner-{model.replace('_', '-')}"


def check_rows(rows: Any, max_rows: int) -> np.ndarray:
    """The model-input matrix of a batch; raise a typed error naming the first problem rows.

    ``rows`` must be a list of lists of ``WIDTH`` finite numbers, at most ``max_rows`` long.
    An empty batch is valid and yields a (0, WIDTH) matrix.
    """
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        raise InvalidRowsError("rows must be a list of rows", [FieldError("rows", "must be a list")])
    if len(rows) > max_rows:
        raise BatchTooLargeError(
            f"batch of {len(rows)} rows exceeds batch_max_rows={max_rows}",
            [FieldError("rows", f"at most {max_rows} rows per call, got {len(rows)}")],
        )
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, str | bytes):
            errors.append(FieldError(f"rows[{i}]", f"must be a list of {WIDTH} numbers"))
        elif len(row) != WIDTH:
            errors.append(
                FieldError(f"rows[{i}]", f"must have {WIDTH} values (schema order), got {len(row)}")
            )
        if len(errors) >= 10:
            break
    if errors:
        raise InvalidRowsError(f"rows must each hold {WIDTH} numbers", errors)
    try:
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), WIDTH)
    except (TypeError, ValueError) as e:
        raise InvalidRowsError("rows must hold numbers only", [FieldError("rows", str(e))]) from e
    finite = np.isfinite(matrix)
    if not finite.all():
        bad = np.argwhere(~finite)[:10]
        raise InvalidRowsError(
            "rows must hold finite numbers (no NaN or infinity)",
            [
                FieldError(f"rows[{r}][{c}]", f"{SCHEMA.names[c]} must be finite, got {float(matrix[r, c])}")
                for r, c in bad
            ],
        )
    return check_ranges(matrix)


BINARY_ROWS_TYPE = "application/octet-stream"
"""Content type of the binary predict route: little-endian float64 rows, 12 values each."""


def decode_rows(body: bytes, max_rows: int) -> np.ndarray:
    """The model-input matrix of a binary body (row-major little-endian float64); typed errors."""
    row_bytes = WIDTH * 8
    if len(body) % row_bytes:
        raise InvalidRowsError(
            f"body must be whole rows of {WIDTH} float64 values ({row_bytes} bytes each), "
            f"got {len(body)} bytes",
            [FieldError("body", f"length {len(body)} is not a multiple of {row_bytes}")],
        )
    count = len(body) // row_bytes
    if count > max_rows:
        raise BatchTooLargeError(
            f"batch of {count} rows exceeds batch_max_rows={max_rows}",
            [FieldError("body", f"at most {max_rows} rows per call, got {count}")],
        )
    matrix = np.frombuffer(body, dtype="<f8").reshape(count, WIDTH)
    if _all_valid(matrix):
        return matrix
    bad = ~np.isfinite(matrix)
    if bad.any():
        where = [FieldError(f"rows[{i}][{j}]", "must be a finite number") for i, j in np.argwhere(bad)[:10]]
        raise InvalidRowsError("rows must hold finite numbers", where)
    return check_ranges(matrix)


def check_features(features: Any) -> list[float]:
    """The model-input row of one instance (API names or training headers); typed error otherwise."""
    row, errors = SCHEMA.check(features, prefix="features.")
    if errors:
        raise InvalidFeaturesError("; ".join(f"{e.field}: {e.problem}" for e in errors), errors)
    return row


class ModelServer:
    """One model behind the runner's three operations: batch scores, one score, metadata.

    The model is loaded by ``loader`` (e.g. ``lambda: load_runtime(name, version)``) either
    now (``load()``) or in a background thread (``load_in_background()``) so that the server
    can answer liveness while a large model is still loading; ``ready`` says whether it is in.
    """

    def __init__(
        self,
        model: str,
        loader: Callable[[], ModelRuntime],
        batch_max_rows: int,
        version_dir: Callable[[str], Path] | None = None,
        explain_max_rows: int = 100,
        explain_max_inflight: int = 1,
        explain_timeout_seconds: float = 5.0,
        explainer: Callable[[ModelRuntime], Explainer] | None = None,
    ):
        self.model = model
        self.batch_max_rows = batch_max_rows
        self.explain_max_rows = explain_max_rows
        self.explain_max_inflight = explain_max_inflight
        self.explain_timeout_seconds = explain_timeout_seconds
        self._make_explainer = explainer or (lambda runtime: ThreadExplainer(lambda: runtime))
        self._explainers: queue.SimpleQueue[Explainer] | None = None
        self._all_explainers: list[Explainer] = []
        self._explainers_lock = threading.Lock()
        self._loader = loader
        self._version_dir = version_dir
        self._runtime: ModelRuntime | None = None
        self.load_error: BaseException | None = None
        self._done = threading.Event()

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model now; keep the error (and re-raise it) if that fails."""
        try:
            runtime = self._loader()
            # One warm-up call so the first request does not pay lazy initialisation.
            runtime.predict(np.array([SCHEMA.encode(SCHEMA.example())]))
            # Move the model's (many, long-lived) objects out of the collector's reach: full
            # collections then stop walking them on the request path.
            gc.collect()
            gc.freeze()
            # Explainers that run apart (a child process) start now, not on the first request;
            # `ready` waits for them, so they exist before the runtime is published.
            self._explainer_pool(runtime)
            for explainer in self._all_explainers:
                start = getattr(explainer, "start_in_background", None)
                if start is not None:
                    start()
            self._runtime = runtime
            logger.info(
                "loaded model %s:%s (%s) in %.2f s",
                runtime.info.name,
                runtime.info.version,
                runtime.info.framework,
                runtime.info.load_seconds,
            )
        except BaseException as e:
            self.load_error = e
            logger.exception("could not load model %s", self.model)
            raise
        finally:
            self._done.set()

    def load_in_background(self) -> threading.Thread:
        """Start loading in a daemon thread; ``ready`` turns true when it is done."""

        def run() -> None:
            # A failure is logged by load() and reported by `failed` (liveness).
            with contextlib.suppress(BaseException):
                self.load()

        thread = threading.Thread(target=run, name=f"load-{self.model}", daemon=True)
        thread.start()
        return thread

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading finished (successfully or not); False on timeout."""
        return self._done.wait(timeout)

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and requests can be served, explanations included: an
        explainer starting apart (a child process) has finished starting, or failed to."""
        if self._runtime is None:
            return False
        return all(
            started.is_set()
            for started in (getattr(e, "started", None) for e in self._all_explainers)
            if started is not None
        )

    @property
    def failed(self) -> bool:
        """Whether loading failed (the process should be restarted)."""
        return self.load_error is not None

    @property
    def runtime(self) -> ModelRuntime:
        """The loaded runtime; :class:`ModelNotLoadedError` while it is not."""
        if self._runtime is None:
            if self.load_error is not None:
                raise ModelNotLoadedError(f"model {self.model} failed to load: {self.load_error}")
            raise ModelNotLoadedError(f"model {self.model} is still loading")
        return self._runtime

    # -- operations -------------------------------------------------------------------------

    def predict(self, rows: Any) -> dict[str, Any]:
        """Scores of a batch of model-input rows: ``{"model", "model_version", "scores"}``."""
        runtime = self.runtime
        matrix = check_rows(rows, self.batch_max_rows)
        scores = runtime.predict(matrix) if len(matrix) else np.empty(0)
        return {"model": runtime.info.name, "model_version": runtime.info.version, "scores": scores.tolist()}

    def predict_binary(self, body: bytes) -> tuple[bytes, str]:
        """Scores of a binary batch (see :func:`decode_rows`) as float64 bytes, and the version."""
        runtime = self.runtime
        matrix = decode_rows(body, self.batch_max_rows)
        scores = runtime.predict(matrix) if len(matrix) else np.empty(0)
        return np.ascontiguousarray(scores, dtype="<f8").tobytes(), runtime.info.version

    def predict_one(self, features: Any) -> dict[str, Any]:
        """Score and quality grade of one instance: ``{"model", "model_version", "score", "quality"}``."""
        runtime = self.runtime
        row = check_features(features)
        score = float(runtime.predict(np.array([row], dtype=np.float64))[0])
        if not math.isfinite(score):
            raise ValueError(f"model {runtime.info.name} returned a non-finite score {score!r}")
        return {
            "model": runtime.info.name,
            "model_version": runtime.info.version,
            "score": score,
            "quality": quality_grade(score),
        }

    def metadata(self) -> dict[str, Any]:
        """Identity, labels and training metadata (with its metrics) of the loaded model."""
        return self.runtime.info.as_dict()

    def explain(self, rows: Any, cancelled: threading.Event | None = None) -> dict[str, Any]:
        """Per-feature contributions of a batch of rows (see :class:`winemeup.runtimes.Explanation`).

        ``{"model", "model_version", "method", "base": [n], "contributions": [n][12], "scores": [n]}``.
        Bounded three ways: at most ``explain_max_rows`` rows (413); at most
        ``explain_max_inflight`` explanations at once, one per explainer
        (:class:`ExplainBusyError`, 429 with Retry-After); and a deadline of
        ``explain_timeout_seconds`` that stops the work (see :mod:`services.runner.explainer`;
        503), also stopped when ``cancelled`` is set. :class:`NotExplainableError` (422) when
        the model cannot be explained as served here.
        """
        runtime = self.runtime
        matrix = check_rows(rows, self.batch_max_rows)
        if len(matrix) > self.explain_max_rows:
            raise BatchTooLargeError(
                f"explanation of {len(matrix)} rows exceeds explain_max_rows={self.explain_max_rows}",
                [
                    FieldError(
                        "rows", f"at most {self.explain_max_rows} rows per explanation, got {len(matrix)}"
                    )
                ],
            )
        explainers = self._explainer_pool(runtime)
        try:
            explainer = explainers.get_nowait()
        except queue.Empty:
            raise ExplainBusyError(
                f"model {self.model} is computing as many explanations as it may at once; retry later",
                retry_after=self.explain_timeout_seconds,
            ) from None
        try:
            explanation = explainer.explain(
                matrix, self.explain_timeout_seconds, cancelled or threading.Event()
            )
        except ExplainUnavailable as e:
            raise NotExplainableError(str(e)) from e
        finally:
            explainers.put(explainer)
        return {
            "model": runtime.info.name,
            "model_version": runtime.info.version,
            "method": explanation.method,
            "base": explanation.base.tolist(),
            "contributions": explanation.contributions.tolist(),
            "scores": explanation.scores.tolist(),
        }

    @property
    def explain_busy(self) -> bool:
        """Whether every explainer is taken (a new explanation would get 429)."""
        return self._explainers is not None and self._explainers.empty()

    def _explainer_pool(self, runtime: ModelRuntime) -> queue.SimpleQueue[Explainer]:
        with self._explainers_lock:
            if self._explainers is None:
                pool: queue.SimpleQueue[Explainer] = queue.SimpleQueue()
                self._all_explainers = [
                    self._make_explainer(runtime) for _ in range(self.explain_max_inflight)
                ]
                for explainer in self._all_explainers:
                    pool.put(explainer)
                self._explainers = pool
            return self._explainers

    def insight(self) -> dict[str, Any]:
        """The served version's insight documents: ``intervals`` and ``drift_reference`` (null if absent)."""
        runtime = self.runtime
        documents: dict[str, Any] = {"intervals": None, "drift_reference": None}
        if self._version_dir is not None:
            base = self._version_dir(runtime.info.version)
            for key, relative in (("intervals", INTERVALS_FILE), ("drift_reference", DRIFT_REFERENCE_FILE)):
                path = base / relative
                if path.is_file():
                    documents[key] = json.loads(path.read_text())
        return {"model": runtime.info.name, "model_version": runtime.info.version, **documents}
