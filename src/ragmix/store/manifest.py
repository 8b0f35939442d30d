"""The collection manifest: what built a collection, so it is reopened the same way."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmix.errors import CollectionError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """Encoder, chunker, index and BM25 settings of a collection, plus the format version."""

    encoder: str
    dim: int
    chunker: dict[str, Any]
    index: dict[str, Any]  # {"kind": "flat", ...knobs}
    bm25: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def save(self, directory: Path) -> None:
        write_json_atomic(directory / MANIFEST_NAME, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise CollectionError(
                f"{str(directory)!r} is not a ragmix collection (no {MANIFEST_NAME}); "
                "create one with: ragmix index PATH --collection DIR"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise CollectionError(f"corrupt manifest {str(path)!r}: {exc}") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise CollectionError(
                f"collection {str(directory)!r} has format version {manifest.format_version}, "
                f"this ragmix reads version {FORMAT_VERSION}; re-index it"
            )
        return manifest


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
