"""How the wine form presents each feature: defaults, decimals and steps (pure)."""

from __future__ import annotations

import math

from winemeup.schema import SCHEMA, Feature


def input_decimals(feature: Feature) -> int:
    """Decimals a number input shows: at least 2, three beyond the range's order of magnitude.

    Density (0.98 to 1.05) gets 5, volatile acidity and chlorides 3, sulfur dioxide 2: enough
    for every value in the UCI files, and for the schema's example.
    """
    if isinstance(feature.example, str):
        return 2
    width = feature.maximum - feature.minimum
    by_range = math.ceil(-math.log10(width)) + 3 if width > 0 else 2
    text = repr(float(feature.example))
    by_example = len(text.split(".")[1].rstrip("0")) if "." in text and "e" not in text else 0
    return max(2, by_range, by_example)


def input_step(feature: Feature) -> float:
    """Step of a number input: one unit of its last shown decimal."""
    return float(10 ** -input_decimals(feature))


def input_help(feature: Feature) -> str:
    """The one-line help of a feature's input: description, accepted range and training header."""
    return (
        f"{feature.description}. Accepted: {feature.minimum:g} to {feature.maximum:g} {feature.unit}. "
        f"CSV header '{feature.header}'."
    )


def input_label(feature: Feature) -> str:
    """The label of a feature's input: its UCI header and unit."""
    if not feature.unit or feature.unit == feature.header:
        return feature.header
    return f"{feature.header} ({feature.unit})"


def default_wine() -> dict[str, float | str]:
    """The wine the form starts with: the schema's typical red."""
    return SCHEMA.example()
