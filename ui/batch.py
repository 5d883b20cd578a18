"""Scoring a CSV file: read it, check every row locally, send the good rows in chunks.

:func:`score_csv` takes the file's bytes (or pasted text), so the Streamlit tab, the tests and
any script share one code path. The router takes at most ``batch_max_rows`` instances per
call, so rows go in chunks of ``chunk_rows`` (a UI setting that must not exceed it). The model
of the first chunk is pinned for the others, so a hot swap of the default model in the middle
of a file cannot mix two models in one result.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ui.client import BatchPrediction, RouterValidationError
from ui.wine_csv import ParsedCsv, RowProblem, WineRow, parse_wine_csv

logger = logging.getLogger(__name__)

T = TypeVar("T")
_INSTANCE_FIELD = re.compile(r"^instances\[(\d+)\]\.?(.*)$")

SCORE_COLUMN = "predicted_score"
GRADE_COLUMN = "predicted_quality"
MODEL_COLUMN = "model"


class BatchScorer(Protocol):
    """What :func:`score_csv` needs of a router client."""

    def predict_batch(
        self, instances: Sequence[dict[str, float | str]], model: str | None = None
    ) -> BatchPrediction: ...


class BatchRejectedError(RouterValidationError):
    """The router rejected rows the local checks let through; ``problems`` are by row number."""

    def __init__(self, user_message: str, problems: list[RowProblem]):
        super().__init__(user_message, [], 422)
        self.problems = problems


@dataclass(frozen=True)
class ScoredRow:
    """A row of the file with its prediction."""

    row: WineRow
    score: float
    quality: int
    cached: bool


@dataclass
class BatchOutcome:
    """Everything the Batch tab shows: what was scored, what was not, and how long it took."""

    parsed: ParsedCsv
    scored: list[ScoredRow]
    model: str | None
    model_version: str | None
    seconds: float
    requests: int

    @property
    def problems(self) -> list[RowProblem]:
        return self.parsed.problems


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_csv(
    client: BatchScorer,
    data: bytes | str,
    *,
    wine_type: str | None = None,
    model: str | None = None,
    chunk_rows: int = 1000,
    max_rows: int | None = None,
) -> BatchOutcome:
    """Parse ``data``, report bad rows, score the good ones through the batch endpoint.

    Raises :class:`ui.wine_csv.CsvFormatError` for an unusable file (or one of more than
    ``max_rows`` rows, refused before anything is sent), a
    :class:`ui.client.RouterCallError` when the router fails (``BatchRejectedError`` when it rejects
    rows, mapped back to row numbers).
    """
    parsed = parse_wine_csv(data, wine_type=wine_type, max_rows=max_rows)
    started = time.perf_counter()
    scored: list[ScoredRow] = []
    used_model, used_version, requests = model, None, 0
    for chunk in chunked(parsed.rows, chunk_rows):
        try:
            answer = client.predict_batch([r.instance for r in chunk], model=used_model)
        except RouterValidationError as e:
            raise _rejected(e, chunk) from e
        requests += 1
        used_model, used_version = answer.model, answer.model_version
        scored.extend(
            ScoredRow(row, p.score, p.quality, p.cached)
            for row, p in zip(chunk, answer.predictions, strict=True)
        )
    seconds = time.perf_counter() - started
    logger.info(
        "scored %d rows in %d requests (%.3fs), %d bad rows",
        len(scored),
        requests,
        seconds,
        len(parsed.bad_rows),
    )
    return BatchOutcome(parsed, scored, used_model, used_version, seconds, requests)


def results_csv(outcome: BatchOutcome) -> bytes:
    """The download: the file's own columns of every scored row, plus score, grade and model."""
    columns = list(outcome.parsed.columns)
    if not outcome.parsed.has_wine_type:
        columns.append("wine_type")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", *columns, SCORE_COLUMN, GRADE_COLUMN, MODEL_COLUMN])
    for item in outcome.scored:
        cells = dict(item.row.cells)
        cells.setdefault("wine_type", str(item.row.instance["wine_type"]))
        writer.writerow(
            [
                item.row.row,
                *(cells.get(c, "") for c in columns),
                f"{item.score:.4f}",
                item.quality,
                outcome.model or "",
            ]
        )
    return out.getvalue().encode("utf-8")


def problems_csv(problems: Sequence[RowProblem]) -> bytes:
    """The bad rows as a small CSV (row, line, field, problem), for fixing the file."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "line", "field", "problem"])
    for p in problems:
        writer.writerow([p.row, p.line, p.field, p.problem])
    return out.getvalue().encode("utf-8")


def _rejected(error: RouterValidationError, chunk: Sequence[WineRow]) -> BatchRejectedError:
    too_big = [d.problem for d in error.details if d.field == "instances"]
    if too_big or error.status == 413:
        reason = too_big[0] if too_big else "request body too large"
        return BatchRejectedError(
            f"The router refused a batch of {len(chunk)} rows ({reason}), so nothing was scored. "
            "Set WINEMEUP_UI_BATCH_CHUNK_ROWS to at most the router's WINEMEUP_ROUTER_BATCH_MAX_ROWS.",
            [],
        )
    problems: list[RowProblem] = []
    for detail in error.details:
        match = _INSTANCE_FIELD.match(detail.field)
        if match and int(match.group(1)) < len(chunk):
            row = chunk[int(match.group(1))]
            problems.append(RowProblem(row.row, row.line, match.group(2) or "(row)", detail.problem))
        else:
            problems.append(RowProblem(0, 0, detail.field, detail.problem))
    return BatchRejectedError(
        f"The router rejected rows that passed the local checks, so nothing was scored: {error.user_message}",
        problems,
    )
