"""The accelerated path: a model's ONNX artifact, served by ONNX Runtime, with its parity check.

Training converts every model to ONNX and stores the artifact in the model's own version
directory of the model store (``accelerated/``), beside the framework's files:

* ``model.onnx``: the converted model (one input ``(n, 12)``, one output ``(n,)`` or ``(n, 1)``);
* ``reference.npz``: every row of the data set (``rows``, float64) and the framework's own
  scores for them (``scores``), so that parity can be checked where the framework is not
  installed;
* ``parity.json``: what training measured (parity, timings per batch size, converter).

:func:`load_accelerated` checks parity again at load, on the whole reference: the largest
``|score difference|`` must be at most :data:`PARITY_MAX_ABS_DIFF`, and it reports how many
integer grades flip. A missing or corrupt artifact, or one that fails parity, raises
:class:`AcceleratedUnavailable`, and the caller serves the framework instead.

The scikit-learn trees cast their input to float32 before they walk, LightGBM compares
float64 thresholds, XGBoost and CatBoost keep float32 splits: each artifact declares the
input type it was built for (float or double), and rows are cast to it here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from winemeup.runtimes.base import ExplainUnavailable, Explanation, ModelInfo, ModelRuntime
from winemeup.runtimes.explain import MODEL_AGNOSTIC, baseline_shapley
from winemeup.runtimes.store import StoreEntry

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "accelerated"
ONNX_FILE = "model.onnx"
REFERENCE_FILE = "reference.npz"
REPORT_FILE = "parity.json"

PARITY_MAX_ABS_DIFF = 1e-4
"""Largest |accelerated - framework| score difference over the reference rows that passes."""

CROSSOVER_MARGIN = 1.25
"""The framework must be this many times faster than ONNX at a batch size to take it over."""

PREDICT_CHUNK_ROWS = 256
"""Rows per ONNX Runtime call: larger batches are predicted in chunks to bound memory."""

ONNX = "onnx"
FRAMEWORK = "framework"
SERVING_PATHS = (ONNX, FRAMEWORK)
"""How a model is served: its ONNX artifact, or the framework's own predict."""


class AcceleratedUnavailable(RuntimeError):
    """The accelerated artifact is missing, unreadable, or fails its parity check."""


@dataclass(frozen=True)
class ParityReport:
    """How the accelerated path's scores compare with the framework's on the reference rows."""

    rows: int
    max_abs_diff: float
    grade_flips: int
    tolerance: float = PARITY_MAX_ABS_DIFF

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "grade_flips": self.grade_flips,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def grades(scores: np.ndarray) -> np.ndarray:
    """Integer grades of scores, as :func:`winemeup.schema.quality_grade` computes one."""
    return np.clip(np.floor(np.asarray(scores, dtype=np.float64) + 0.5), 0, 10).astype(np.int64)


def compare(expected: np.ndarray, got: np.ndarray) -> ParityReport:
    """The parity report of ``got`` (accelerated) against ``expected`` (framework) scores."""
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if expected.shape != got.shape:
        return ParityReport(
            rows=int(expected.size), max_abs_diff=float("inf"), grade_flips=int(expected.size)
        )
    diff = np.abs(expected - got)
    worst = float(np.max(diff)) if diff.size else 0.0
    if not np.all(np.isfinite(got)):
        worst = float("inf")
    return ParityReport(
        rows=int(expected.size),
        max_abs_diff=worst,
        grade_flips=int(np.count_nonzero(grades(expected) != grades(np.nan_to_num(got)))),
    )


