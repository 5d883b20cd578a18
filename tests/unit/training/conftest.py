"""Fixtures of the training tests: small CSV copies of the real data, a local archive server.

Tests that need a BentoML model store run the code in a subprocess with their own
``BENTOML_HOME`` under ``tmp_path`` (BentoML fixes its home when first used).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from training_helpers import ArchiveServer, head_lines

from training.data import CSV_FILES, WineData, load_wine_data


@pytest.fixture(scope="session")
def wine_data(data_dir: Path) -> WineData:
    """The real data set, checksums verified."""
    return load_wine_data(data_dir)


@pytest.fixture
def small_csv_dir(data_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """Write the first N rows of each real CSV (optionally edited) into a folder of tmp_path."""

    def make(rows: int = 40, edit: Callable[[str, str], str] | None = None, name: str = "small") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for wine_type, file_name in CSV_FILES.items():
            text = head_lines(data_dir / file_name, rows)
            if edit is not None:
                text = edit(wine_type, text)
            (folder / file_name).write_text(text)
        return folder

    return make


@pytest.fixture
def archive_server(tmp_path: Path) -> Iterator[ArchiveServer]:
    """Serve ``tmp_path/www`` over HTTP from a thread, on a free port; record request paths."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            seen.append(self.path)

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ArchiveServer(root=root, port=int(server.server_address[1]), requests=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
