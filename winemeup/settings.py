"""Parsing shared by the settings objects of every deployable (each keeps its own object).

Nothing here reads the environment: pydantic-settings does, in each deployable's settings.
"""

from __future__ import annotations


def split_csv(value: object) -> object:
    """A comma-separated setting as a list of its non-empty, stripped items (other values as given)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value