class OnnxModelRuntime(ModelRuntime):
    """A model served from its ONNX artifact by ONNX Runtime, one intra-op thread.

    ``framework_loader``, when given, loads the framework's own runtime on first need, for
    two things ONNX does not do best: batches from ``crossover`` rows on (measured at training
    time; CatBoost's own predict, for one, overtakes ONNX Runtime's generic tree walker from a
    few hundred rows while ONNX is about ten times faster for one row), and explanations
    (TreeSHAP needs the trees in the framework's form). A runner that only sees small batches
    never pays the framework's memory; where it cannot be loaded, ONNX serves every size.
    """

    framework = ONNX
    serving_path = ONNX

    def __init__(
        self,
        model: Any,
        info: ModelInfo,
        batch_threads: int = 1,
        framework_loader: Callable[[], ModelRuntime] | None = None,
        crossover: int | None = None,
    ):
        super().__init__(model, info, batch_threads)
        session = model
        self._input_name = session.get_inputs()[0].name
        double = "double" in session.get_inputs()[0].type
        self.input_dtype: type[np.floating[Any]] = np.float64 if double else np.float32
        self._output_name = session.get_outputs()[0].name
        self.framework_loader = framework_loader
        self.crossover = crossover
        self._framework: ModelRuntime | None = None
        self.framework_error: str | None = None if framework_loader else "no framework to load"
        self._lock = threading.Lock()
        self.reference_mean: np.ndarray | None = None
        """The mean reference row (the data set's): the baseline of model-agnostic explanations."""

    @classmethod
    def _load_model(cls, stored: Any) -> Any:  # pragma: no cover - loaded by load_accelerated
        raise NotImplementedError("load it with load_accelerated(entry)")

    def framework_runtime(self) -> ModelRuntime | None:
        """The framework's runtime, loaded on first use; None when it cannot be (see ``framework_error``)."""
        if self._framework is None and self.framework_error is None:
            with self._lock:
                if self._framework is None and self.framework_error is None and self.framework_loader:
                    try:
                        self._framework = self.framework_loader()
                    except Exception as e:
                        self.framework_error = f"{type(e).__name__}: {e}"
                        logger.warning("model %s: its framework failed to load: %s", self.info.name, e)
        return self._framework

    def _predict(self, rows: np.ndarray) -> Any:
        if self.crossover is not None and rows.shape[0] >= self.crossover:
            framework = self.framework_runtime()
            if framework is not None:
                return framework._predict(rows)
        return self._onnx_predict(rows)

    def _onnx_predict_flat(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._onnx_predict(np.ascontiguousarray(rows)), dtype=np.float64).reshape(-1)

    def _onnx_predict(self, rows: np.ndarray) -> Any:
        rows = rows.astype(self.input_dtype, copy=False)
        if rows.shape[0] <= PREDICT_CHUNK_ROWS:
            return self.model.run([self._output_name], {self._input_name: rows})[0]
        # ONNX Runtime's arena keeps the largest intermediates it ever allocated (the RBF
        # kernel matrix of a 6,497-row batch grew the SVR worker by 470 MB): bound them.
        parts = [
            self.model.run([self._output_name], {self._input_name: rows[i : i + PREDICT_CHUNK_ROWS]})[0]
            for i in range(0, rows.shape[0], PREDICT_CHUNK_ROWS)
        ]
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts])

    def _explain(self, rows: np.ndarray) -> Explanation:
        if self.info.name in MODEL_AGNOSTIC and self.reference_mean is not None:
            return baseline_shapley(self._onnx_predict_flat, rows, self.reference_mean)
        framework = self.framework_runtime()
        if framework is None:
            raise ExplainUnavailable(
                f"model {self.info.name} is served from its ONNX artifact and its framework "
                f"({self.info.framework}) cannot be loaded here ({self.framework_error}): "
                "explanations need it"
            )
        return framework._explain(rows)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread: a request's few rows are done before a thread pool would wake up, and the
    # other core belongs to the server. Spinning threads would burn it while idle.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def artifact_dir(entry_path: Path) -> Path:
    """Where a model version's accelerated artifact lives."""
    return Path(entry_path) / ARTIFACT_DIR


