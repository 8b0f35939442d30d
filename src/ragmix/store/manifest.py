"""The collection manifest: what built a collection, so it is reopened the same way."""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
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
        return cls.from_data(_read_object(path), where=str(directory), path=path)

    @classmethod
    def from_data(cls, data: dict[str, Any], *, where: str, path: Path | str) -> Manifest:
        """The manifest in ``data`` (parsed JSON), checked; ``where`` and ``path`` name it
        in errors (a collection in a database keeps its manifest in a meta table)."""
        version = data.get("format_version", FORMAT_VERSION)
        # Checked before the keys: another version may well have other keys.
        if version != FORMAT_VERSION and _is_int(version):
            raise CollectionError(
                f"collection {where!r} has format version {version}, "
                f"this ragmix reads version {FORMAT_VERSION}; re-index it"
            )
        _check_fields(path, data)
        return cls(**data)


# What each manifest key must hold, so a truncated or hand-edited file is named, not a TypeError.
_FIELD_TYPES: dict[str, tuple[type, str]] = {
    "encoder": (str, "a string"),
    "dim": (int, "a positive integer"),
    "chunker": (dict, "an object"),
    "index": (dict, "an object"),
    "bm25": (dict, "an object"),
    "format_version": (int, "an integer"),
}


def _corrupt(path: Path | str, problem: str) -> CollectionError:
    return CollectionError(
        f"corrupt manifest {str(path)!r}: {problem}; restore it from a backup, or re-index "
        "into a new collection (ragmix index PATH --collection NEW_DIR)"
    )


def _read_object(path: Path) -> dict[str, Any]:
    """The manifest's JSON object, or a :class:`CollectionError` saying why not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _corrupt(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise CollectionError(f"cannot read manifest {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise _corrupt(path, f"expected a JSON object, got {_short(data)}")
    return data


def _check_fields(path: Path | str, data: dict[str, Any]) -> None:
    """Raise a :class:`CollectionError` naming the first missing, unknown or mistyped key."""
    required = [f.name for f in fields(Manifest)
                if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise _corrupt(path, f"missing key(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if unknown:
        raise _corrupt(path, f"unknown key(s) {', '.join(map(repr, unknown))}")
    for name, value in data.items():
        kind, wanted = _FIELD_TYPES[name]
        if not (_is_int(value) if kind is int else isinstance(value, kind)):
            raise _corrupt(path, f"{name!r} must be {wanted}, got {_short(value)}")
    if data["dim"] <= 0:
        raise _corrupt(path, f"'dim' must be a positive integer, got {data['dim']}")
    for name, key in (("chunker", "name"), ("index", "kind")):
        if not isinstance(data[name].get(key), str):
            raise _corrupt(path, f"{name!r} needs a string {key!r}, got {_short(data[name])}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
