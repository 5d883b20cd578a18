"""Loading the UCI Wine Quality data: checksum, parse, map to the feature schema; download.

The two CSV files ship with the repository (``data/wine-quality/``, CC BY 4.0, see its
ATTRIBUTION.md); the official archive is downloaded only into a folder that lacks them, or
on request to refresh them (``python -m training download --force``).

Both CSV files are read into one :class:`WineData` with the model-input columns in schema
order (``SCHEMA.names``) and ``wine_type`` added from the file a row came from (red=1.0,
white=0.0). Feature names come from :mod:`winemeup.schema`; the CSV headers are mapped with
``SCHEMA.canonical_name``. Every problem stops with a :class:`DataError` that names the file,
the line or column and what is wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA, TARGET, WINE_TYPES

logger = logging.getLogger(__name__)

CSV_FILES: Mapping[str, str] = {"red": "winequality-red.csv", "white": "winequality-white.csv"}
"""The CSV file of each wine type, as named in the UCI archive."""

SHA256: Mapping[str, str] = {
    "winequality-red.csv": "4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e",
    "winequality-white.csv": "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836",
}
"""Published SHA-256 of each original CSV file (UCI Machine Learning Repository, id 186)."""

_WINE_TYPE = "wine_type"
_DELIMITER = ";"


class DataError(Exception):
    """The training data cannot be used; the message says which file and what is wrong."""


class DownloadError(DataError):
    """The archive could not be fetched or does not hold the expected files."""


class ChecksumMismatchError(DataError):
    """A CSV file's SHA-256 differs from the published one."""


class MalformedDataError(DataError):
    """A CSV file is not the expected table: missing column, bad cell, wrong field count."""


