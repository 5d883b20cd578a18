"""Wines from the UCI CSV files as API instances (training headers are accepted as aliases)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from winemeup.schema import SCHEMA


def read_wines(data_dir: Path, colour: str, as_type: str | None = None) -> list[dict[str, Any]]:
    """Every valid wine of ``winequality-<colour>.csv``, labelled ``as_type`` (default: its colour)."""
    wines = []
    with (data_dir / f"winequality-{colour}.csv").open(newline="") as f:
        for record in csv.DictReader(f, delimiter=";"):
            wine: dict[str, Any] = {k: float(v) for k, v in record.items() if k != "quality"}
            wine["wine_type"] = as_type or colour
            _, errors = SCHEMA.check(wine)
            if not errors:
                wines.append(wine)
    return wines
