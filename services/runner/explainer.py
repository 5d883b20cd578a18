"""Explanations computed apart from predictions: chunked against a deadline, in a child process.

Why a child process: TreeSHAP and baseline Shapley run in native code that holds the GIL for
tens of milliseconds per row. Measured here on the extra_trees runner (one explanation of 20
rows at a time, in a thread of the serving process), single-row predictions went from p50
0.8 ms / p99 6 ms to p50 3.3 ms / p99 83 ms. In a child process at a lower CPU priority
(``nice``) the serving process keeps its GIL and the scheduler favours it; and a child can be
killed, which a thread cannot.

:func:`explain_in_chunks` is the deadline logic, used in the child (and by
:class:`ThreadExplainer`, for callers without a process to spare, such as unit tests): rows are
explained a chunk at a time, each chunk sized to about ``CHUNK_SECONDS`` of work, and between
chunks the work stops once the deadline has passed. :class:`ProcessExplainer` starts the child
once the runner's model is loaded (the child loads the model itself and builds its explainer:
seconds, outside any request), sends it the rows, and kills it when it has not answered
``KILL_GRACE_SECONDS`` after the deadline or when the request is cancelled; the next
explanation starts a new child (explanations meanwhile answer 503 with Retry-After). The runner
reports ready only once its explainer has started (or failed to), so the router never meets one
still loading. The child costs a second copy of the model in memory: measured here, 247 MB RSS
beside lightgbm's 133 MB worker and 387 MB beside extra_trees' 147 MB (it loads the framework
model and shap, where the worker may serve an ONNX artifact).

The child runs ``python -m services.runner.explainer MODEL VERSION SERVING_PATH NICENESS`` and
reads pickled requests from stdin, writing pickled answers to stdout (length-prefixed frames).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import numpy as np

from winemeup.errors import NotReady, ServiceError
from winemeup.runtimes import ExplainUnavailable, ModelRuntime
from winemeup.runtimes.base import Explanation
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.05
"""Work an explanation does between two looks at its deadline."""

KILL_GRACE_SECONDS = 1.0
"""How long past its deadline a child may take to stop by itself before it is killed."""

LOAD_TIMEOUT_SECONDS = 180.0
"""Longest a new child may take to load its model (not counted in an explanation's deadline)."""


class ExplainDeadlineError(ServiceError):
    """An explanation ran past its deadline and was stopped (send fewer rows)."""

    status = 503
    code = "deadline_exceeded"


class ExplainerStartingError(NotReady):
    """The explainer process is still loading its model: retry in a few seconds."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"5")]


class Explainer(Protocol):
    """Computes one explanation within ``timeout`` seconds, or raises ExplainDeadlineError."""

    def explain(self, matrix: np.ndarray, timeout: float, cancelled: threading.Event) -> Explanation: ...


def explain_in_chunks(
    runtime: ModelRuntime, matrix: np.ndarray, timeout: float, cancelled: Callable[[], bool] = lambda: False
) -> Explanation:
    """Explain ``matrix`` a chunk at a time; ExplainDeadlineError once ``timeout`` seconds passed."""
    if len(matrix) == 0:
        return runtime.explain(matrix)
    deadline = time.monotonic() + timeout
    parts: list[Explanation] = []
    done, chunk = 0, 1
    while done < len(matrix):
        if cancelled() or time.monotonic() > deadline:
            raise ExplainDeadlineError(
                f"explanation stopped after {done} of {len(matrix)} rows: its deadline of {timeout:g} s "
                "passed; explain fewer rows at a time"
            )
        tick = time.monotonic()
        parts.append(runtime.explain(matrix[done : done + chunk]))
        rows = len(parts[-1].scores)
        per_row = (time.monotonic() - tick) / rows
        done += rows
        # The next chunk: as many rows as this chunk's pace fits in CHUNK_SECONDS.
        chunk = max(1, int(CHUNK_SECONDS / per_row)) if per_row > 0 else len(matrix)
    return Explanation(
        parts[0].method,
        np.concatenate([p.base for p in parts]),
        np.concatenate([p.contributions for p in parts]).reshape(-1, matrix.shape[1]),
        np.concatenate([p.scores for p in parts]),
    )


class ThreadExplainer:
    """Explains in the caller's thread (stops between chunks; cannot be killed)."""

    def __init__(self, runtime: Callable[[], ModelRuntime]) -> None:
        self._runtime = runtime

    def explain(self, matrix: np.ndarray, timeout: float, cancelled: threading.Event) -> Explanation:
        return explain_in_chunks(self._runtime(), matrix, timeout, cancelled.is_set)


# -- the child's wire: length-prefixed pickles over its stdin and stdout ----------------------


def _write(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the explainer process closed its pipe")
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


class ProcessExplainer:
    """Explanations in a child process (see the module docstring); one explanation at a time."""

    def __init__(self, model: str, version: str, serving_path: str, niceness: int = 10) -> None:
        self.argv = [sys.executable, "-m", __name__, model, version, serving_path, str(niceness)]
        self.started = threading.Event()
        """Set once the first start finished, whether the child came up or not."""
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout is not None
        if not _wait_readable(child.stdout, LOAD_TIMEOUT_SECONDS):
            self._kill(child)
            raise ServiceError("the explainer process did not load its model in time")
        ready = _read(child.stdout)
        if ready != ("ready",):
            self._kill(child)
            raise ServiceError(f"the explainer process could not load its model: {ready!r}")
        return child

    @staticmethod
    def _kill(child: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()

    def start_in_background(self) -> threading.Thread:
        """Start the child now, in a thread (explanations meanwhile answer 503 with Retry-After)."""

        def run() -> None:
            with self._lock:
                if self._child is None:
                    try:
                        self._child = self._start()
                        logger.info("explainer process %d ready", self._child.pid)
                    except ServiceError:
                        logger.exception("the explainer process did not start")
            self.started.set()

        thread = threading.Thread(target=run, name="explainer-start", daemon=True)
        thread.start()
        return thread

    def explain(self, matrix: np.ndarray, timeout: float, cancelled: threading.Event) -> Explanation:
        # The pool hands each explainer to one request at a time: the lock is otherwise only
        # held by a start in the background (after a kill), which is not waited for.
        if not self._lock.acquire(blocking=False):
            raise ExplainerStartingError("the explainer is starting (loading its model); retry shortly")
        try:
            if self._child is None or self._child.poll() is not None:
                self._child = None
                raise ExplainerStartingError("the explainer is starting (loading its model); retry shortly")
            answer = self._ask(matrix, timeout, cancelled)
        finally:
            self._lock.release()
            if self._child is None:  # killed or gone: a new one loads while nobody waits for it
                self.start_in_background()
        kind = answer[0]
        if kind == "ok":
            return Explanation(*answer[1:])
        if kind == "deadline":
            raise ExplainDeadlineError(answer[1])
        if kind == "unavailable":
            raise ExplainUnavailable(answer[1])
        raise ServiceError(f"the explainer process failed: {answer[1]}")

    def _ask(self, matrix: np.ndarray, timeout: float, cancelled: threading.Event) -> tuple[Any, ...]:
        """Send one request to the child and read its answer; kill it when it overstays (lock held)."""
        child = self._child
        if child is None or child.stdin is None or child.stdout is None:
            raise ServiceError("the explainer process has no pipes")
        try:
            _write(child.stdin, (np.ascontiguousarray(matrix, dtype=np.float64), timeout))
            give_up = time.monotonic() + timeout + KILL_GRACE_SECONDS
            while not _wait_readable(child.stdout, 0.05):
                if cancelled.is_set() or time.monotonic() > give_up:
                    # It did not stop by itself (or nobody waits any more): kill it.
                    self._kill(child)
                    self._child = None
                    raise ExplainDeadlineError(
                        f"explanation stopped: its deadline of {timeout:g} s passed; explain fewer rows"
                    )
            answer: tuple[Any, ...] = _read(child.stdout)
            return answer
        except (OSError, EOFError) as e:
            self._kill(child)
            self._child = None
            raise ServiceError("the explainer process died; a new one is starting") from e

    def close(self) -> None:
        """Stop the child, if one runs."""
        with self._lock:
            if self._child is not None:
                self._kill(self._child)
                self._child = None


def _wait_readable(stream: IO[bytes], timeout: float) -> bool:
    readable, _, _ = select.select([stream], [], [], timeout)
    return bool(readable)


def _serve(model: str, version: str, serving_path: str, niceness: int) -> None:
    """The child: load the model, then answer explanation requests until stdin closes."""
    from winemeup.runtimes import load_runtime

    os.nice(niceness)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the pipe the parent reads.
    sys.stdout = sys.stderr
    runtime = load_runtime(model, version, path=serving_path)  # type: ignore[arg-type]
    # The first explanation builds the explainer (shap's TreeExplainer: seconds): do it now, so
    # no request's deadline pays for it.
    with contextlib.suppress(ExplainUnavailable):
        runtime.explain(np.array([SCHEMA.encode(SCHEMA.example())]))
    _write(stdout, ("ready",))
    while True:
        try:
            matrix, timeout = _read(stdin)
        except EOFError:
            return
        try:
            e = explain_in_chunks(runtime, matrix, timeout)
            answer: tuple[Any, ...] = ("ok", e.method, e.base, e.contributions, e.scores)
        except ExplainDeadlineError as err:
            answer = ("deadline", err.message)
        except ExplainUnavailable as err:
            answer = ("unavailable", str(err))
        except Exception as err:
            logger.exception("explanation failed")
            answer = ("error", f"{type(err).__name__}: {err}")
        _write(stdout, answer)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s explainer: %(message)s")
    _serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