def read_reference(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """The reference rows and the framework's scores for them."""
    with np.load(directory / REFERENCE_FILE) as ref:
        rows = np.ascontiguousarray(ref["rows"], dtype=np.float64)
        scores = np.asarray(ref["scores"], dtype=np.float64).reshape(-1)
    if rows.ndim != 2 or rows.shape[0] != scores.shape[0] or rows.shape[0] == 0:
        raise ValueError(f"reference rows {rows.shape} do not match scores {scores.shape}")
    return rows, scores


def open_accelerated(
    entry: StoreEntry, framework: str, batch_threads: int = 1
) -> tuple[OnnxModelRuntime, ParityReport]:
    """Load the ONNX artifact of a store entry and measure its parity on the reference rows.

    Raises :class:`AcceleratedUnavailable` when the artifact is missing, unreadable, or fails
    to predict; a parity failure is only reported (see :func:`load_accelerated`).
    """
    directory = artifact_dir(entry.path)
    model_file = directory / ONNX_FILE
    if not model_file.is_file():
        raise AcceleratedUnavailable(f"no accelerated artifact ({model_file} is missing)")
    try:
        session = _session(model_file)
        rows, expected = read_reference(directory)
    except ImportError as e:
        raise AcceleratedUnavailable(f"onnxruntime is not installed ({e})") from e
    except Exception as e:  # a corrupt file fails in protobuf, numpy or zipfile: all mean "unusable"
        raise AcceleratedUnavailable(f"accelerated artifact unreadable: {type(e).__name__}: {e}") from e
    info = ModelInfo(
        name=entry.name,
        version=entry.version,
        framework=framework,
        labels=dict(entry.labels),
        metadata=dict(entry.metadata),
    )
    try:
        runtime = OnnxModelRuntime(session, info, batch_threads)
        report = compare(expected, runtime.predict(rows))
        runtime.reference_mean = rows.mean(axis=0)
    except Exception as e:
        raise AcceleratedUnavailable(f"accelerated artifact fails to predict: {type(e).__name__}: {e}") from e
    release_freed_memory()
    return runtime, report


def release_freed_memory() -> None:
    """Hand the heap that loading freed back to the OS (glibc keeps it otherwise).

    Building a session parses the whole model and frees most of it again: measured on the
    extra-trees artifact, the process kept 450 MB after loading and 110 MB after this.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def load_accelerated(entry: StoreEntry, framework: str, batch_threads: int = 1) -> OnnxModelRuntime:
    """The ONNX runtime of a store entry, only if its artifact passes parity.

    Raises :class:`AcceleratedUnavailable` (with the reason) when the artifact is missing,
    cannot be loaded, or its scores differ from the framework's by more than the tolerance.
    """
    started = time.perf_counter()
    runtime, report = open_accelerated(entry, framework, batch_threads)
    if not report.passed:
        raise AcceleratedUnavailable(
            f"accelerated artifact fails parity: largest difference {report.max_abs_diff:.3g} "
            f"> {report.tolerance:g} over {report.rows} rows, {report.grade_flips} grades flip"
        )
    info = runtime.info
    runtime.info = ModelInfo(
        name=info.name,
        version=info.version,
        framework=framework,
        labels=info.labels,
        metadata=info.metadata,
        load_seconds=time.perf_counter() - started,
        serving={"path": ONNX, "parity": report.as_dict(), **_training_report(artifact_dir(entry.path))},
    )
    return runtime


def _training_report(directory: Path) -> dict[str, Any]:
    try:
        report = json.loads((directory / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    out = {key: report[key] for key in ("converter", "input_type", "timings") if key in report}
    crossover = crossover_rows(report.get("timings") or [])
    if crossover is not None:
        out["crossover_rows"] = crossover
    return out


def crossover_rows(timings: list[dict[str, Any]]) -> int | None:
    """The smallest timed batch size from which the framework was clearly faster at every larger size.

    "Clearly": by :data:`CROSSOVER_MARGIN`, so that timing noise does not hand a model's
    batches to a framework that is only as fast (and costs its memory once loaded).

    ``timings``: what training measured per batch size (``rows``, ``framework_seconds``,
    ``onnx_seconds``). ``None`` when ONNX was at least as fast at the largest size.
    """
    crossover = None
    for timing in sorted(timings, key=lambda t: t["rows"], reverse=True):
        if timing["framework_seconds"] * CROSSOVER_MARGIN < timing["onnx_seconds"]:
            crossover = int(timing["rows"])
        else:
            break
    return crossover


def write_artifact(directory: Path, onnx_model: bytes, rows: np.ndarray, scores: np.ndarray) -> None:
    """Write an accelerated artifact and its reference (training's side of :func:`load_accelerated`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).write_bytes(onnx_model)
    np.savez_compressed(
        directory / REFERENCE_FILE,
        rows=np.ascontiguousarray(rows, dtype=np.float64),
        scores=np.asarray(scores, dtype=np.float64).reshape(-1),
    )


def write_report(directory: Path, report: dict[str, Any]) -> None:
    """Write what training measured of the artifact (``parity.json``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
