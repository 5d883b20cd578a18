"""The CSV reader of the Batch tab: both layouts, wine type handling, bad rows by number."""

from __future__ import annotations

from pathlib import Path

import pytest

from ui.wine_csv import CsvFormatError, choose_wine_type, column_name, parse_wine_csv, wine_type_from_name
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.ui

UCI_HEADER = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";"free sulfur dioxide";'
    '"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";"quality"'
)
RED_ROW = "7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5"


def api_csv(rows: list[dict[str, float | str]]) -> str:
    lines = [",".join(SCHEMA.names)]
    lines += [",".join(str(r[n]) for n in SCHEMA.names) for r in rows]
    return "\n".join(lines) + "\n"


def test_uci_file_without_wine_type_takes_the_chosen_type() -> None:
    parsed = parse_wine_csv(f"{UCI_HEADER}\n{RED_ROW}\n".encode(), wine_type="white")
    assert parsed.delimiter == ";"
    assert parsed.has_quality and not parsed.has_wine_type
    assert parsed.problems == []
    [row] = parsed.rows
    assert row.instance == {**SCHEMA.example(), "wine_type": "white"}
    assert row.quality == 5.0
    assert (row.row, row.line) == (1, 2)


def test_uci_file_needs_a_wine_type_choice() -> None:
    with pytest.raises(CsvFormatError, match="wine_type"):
        parse_wine_csv(f"{UCI_HEADER}\n{RED_ROW}\n")


def test_api_names_with_wine_type_column() -> None:
    white = {**SCHEMA.example(), "wine_type": "White"}
    parsed = parse_wine_csv(api_csv([SCHEMA.example(), white]))
    assert parsed.delimiter == ","
    assert parsed.has_wine_type and not parsed.has_quality
    assert [r.instance["wine_type"] for r in parsed.rows] == ["red", "white"]
    assert list(parsed.rows[0].instance) == SCHEMA.names


def test_bad_rows_are_reported_by_row_number_and_field_not_dropped() -> None:
    rows = [
        RED_ROW,
        "7.4;0.7;0;1.9;0.076;11;34;0.9978;9.9;0.56;9.4;5",  # pH out of range
        "7.4;abc;0;1.9;0.076;11;34;0.9978;3.51;0.56;;5",  # not a number, missing alcohol
        "7.4;0.7;0;1.9;0.076;11;34",  # short row
        "",  # blank lines are not rows
        "7.4;0.7;0;1.9;0.076;50;34;0.9978;3.51;0.56;9.4;5",  # free > total SO2
        RED_ROW,
    ]
    parsed = parse_wine_csv(UCI_HEADER + "\n" + "\n".join(rows) + "\n", wine_type="red")
    assert [r.row for r in parsed.rows] == [1, 6]
    assert parsed.total_rows == 6
    assert parsed.bad_rows == [2, 3, 4, 5]
    by_row = {(p.row, p.field): p.problem for p in parsed.problems}
    assert "between 2.5 and 4.5" in by_row[(2, "ph")]
    assert by_row[(3, "volatile_acidity")] == "must be a number, got 'abc'"
    assert by_row[(3, "alcohol")] == "value missing"
    assert "has 7 values" in by_row[(4, "(row)")]
    assert "must not exceed total_sulfur_dioxide" in by_row[(5, "free_sulfur_dioxide")]
    assert {p.line for p in parsed.problems if p.row == 5} == {7}  # the blank line counts as a line
    assert len(parsed.problems) == 5


def test_decimal_comma_is_accepted_in_semicolon_files() -> None:
    parsed = parse_wine_csv(
        f"{UCI_HEADER}\n7,4;0,7;0;1,9;0,076;11;34;0,9978;3,51;0,56;9,4;5\n", wine_type="red"
    )
    assert parsed.problems == []
    assert parsed.rows[0].instance["density"] == pytest.approx(0.9978)


