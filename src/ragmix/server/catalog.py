"""Collections made and removed over the API (scope ``admin``), kept in ``DATA/created/NAME``.

A name is one safe path component, checked before anything touches the disk,
so no request can reach outside the data folder. A collection is built in a
hidden folder and renamed into place, and removed by renaming it away first:
a server killed half-way leaves a hidden folder (cleared at the next start),
never a half-made collection under a real name.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> spec = CollectionSpec(name="wiki", encoder="hashing-64")
>>> folder = create_collection(root, spec)
>>> [p.name for p in created_dirs(root)], folder.name
(['wiki'], 'wiki')
>>> check_collection_name("../etc")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ragmix.errors.BadInputError: collection name '../etc' is not allowed: use 1 to 64 letters, ...
>>> remove_collection(folder, root); created_dirs(root)
[]
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ragmix.chunking import CHUNKERS, make_chunker, sized_options
from ragmix.errors import BadInputError, CollectionError
from ragmix.index import INDEX_KINDS
from ragmix.store import Collection
from ragmix.store.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

CREATED = "created"  # DATA/created/NAME: the collections this server made
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Encoders a client may name: packaged or computed ones. A folder would let a client
# load whatever lies on the server's disk, so folders are for `ragmix index` only.
_ENCODER = re.compile(r"minilm|minilm-int8|all-MiniLM-L6-v2(-int8)?|hashing(-[1-9][0-9]{0,4})?")
_HIDDEN = "."  # folders being made or removed


class CollectionExistsError(CollectionError):
    """A collection of that name is already served (HTTP 409)."""


def check_collection_name(name: str) -> str:
    """``name`` if it can name a collection in a URL and a folder, else why not.

    >>> check_collection_name("team-docs_2"), check_collection_name("v1.2")
    ('team-docs_2', 'v1.2')
    """
    if isinstance(name, str) and _NAME.fullmatch(name) and ".." not in name:
        return name
    raise BadInputError(
        f"collection name {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or "
        "'-', starting with a letter or digit (no '/', '\\' or '..'), e.g. 'team-docs'")


def check_encoder_spec(encoder: str) -> str:
    """An encoder a client may ask for: ``minilm``, ``minilm-int8`` or ``hashing-DIM``.

    >>> check_encoder_spec("hashing-256")
    'hashing-256'
    """
    if isinstance(encoder, str) and _ENCODER.fullmatch(encoder):
        return encoder
    raise BadInputError(
        f"encoder {encoder!r} is not one a client may choose: use 'minilm', 'minilm-int8' or "
        "'hashing-DIM' (e.g. 'hashing-256'); collections with other encoders are made with "
        "ragmix index on the server and served with --collection")


@dataclass(frozen=True)
class CollectionSpec:
    """A new collection's name and settings, as ``ragmix index`` takes them."""

    name: str
    encoder: str = "minilm"
    chunker: str = "words"
    chunk_size: int | None = None  # words (words), characters (chars), max chars (recursive)
    overlap: int | None = None  # words or characters (words, chars)
    index: str = "flat"
    index_options: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_collection_name(self.name)
        check_encoder_spec(self.encoder)
        if self.chunker not in CHUNKERS:
            raise BadInputError(f"unknown chunker {self.chunker!r}; choose one of: "
                                f"{', '.join(CHUNKERS)}")
        if self.index not in INDEX_KINDS:
            raise BadInputError(f"index must be one of {INDEX_KINDS}, got {self.index!r}")
        sized_options(self.chunker, size=self.chunk_size, overlap=self.overlap)  # checks

    def make_chunker(self):
        return make_chunker(self.chunker, **sized_options(
            self.chunker, size=self.chunk_size, overlap=self.overlap, encoder=self.encoder))


def inside_root(root: Path, name: str) -> Path:
    """``root / name`` for a checked name, and checked again once resolved."""
    path = (root / check_collection_name(name)).resolve()
    if path.parent != root.resolve():
        raise BadInputError(f"refusing to place collection {name!r} outside {str(root)!r}")
    return path


def create_collection(root: Path, spec: CollectionSpec, *, dtype: str = "float32") -> Path:
    """Make an empty collection ``root / spec.name``: built aside, then renamed into place."""
    folder = inside_root(root, spec.name)
    if (folder / MANIFEST_NAME).exists():
        raise CollectionExistsError(f"a collection {spec.name!r} already exists on this "
                                    "server; pick another name, or delete it first")
    chunker = spec.make_chunker()  # its errors before anything is written
    root.mkdir(parents=True, exist_ok=True)
    building = root / f"{_HIDDEN}creating-{uuid.uuid4().hex}"
    try:
        Collection.create(building, encoder=spec.encoder, chunker=chunker, index=spec.index,
                          index_params=dict(spec.index_options), dtype=dtype).close()
        if folder.exists():  # a folder without a manifest: what a failed removal left
            shutil.rmtree(folder)
        os.replace(building, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def remove_collection(folder: Path, root: Path) -> None:
    """Delete a created collection's folder (renamed away first, so it vanishes at once)."""
    folder = inside_root(root, folder.name)
    doomed = root / f"{_HIDDEN}removing-{uuid.uuid4().hex}"
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def created_dirs(root: Path) -> list[Path]:
    """The collections made in ``root``, by name; leftovers of a stopped server are cleared."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(_HIDDEN):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and not path.is_symlink() and (path / MANIFEST_NAME).exists():
            found.append(path)
        else:
            log.warning("ignoring %s: not a collection made by this server", path)
    return found
