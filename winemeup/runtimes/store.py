"""Read a BentoML model store without importing BentoML.

The accelerated path needs only a model's identity (name, version, labels, metadata) and the
files in its version directory, so a router or runner that serves ONNX artifacts does not pay
for importing BentoML (about 100 MB and a second of start-up). The layout read here is
BentoML 1.4's: ``<home>/models/<name>/latest`` holds the newest version, and
``<home>/models/<name>/<version>/model.yaml`` the entry's labels and metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ModelNotInStoreError(LookupError):
    """The model store holds no model under that name (and version)."""


@dataclass(frozen=True)
class StoreEntry:
    """One model version in the store: where its files are and what BentoML recorded of it."""

    name: str
    version: str
    path: Path
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def read_entry(home: Path, name: str, version: str | None = None) -> StoreEntry:
    """The store entry of ``name`` (its latest version unless ``version`` is given)."""
    model_dir = Path(home) / "models" / name
    if version is None or version == "latest":
        try:
            version = (model_dir / "latest").read_text().strip()
        except OSError as e:
            raise ModelNotInStoreError(f"model {name}:latest is not in the model store {home}") from e
    path = model_dir / version
    try:
        info = yaml.safe_load((path / "model.yaml").read_text())
    except OSError as e:
        raise ModelNotInStoreError(f"model {name}:{version} is not in the model store {home}") from e
    except yaml.YAMLError as e:
        raise ModelNotInStoreError(f"model {name}:{version}: unreadable model.yaml ({e})") from e
    info = info if isinstance(info, dict) else {}
    return StoreEntry(
        name=name,
        version=version,
        path=path,
        labels={str(k): str(v) for k, v in (info.get("labels") or {}).items()},
        metadata=dict(info.get("metadata") or {}),
    )
