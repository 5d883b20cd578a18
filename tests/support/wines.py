"""Wines the tests send: three hand-made instances (:data:`WINES`), and the UCI CSV files' rows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from winemeup.schema import SCHEMA

EXAMPLE: dict[str, Any] = SCHEMA.example()
WINES: list[dict[str, Any]] = [
    EXAMPLE,
    {**EXAMPLE, "alcohol": 12.8, "wine_type": "white", "residual_sugar": 6.0},
    {**EXAMPLE, "volatile_acidity": 0.3, "sulphates": 0.8, "alcohol": 11.2},
]
"""Three valid wines, red and white, as API instances (the schema's example and two variants)."""


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
