"""Reading a wine maker's CSV file into validated instances, row by row.

Pure: no Streamlit, no HTTP. Two layouts are accepted:

* the UCI layout: ``;``-separated, quoted training headers (``"fixed acidity"``, ``"pH"``),
  with or without a ``quality`` column;
* API names (``fixed_acidity``, ``ph``), ``,``-separated.

A ``wine_type`` column (``red``/``white``) is optional: without it every row gets the wine
type the person chose for the whole file, or, when they chose none, the one its file name
names (``winequality-white.csv``); :func:`choose_wine_type` decides and says which. Never a
silent default: with neither, the file is refused. Columns are matched through
:data:`winemeup.schema.SCHEMA`; unknown columns are kept for the download but not sent. Every
bad row is reported by its row number (1 = first data row) and field; none is dropped
silently. A file longer than the caller's row limit is refused whole, with a message, before
any row is checked.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from winemeup.schema import SCHEMA, TARGET, WINE_TYPES

WINE_TYPE = "wine_type"
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_TYPE_IN_NAME = re.compile(r"(?<![a-z])(" + "|".join(WINE_TYPES) + r")(?![a-z])")


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (empty, no header, required columns missing)."""


@dataclass(frozen=True)
class RowProblem:
    """Why one row of the file cannot be scored."""

    row: int
    """Data row number, 1 for the first row under the header."""
    line: int
    """Line number in the file (the header is line 1)."""
    field: str
    problem: str


@dataclass(frozen=True)
class WineRow:
    """One valid row: the instance sent to the router (API names) and what came with it."""

    row: int
    line: int
    instance: dict[str, float | str]
    quality: float | None
    cells: dict[str, str]
    """The row's original cells by original column name (kept for the download)."""


@dataclass
class ParsedCsv:
    """A file read and checked: the good rows, the problems and what the header held."""

    rows: list[WineRow]
    problems: list[RowProblem]
    columns: list[str]
    """The original column names, in file order."""
    delimiter: str
    has_wine_type: bool
    has_quality: bool
    ignored_columns: list[str] = field(default_factory=list)
    total_rows: int = 0

    @property
    def bad_rows(self) -> list[int]:
        """Row numbers with at least one problem, ascending."""
        return sorted({p.row for p in self.problems})


@dataclass(frozen=True)
class WineTypeChoice:
    """The wine type for the rows of a file without a ``wine_type`` column, and why."""

    wine_type: str | None
    """``red``, ``white``, or None: nothing chosen and nothing in the file name."""
    note: str
    """What the screen says about it (empty when there is nothing to say)."""
    doubtful: bool = False
    """The person's choice and the file name disagree."""


def wine_type_from_name(file_name: str | None) -> str | None:
    """``red`` or ``white`` when a file's name says so as a word (``winequality-white.csv``,
    ``Red wines.csv``; not ``tired.csv``); None when it names neither or both."""
    if not file_name:
        return None
    found = set(_TYPE_IN_NAME.findall(file_name.rsplit("/", 1)[-1].lower()))
    return found.pop() if len(found) == 1 else None


def choose_wine_type(chosen: str | None, file_name: str | None) -> WineTypeChoice:
    """The person's choice wins; without one, the type the file name says; else none."""
    inferred = wine_type_from_name(file_name)
    if chosen is not None:
        if inferred is not None and inferred != chosen:
            return WineTypeChoice(
                chosen,
                f"No wine_type column: every row was scored as **{chosen}**, as chosen, "
                f"but the file name '{file_name}' says {inferred}.",
                doubtful=True,
            )
        return WineTypeChoice(
            chosen, f"No wine_type column: every row was scored as **{chosen}**, as chosen."
        )
    if inferred is not None:
        return WineTypeChoice(
            inferred,
            f"No wine_type column: every row was scored as **{inferred}**, inferred from the file name "
            f"'{file_name}'. Choose red or white above to score it otherwise.",
        )
    return WineTypeChoice(None, "")


def decode(data: bytes | str) -> str:
    """Text of an uploaded file: UTF-8 (with or without BOM), else Latin-1."""
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def sniff_delimiter(header_line: str) -> str:
    """``;`` (UCI), tab or ``,``: whichever the header line uses."""
    for candidate in (";", "\t"):
        if candidate in header_line:
            return candidate
    return ","


def column_name(header: str) -> str | None:
    """The API name (or ``quality``) a column header stands for, or None when unknown.

    Exact API names and training headers first, then a lenient match that ignores case,
    surrounding spaces and ``_`` vs space (``Fixed Acidity``, ``PH``).
    """
    cleaned = header.strip().strip('"').strip()
    if cleaned == TARGET:
        return TARGET
    exact = SCHEMA.canonical_name(cleaned)
    if exact is not None:
        return exact
    folded = _fold(cleaned)
    if folded == TARGET:
        return TARGET
    for feature in SCHEMA.features:
        if folded in (_fold(feature.name), _fold(feature.header)):
            return feature.name
    return None


