"""Data loading: the real files, download from a local HTTP server, checksums, malformed files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from training_helpers import ArchiveServer, build_archive

from training.data import (
    CSV_FILES,
    SHA256,
    ChecksumMismatchError,
    DataError,
    DownloadError,
    MalformedDataError,
    ensure_data,
    load_wine_data,
    read_wine_data,
)
from winemeup.schema import SCHEMA


def test_real_files_load_in_schema_order_with_wine_type(wine_data) -> None:
    red = wine_data.is_red
    assert int(red.sum()) == 1599
    assert int((~red).sum()) == 4898
    assert wine_data.X.shape == (1599 + 4898, len(SCHEMA))
    assert wine_data.X.dtype == np.float64
    alcohol = SCHEMA.names.index("alcohol")
    # SOURCE.md: mean alcohol 10.423 (red) and 10.514 (white): the columns are mapped right.
    assert wine_data.X[red, alcohol].mean() == pytest.approx(10.423, abs=1e-3)
    assert wine_data.X[~red, alcohol].mean() == pytest.approx(10.514, abs=1e-3)
    # The first red row is the schema's example wine.
    first = SCHEMA.decode(wine_data.X[0])
    assert first == pytest.approx(SCHEMA.example())
    assert set(np.unique(wine_data.y)) == {3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0}
    assert wine_data.sha256 == dict(SHA256)


def test_duplicates_are_grouped(wine_data) -> None:
    groups = wine_data.groups()
    red = wine_data.is_red
    assert np.unique(groups[red]).size == 1359
    assert np.unique(groups[~red]).size == 3961
    # Rows in one group are identical.
    biggest = np.bincount(groups).argmax()
    members = wine_data.X[groups == biggest]
    assert len(members) > 1 and np.all(members == members[0])


def _zip_of_real_files(data_dir: Path, www: Path, edit: Callable[[bytes], bytes] | None = None) -> Path:
    members = {
        f"winequality/{name}": (edit or (lambda b: b))((data_dir / name).read_bytes())
        for name in CSV_FILES.values()
    }
    members["winequality.names"] = b"Citation Request: ...\n"
    return build_archive(www / "wine+quality.zip", members)


def test_missing_files_are_downloaded_and_verified(
    data_dir: Path, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    _zip_of_real_files(data_dir, archive_server.root)
    target = tmp_path / "fresh" / "wine-quality"
    digests = ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10)
    assert digests == dict(SHA256)
    for name in CSV_FILES.values():
        assert (target / name).read_bytes() == (data_dir / name).read_bytes()
    assert archive_server.requests == ["/wine+quality.zip"]
    # Present and valid: no second download.
    data = load_wine_data(target, archive_server.url("wine+quality.zip"))
    assert len(data) == 6497
    assert archive_server.requests == ["/wine+quality.zip"]
    assert not list(target.glob("*.tmp"))


def test_only_the_missing_file_is_written(
    data_dir: Path, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    _zip_of_real_files(data_dir, archive_server.root)
    target = tmp_path / "partial"
    target.mkdir()
    red = target / CSV_FILES["red"]
    red.write_bytes((data_dir / CSV_FILES["red"]).read_bytes())
    before = red.stat().st_mtime_ns
    ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10)
    assert red.stat().st_mtime_ns == before
    assert (target / CSV_FILES["white"]).is_file()


def test_downloaded_file_with_wrong_checksum_is_rejected_and_not_written(
    data_dir: Path, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    # One changed byte in every file: the archive is not the official one.
    _zip_of_real_files(data_dir, archive_server.root, edit=lambda b: b.replace(b"7.4;", b"7.5;", 1))
    target = tmp_path / "bad"
    with pytest.raises(ChecksumMismatchError) as info:
        ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10)
    message = str(info.value)
    assert "winequality-red.csv" in message
    assert SHA256["winequality-red.csv"] in message
    assert not (target / "winequality-red.csv").exists()
    assert not list(target.glob("*.tmp"))


def test_present_file_with_wrong_checksum_names_the_file(small_csv_dir) -> None:
    folder = small_csv_dir(rows=5)
    with pytest.raises(ChecksumMismatchError, match=r"winequality-red\.csv: SHA-256 mismatch"):
        load_wine_data(folder)


def test_unreachable_archive_says_what_is_missing(tmp_path: Path, archive_server: ArchiveServer) -> None:
    target = tmp_path / "nothing-here"
    with pytest.raises(DownloadError) as info:
        ensure_data(target, archive_server.url("no-such.zip"), timeout=10)
    message = str(info.value)
    assert str(target) in message and "winequality-red.csv" in message and "404" in message


def test_archive_without_the_csv_files(tmp_path: Path, archive_server: ArchiveServer) -> None:
    build_archive(archive_server.root / "wine+quality.zip", {"winequality.names": b"x"})
    with pytest.raises(DownloadError, match=r"the archive has no winequality-red\.csv"):
        ensure_data(tmp_path / "d", archive_server.url("wine+quality.zip"), timeout=10)


def test_not_a_zip(tmp_path: Path, archive_server: ArchiveServer) -> None:
    (archive_server.root / "wine+quality.zip").write_text("<html>maintenance</html>")
    with pytest.raises(DownloadError, match="not a zip archive"):
        ensure_data(tmp_path / "d", archive_server.url("wine+quality.zip"), timeout=10)


def test_missing_column_names_file_and_column(small_csv_dir) -> None:
    def drop_ph(wine_type: str, text: str) -> str:
        if wine_type != "white":
            return text
        lines = [line.split(";") for line in text.splitlines()]
        index = lines[0].index('"pH"')
        return "\n".join(";".join(f for i, f in enumerate(row) if i != index) for row in lines) + "\n"

    folder = small_csv_dir(edit=drop_ph)
    with pytest.raises(MalformedDataError) as info:
        read_wine_data(folder)
    assert "winequality-white.csv" in str(info.value)
    assert "missing column(s) 'pH'" in str(info.value)


def test_non_numeric_cell_names_line_and_column(small_csv_dir) -> None:
    def spoil(wine_type: str, text: str) -> str:
        if wine_type != "red":
            return text
        lines = text.splitlines()
        cells = lines[3].split(";")
        cells[10] = "ten"  # alcohol
        lines[3] = ";".join(cells)
        return "\n".join(lines) + "\n"

    with pytest.raises(MalformedDataError) as info:
        read_wine_data(small_csv_dir(edit=spoil))
    message = str(info.value)
    assert "winequality-red.csv, line 4, column 'alcohol': not a number: 'ten'" in message


def test_short_line_and_bad_grade(small_csv_dir) -> None:
    def short(wine_type: str, text: str) -> str:
        lines = text.splitlines()
        lines[2] = ";".join(lines[2].split(";")[:-2])
        return "\n".join(lines) + "\n"

    with pytest.raises(MalformedDataError, match=r"line 3: expected 12 fields, got 10"):
        read_wine_data(small_csv_dir(edit=short, name="short"))

    def half_grade(wine_type: str, text: str) -> str:
        lines = text.splitlines()
        lines[1] = lines[1].rsplit(";", 1)[0] + ";5.5"
        return "\n".join(lines) + "\n"

    with pytest.raises(MalformedDataError, match=r"line 2, column 'quality': expected an integer grade"):
        read_wine_data(small_csv_dir(edit=half_grade, name="grade"))


def test_comma_separated_file_is_refused(small_csv_dir) -> None:
    folder = small_csv_dir(edit=lambda _t, text: text.replace(";", ","))
    with pytest.raises(MalformedDataError, match=r"line 1: the header is not separated by ';'"):
        read_wine_data(folder)


def test_columns_are_mapped_by_header_not_position(small_csv_dir, data_dir: Path) -> None:
    def reverse(_wine_type: str, text: str) -> str:
        return "\n".join(";".join(reversed(line.split(";"))) for line in text.splitlines()) + "\n"

    plain = read_wine_data(small_csv_dir(name="plain"))
    swapped = read_wine_data(small_csv_dir(edit=reverse, name="swapped"))
    np.testing.assert_array_equal(plain.X, swapped.X)
    np.testing.assert_array_equal(plain.y, swapped.y)


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        ensure_data(path, "http://127.0.0.1:9/x.zip", timeout=1)


def test_the_repository_ships_both_files_and_training_reads_them_by_default() -> None:
    """A fresh clone trains without the UCI archive: the files are there, tracked and verified."""
    import subprocess

    from training.settings import SHIPPED_DATA_DIR, TrainingSettings

    assert TrainingSettings.model_fields["data_dir"].default == SHIPPED_DATA_DIR
    digests = ensure_data(SHIPPED_DATA_DIR, "http://127.0.0.1:9/unreachable.zip", timeout=1)
    assert digests == dict(SHA256)
    tracked_or_addable = subprocess.run(
        ["git", "check-ignore", *(str(SHIPPED_DATA_DIR / n) for n in CSV_FILES.values())],
        cwd=SHIPPED_DATA_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tracked_or_addable.returncode == 1, f".gitignore hides the data: {tracked_or_addable.stdout}"
    attribution = (SHIPPED_DATA_DIR / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in attribution and "Cortez" in attribution
    assert all(digest in attribution for digest in SHA256.values())


def test_force_replaces_present_files_with_verified_downloads(
    data_dir: Path, archive_server: ArchiveServer, small_csv_dir: Callable[..., Path]
) -> None:
    _zip_of_real_files(data_dir, archive_server.root)
    target = small_csv_dir(rows=10)  # present, but not the originals
    with pytest.raises(ChecksumMismatchError):
        ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10)
    assert archive_server.requests == []
    digests = ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10, force=True)
    assert digests == dict(SHA256)
    assert archive_server.requests == ["/wine+quality.zip"]


def test_a_failed_refresh_keeps_the_files_there(
    data_dir: Path, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    _zip_of_real_files(data_dir, archive_server.root, edit=lambda b: b.replace(b"7.4;", b"7.5;", 1))
    target = tmp_path / "kept"
    target.mkdir()
    for name in CSV_FILES.values():
        (target / name).write_bytes((data_dir / name).read_bytes())
    with pytest.raises(ChecksumMismatchError):
        ensure_data(target, archive_server.url("wine+quality.zip"), timeout=10, force=True)
    for name in CSV_FILES.values():
        assert (target / name).read_bytes() == (data_dir / name).read_bytes()
    assert not list(target.glob(".*.tmp"))