def test_missing_and_duplicate_columns_are_file_errors() -> None:
    with pytest.raises(CsvFormatError, match=r"Missing column.*alcohol.*'alcool'"):
        parse_wine_csv(UCI_HEADER.replace('"alcohol"', '"alcool"') + "\n" + RED_ROW + "\n", wine_type="red")
    with pytest.raises(CsvFormatError, match="both mean ph"):
        parse_wine_csv(UCI_HEADER + ";ph\n" + RED_ROW + ";3.5\n", wine_type="red")
    with pytest.raises(CsvFormatError, match="empty"):
        parse_wine_csv(b"\n\n")
    with pytest.raises(CsvFormatError, match="no data rows"):
        parse_wine_csv(UCI_HEADER + "\n", wine_type="red")


def test_unknown_columns_are_kept_but_not_sent() -> None:
    parsed = parse_wine_csv(UCI_HEADER + ";batch\n" + RED_ROW + ";B-17\n", wine_type="red")
    assert parsed.ignored_columns == ["batch"]
    assert "batch" not in parsed.rows[0].instance
    assert parsed.rows[0].cells["batch"] == "B-17"


def test_lenient_header_matching() -> None:
    assert column_name("Fixed Acidity") == "fixed_acidity"
    assert column_name(" PH ") == "ph"
    assert column_name("free_sulfur_dioxide") == "free_sulfur_dioxide"
    assert column_name("Quality") == "quality"
    assert column_name("colour") is None


def test_latin1_and_bom_files_decode() -> None:
    data = ("\ufeff" + UCI_HEADER + "\n" + RED_ROW + "\n").encode("utf-8")
    assert len(parse_wine_csv(data, wine_type="red").rows) == 1
    data = (UCI_HEADER + ";note\n" + RED_ROW + ";rosé\n").encode("latin-1")
    assert parse_wine_csv(data, wine_type="red").rows[0].cells["note"] == "rosé"


@pytest.mark.parametrize(("name", "wine_type", "rows"), [("red", "red", 1599), ("white", "white", 4898)])
def test_the_uci_files_read_without_problems(data_dir: Path, name: str, wine_type: str, rows: int) -> None:
    parsed = parse_wine_csv((data_dir / f"winequality-{name}.csv").read_bytes(), wine_type=wine_type)
    assert parsed.problems == []
    assert len(parsed.rows) == rows


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("winequality-white.csv", "white"),
        ("winequality-red.csv", "red"),
        ("Red wines 2024.csv", "red"),
        ("exports/WHITE_batch.txt", "white"),
        ("tired.csv", None),  # a word, not a substring
        ("whitepaper.csv", None),
        ("red-and-white.csv", None),  # both: no guess
        ("samples.csv", None),
        (None, None),
    ],
)
def test_the_wine_type_a_file_name_says(name: str | None, expected: str | None) -> None:
    assert wine_type_from_name(name) == expected


def test_the_choice_wins_the_name_fills_in_and_nothing_is_never_red() -> None:
    inferred = choose_wine_type(None, "winequality-white.csv")
    assert inferred.wine_type == "white" and not inferred.doubtful
    assert "inferred from the file name 'winequality-white.csv'" in inferred.note
    chosen = choose_wine_type("white", "winequality-white.csv")
    assert chosen.wine_type == "white" and "as chosen" in chosen.note and not chosen.doubtful
    clash = choose_wine_type("red", "winequality-white.csv")
    assert clash.wine_type == "red" and clash.doubtful and "says white" in clash.note
    nothing = choose_wine_type(None, "samples.csv")
    assert nothing.wine_type is None
    with pytest.raises(CsvFormatError, match="choose red or white"):
        parse_wine_csv(f"{UCI_HEADER}\n{RED_ROW}\n", wine_type=nothing.wine_type)


def test_a_file_longer_than_the_row_limit_is_refused_whole_with_the_limit() -> None:
    rows = [f"7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;{9 + i / 10:.1f};5" for i in range(5)]
    text = UCI_HEADER + "\n" + "\n".join(rows) + "\n\n"
    assert len(parse_wine_csv(text, wine_type="red", max_rows=5).rows) == 5  # blank lines don't count
    with pytest.raises(CsvFormatError, match=r"The file has 5 rows; at most 4 are scored at once\. Split it"):
        parse_wine_csv(text, wine_type="red", max_rows=4)