def parse_wine_csv(data: bytes | str, wine_type: str | None = None, max_rows: int | None = None) -> ParsedCsv:
    """Read and check a CSV file; ``wine_type`` applies to every row when there is no such column.

    Raises :class:`CsvFormatError` when the file as a whole is unusable, including a file of
    more than ``max_rows`` data rows; problems of single rows are collected in
    :attr:`ParsedCsv.problems` and those rows left out of ``rows``.
    """
    if wine_type is not None and wine_type not in WINE_TYPES:
        raise ValueError(f"wine_type must be one of {WINE_TYPES}, got {wine_type!r}")
    text = decode(data)
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise CsvFormatError("The file is empty: expected a header line and at least one row.")
    if max_rows is not None:
        data_lines = sum(1 for line in lines[header_index + 1 :] if line.strip())
        if data_lines > max_rows:
            raise CsvFormatError(
                f"The file has {data_lines:,} rows; at most {max_rows:,} are scored at once. "
                "Split it into files of at most that many rows."
            )
    delimiter = sniff_delimiter(lines[header_index])
    reader = csv.reader(io.StringIO("\n".join(lines[header_index:])), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    mapping = _map_columns(header, wine_type)

    parsed = ParsedCsv(
        rows=[],
        problems=[],
        columns=header,
        delimiter=delimiter,
        has_wine_type=WINE_TYPE in mapping.values(),
        has_quality=TARGET in mapping.values(),
        ignored_columns=[h for i, h in enumerate(header) if i not in mapping],
    )
    row_number = 0
    for offset, cells in enumerate(reader):
        line = header_index + offset + 2
        if not any(c.strip() for c in cells):
            continue
        row_number += 1
        problems, row = _read_row(cells, header, mapping, wine_type, delimiter, row_number, line)
        if problems:
            parsed.problems.extend(problems)
        elif row is not None:
            parsed.rows.append(row)
    parsed.total_rows = row_number
    if row_number == 0:
        raise CsvFormatError("The file has a header but no data rows.")
    return parsed


def _fold(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def _map_columns(header: list[str], wine_type: str | None) -> dict[int, str]:
    """Column index -> API name (or ``quality``); raise when the header cannot work."""
    mapping: dict[int, str] = {}
    seen: dict[str, str] = {}
    for index, name in enumerate(header):
        canonical = column_name(name)
        if canonical is None:
            continue
        if canonical in seen:
            raise CsvFormatError(
                f"Columns '{seen[canonical]}' and '{name}' both mean {canonical}: keep one of them."
            )
        seen[canonical] = name
        mapping[index] = canonical
    missing = [f.header for f in SCHEMA.measurements if f.name not in seen]
    if missing:
        unknown = [h for i, h in enumerate(header) if i not in mapping]
        hint = f" Columns not recognised: {', '.join(repr(u) for u in unknown)}." if unknown else ""
        raise CsvFormatError(
            f"Missing column(s): {', '.join(missing)}. Expected the UCI headers "
            f"(e.g. 'fixed acidity', 'pH') or the API names (e.g. fixed_acidity, ph).{hint}"
        )
    if WINE_TYPE not in seen and wine_type is None:
        raise CsvFormatError(
            "The file has no wine_type column and its name says neither red nor white: "
            "choose red or white for the whole file."
        )
    return mapping


def _read_row(
    cells: list[str],
    header: list[str],
    mapping: dict[int, str],
    wine_type: str | None,
    delimiter: str,
    row_number: int,
    line: int,
) -> tuple[list[RowProblem], WineRow | None]:
    if len(cells) != len(header):
        return [
            RowProblem(row_number, line, "(row)", f"has {len(cells)} values, the header has {len(header)}")
        ], None
    instance: dict[str, float | str] = {}
    problems: list[RowProblem] = []
    quality: float | None = None
    unparsed: set[str] = set()
    for index, name in mapping.items():
        raw = cells[index].strip().strip('"').strip()
        if name == TARGET:
            quality = _number(raw, delimiter)
            continue
        value, problem = _cell_value(name, raw, delimiter)
        if problem is not None:
            unparsed.add(name)
            problems.append(RowProblem(row_number, line, name, problem))
        elif value is not None:
            instance[name] = value
    if WINE_TYPE not in instance and WINE_TYPE not in unparsed and wine_type is not None:
        instance[WINE_TYPE] = wine_type
    _, errors = SCHEMA.check(instance)
    for error in errors:
        if error.field in unparsed and error.problem == "field required":
            continue
        if unparsed and error.field == "free_sulfur_dioxide" and "must not exceed" in error.problem:
            continue
        problems.append(RowProblem(row_number, line, error.field, error.problem))
    if problems:
        return sorted(
            problems, key=lambda p: SCHEMA.names.index(p.field) if p.field in SCHEMA.names else -1
        ), None
    ordered = {name: instance[name] for name in SCHEMA.names}
    return [], WineRow(row_number, line, ordered, quality, dict(zip(header, cells, strict=True)))


def _cell_value(name: str, raw: str, delimiter: str) -> tuple[float | str | None, str | None]:
    """The value of one feature cell, or why it has none."""
    if name == WINE_TYPE:
        if raw.lower() in WINE_TYPES:
            return raw.lower(), None
        shown = f"'{raw}'" if raw else "empty"
        return None, f"must be red or white, got {shown}"
    if raw == "":
        return None, "value missing"
    number = _number(raw, delimiter)
    if number is None:
        return None, f"must be a number, got '{raw}'"
    return number, None


def _number(raw: str, delimiter: str) -> float | None:
    """A float from a cell; a decimal comma (``7,4``) is accepted in ``;``-separated files."""
    if delimiter != "," and _DECIMAL_COMMA.match(raw):
        raw = raw.replace(",", ".")
    try:
        return float(raw)
    except ValueError:
        return None
