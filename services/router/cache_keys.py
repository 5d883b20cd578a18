"""Prediction cache keys and values: pure, no I/O.

A key is a BLAKE2b digest of the model name, the model version and the model-input row
packed as float64s, so a hot swap or a new model version can never serve a stale score.
A value is the score packed as one float64. The predictor owns the keys; models never see them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from hashlib import blake2b

import numpy as np

from winemeup.schema import SCHEMA

KEY_PREFIX = b"wmu:p1:"
_SCORE = struct.Struct("<d")
_DIGEST_BYTES = 16
KEY_BYTES = len(KEY_PREFIX) + _DIGEST_BYTES
"""Every cache key has this length (the batch store relies on it)."""
_ROW = struct.Struct(f"<{len(SCHEMA)}d")


class KeyMaker:
    """Cache keys for one (model, version): a pre-seeded hash, copied per row."""

    __slots__ = ("_seed", "model", "version")

    def __init__(self, model: str, version: str):
        self.model = model
        self.version = version
        self._seed = blake2b(digest_size=_DIGEST_BYTES, person=b"winemeup-pred")
        # Length-prefix both names so ("ab", "c") and ("a", "bc") can never collide.
        for part in (model.encode(), version.encode()):
            self._seed.update(struct.pack("<I", len(part)))
            self._seed.update(part)

    def key(self, row: Sequence[float]) -> bytes:
        """The key of one model-input row."""
        h = self._seed.copy()
        h.update(_ROW.pack(*row))
        return KEY_PREFIX + h.digest()

    def keys(self, matrix: np.ndarray) -> list[bytes]:
        """The keys of every row of an (n, 12) float64 matrix."""
        data = np.ascontiguousarray(matrix, dtype="<f8")
        view = memoryview(data.tobytes())
        width = data.shape[1] * 8
        seed = self._seed
        out = []
        for start in range(0, len(view), width):
            h = seed.copy()
            h.update(view[start : start + width])
            out.append(KEY_PREFIX + h.digest())
        return out


def pack_score(score: float) -> bytes:
    """A score as the bytes the cache stores."""
    return _SCORE.pack(score)


def unpack_score(value: bytes | str | None) -> float | None:
    """A cached score, or None for a miss or a value this version did not write."""
    if not isinstance(value, bytes) or len(value) != 8:
        return None
    return float(_SCORE.unpack(value)[0])