@dataclass(frozen=True)
class WineData:
    """Both wine types in one table: model-input rows, quality scores and provenance."""

    X: np.ndarray
    """(n, 12) float64 model-input rows in ``SCHEMA.names`` order; wine_type red=1.0, white=0.0."""
    y: np.ndarray
    """(n,) float64 quality scores (integers 0..10)."""
    sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of each CSV file the rows came from."""

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.X.shape[1] != len(SCHEMA) or self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"inconsistent shapes X{self.X.shape} y{self.y.shape}")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def is_red(self) -> np.ndarray:
        """Boolean mask of the red wines."""
        return self.X[:, SCHEMA.names.index(_WINE_TYPE)] >= 0.5

    @property
    def wine_types(self) -> np.ndarray:
        """``"red"`` or ``"white"`` per row."""
        return np.where(self.is_red, WINE_TYPES[0], WINE_TYPES[1])

    @property
    def dataset_sha256(self) -> str:
        """The data set's identity: :func:`dataset_sha256` of the files' digests."""
        return dataset_sha256(self.sha256)

    def groups(self) -> np.ndarray:
        """Group id per row: rows with identical features and wine type share one id.

        The data holds many exact duplicates; splits keep all copies of a row on one side.
        """
        _, inverse = np.unique(self.X, axis=0, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64)

    def strata(self) -> np.ndarray:
        """Stratification label per row: wine type and quality grade together."""
        return (self.is_red.astype(np.int64) * 100 + self.y.astype(np.int64)).astype(np.int64)

    def subset(self, index: np.ndarray) -> WineData:
        """The rows at ``index`` (same provenance)."""
        return WineData(X=self.X[index], y=self.y[index], sha256=dict(self.sha256))

    def sample(self, per_type: int, seed: int = 0) -> WineData:
        """At most ``per_type`` random rows of each wine type (for quick tests and trials)."""
        rng = np.random.default_rng(seed)
        picks = []
        for mask in (self.is_red, ~self.is_red):
            rows = np.flatnonzero(mask)
            picks.append(rng.choice(rows, size=min(per_type, rows.size), replace=False))
        return self.subset(np.sort(np.concatenate(picks)))


def dataset_sha256(digests: Mapping[str, str]) -> str:
    """One SHA-256 over the files' SHA-256s (sorted by file name); labels use its first 12 chars."""
    joined = "\n".join(f"{name}:{digest}" for name, digest in sorted(digests.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, content: bytes | None = None) -> str:
    """Check a CSV file (or its bytes) against its published SHA-256; return the digest."""
    expected = SHA256.get(path.name)
    if expected is None:
        raise DataError(f"{path}: no published checksum for a file of this name")
    actual = hashlib.sha256(content).hexdigest() if content is not None else sha256_of(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {actual} "
            "(the file is not the original UCI file; delete it to download it again)"
        )
    return actual


def download_archive(
    url: str, data_dir: Path, timeout: float = 60.0, verify: bool = True, force: bool = False
) -> list[Path]:
    """Fetch the UCI zip archive and write the missing CSV files into ``data_dir``.

    With ``force``, files already there are replaced too (a refresh of the shipped copies).
    Each CSV is checked against its published SHA-256 before it is written, and written
    atomically (temporary file, then rename), so a failed download leaves no partial file
    and never damages the copy already there. Returns the paths written.
    """
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download the data archive from {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download the data archive from {url}: {reason}") from e
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{url}: the download is not a zip archive ({len(payload)} bytes)") from e
    members = {Path(info.filename).name: info for info in archive.infolist() if not info.is_dir()}
    data_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for file_name in CSV_FILES.values():
        target = data_dir / file_name
        if target.exists() and not force:
            continue
        info = members.get(file_name)
        if info is None:
            raise DownloadError(
                f"{url}: the archive has no {file_name} (it holds: {', '.join(sorted(members)) or 'nothing'})"
            )
        content = archive.read(info)
        if verify:
            verify_checksum(target, content)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{file_name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        logger.info("wrote %s (%d bytes)", target, len(content))
        written.append(target)
    return written


def ensure_data(
    data_dir: Path, url: str, timeout: float = 60.0, verify: bool = True, force: bool = False
) -> dict[str, str]:
    """Make sure both CSV files are in ``data_dir`` (download them if absent) and verified.

    The repository ships both files in ``data/wine-quality/``, so the download only runs for
    another folder, or with ``force`` (download again and replace them). Returns the SHA-256
    of each file by file name.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a folder (expected the folder holding the CSV files)")
    if force:
        logger.info("%s: downloading the archive again to replace the CSV files", data_dir)
        download_archive(url, data_dir, timeout=timeout, verify=verify, force=True)
    missing = [name for name in CSV_FILES.values() if not (data_dir / name).is_file()]
    if missing:
        logger.info("%s: %s missing; fetching the archive", data_dir, ", ".join(missing))
        try:
            download_archive(url, data_dir, timeout=timeout, verify=verify)
        except DownloadError as e:
            raise DownloadError(f"{data_dir}: {', '.join(missing)} not found there, and {e}") from e
    digests: dict[str, str] = {}
    for name in CSV_FILES.values():
        path = data_dir / name
        digests[name] = verify_checksum(path) if verify else sha256_of(path)
    return digests


def parse_csv(path: Path, text: str, wine_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one UCI CSV file's text into model-input rows and quality scores.

    The header is mapped to API names through the schema, so column order does not matter;
    ``wine_type`` is set from the file. Raises :class:`MalformedDataError` naming the line
    and column of the first problem.
    """
    if wine_type not in WINE_TYPES:
        raise ValueError(f"unknown wine type {wine_type!r}")
    first_line = text.split("\n", 1)[0]
    if _DELIMITER not in first_line and "," in first_line:
        raise MalformedDataError(f"{path}, line 1: the header is not separated by '{_DELIMITER}'")
    reader = csv.reader(io.StringIO(text), delimiter=_DELIMITER, quotechar='"', strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise MalformedDataError(f"{path}: the file is empty (expected a header line)") from None
    except csv.Error as e:
        raise MalformedDataError(f"{path}, line 1: unreadable header: {e}") from e
    columns = _header_columns(path, header)
    type_value = 1.0 if wine_type == WINE_TYPES[0] else 0.0
    rows: list[list[float]] = []
    scores: list[float] = []
    try:
        for line_fields in reader:
            if not line_fields:
                continue
            row, score = _parse_row(path, reader.line_num, line_fields, len(header), columns, type_value)
            rows.append(row)
            scores.append(score)
    except csv.Error as e:
        raise MalformedDataError(f"{path}, line {reader.line_num}: {e}") from e
    if not rows:
        raise MalformedDataError(f"{path}: no data rows after the header")
    return np.asarray(rows, dtype=np.float64), np.asarray(scores, dtype=np.float64)


def _header_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Column position of each API name (and ``quality``); every column known, none twice."""
    columns: dict[str, int] = {}
    for position, raw in enumerate(header):
        label = raw.strip()
        name = TARGET if label == TARGET else SCHEMA.canonical_name(label)
        if name is None or name == _WINE_TYPE:
            raise MalformedDataError(f"{path}, line 1: unexpected column '{label}'")
        if name in columns:
            raise MalformedDataError(f"{path}, line 1: column '{label}' appears twice")
        columns[name] = position
    wanted = [f.name for f in SCHEMA.measurements] + [TARGET]
    missing = [SCHEMA[n].header if n != TARGET else n for n in wanted if n not in columns]
    if missing:
        raise MalformedDataError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}")
    return columns


def _parse_row(
    path: Path, line: int, fields: list[str], width: int, columns: dict[str, int], type_value: float
) -> tuple[list[float], float]:
    """One data line: the model-input row in schema order and its quality grade."""
    if len(fields) != width:
        raise MalformedDataError(f"{path}, line {line}: expected {width} fields, got {len(fields)}")
    row = [
        type_value if f.name == _WINE_TYPE else _number(path, line, f.header, fields[columns[f.name]])
        for f in SCHEMA.features
    ]
    score = _number(path, line, TARGET, fields[columns[TARGET]])
    if score != int(score) or not QUALITY_MIN <= score <= QUALITY_MAX:
        raise MalformedDataError(
            f"{path}, line {line}, column '{TARGET}': expected an integer grade "
            f"{QUALITY_MIN}..{QUALITY_MAX}, got {score:g}"
        )
    return row, score


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise MalformedDataError(f"{path}, line {line}, column '{column}': not a number: {cell!r}") from None
    if not math.isfinite(value):
        raise MalformedDataError(f"{path}, line {line}, column '{column}': not a finite number: {cell!r}")
    return value


def read_wine_data(data_dir: Path, digests: Mapping[str, str] | None = None) -> WineData:
    """Read both CSV files from ``data_dir`` (no download, no checksum check)."""
    parts_x: list[np.ndarray] = []
    parts_y: list[np.ndarray] = []
    sha: dict[str, str] = {}
    for wine_type, file_name in CSV_FILES.items():
        path = data_dir / file_name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from e
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedDataError(f"{path}: not UTF-8 text (byte {e.start})") from e
        X, y = parse_csv(path, text, wine_type)
        parts_x.append(X)
        parts_y.append(y)
        sha[file_name] = (digests or {}).get(file_name) or hashlib.sha256(raw).hexdigest()
        logger.info("read %s: %d rows", path, len(y))
    return WineData(X=np.vstack(parts_x), y=np.concatenate(parts_y), sha256=sha)


def load_wine_data(
    data_dir: Path, url: str | None = None, timeout: float = 60.0, verify: bool = True
) -> WineData:
    """Download (if absent and ``url`` is given), verify and read both CSV files."""
    if url is not None:
        digests = ensure_data(data_dir, url, timeout=timeout, verify=verify)
    else:
        digests = {}
        if verify:
            for name in CSV_FILES.values():
                path = data_dir / name
                if not path.is_file():
                    raise DataError(f"{path}: file not found")
                digests[name] = verify_checksum(path)
    return read_wine_data(data_dir, digests)
