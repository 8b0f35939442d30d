"""Where a collection lives: its manifest, its write lock and its storage backend.

A collection is found by a *location*: a directory (the embedded backend: SQLite +
FAISS + bm25s files) or a PostgreSQL URL naming the collection,
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE?collection=NAME`` (the
manifest in the collection's meta table, the write lock an advisory lock).

>>> home_for("/tmp/notes").location
'/tmp/notes'
>>> home_for("postgresql://me@db:5432/rag?collection=notes").location
'postgresql://me@db:5432/rag?collection=notes'
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from ragmix.errors import BadInputError, CollectionError
from ragmix.store.backend import StoreBackend
from ragmix.store.manifest import MANIFEST_NAME, Manifest

LOCK_FILE = ".lock"
URL_SCHEMES = ("postgresql://", "postgres://")


class CollectionHome(Protocol):
    """What ``Collection`` needs from the place a collection lives."""

    location: str  # shown in messages and by ``info``
    directory: Path | None  # the collection's folder, or None (in a database)
    default_index: str  # the index kind of a new collection when none is asked for

    def exists(self) -> bool: ...

    def load_manifest(self) -> Manifest: ...

    def save_manifest(self, manifest: Manifest) -> None:
        """Replace the stored manifest (atomically); hold :meth:`write_lock` around it."""
        ...

    def index_settings(self, kind: str, params: dict[str, Any], dim: int) -> dict[str, Any]:
        """The manifest's ``index`` dict for ``kind`` and ``params``, validated."""
        ...

    def create(self, manifest: Manifest) -> StoreBackend:
        """Make the (empty) storage with ``manifest`` and return its backend."""
        ...

    def open_backend(self, manifest: Manifest) -> StoreBackend: ...

    def write_lock(self) -> AbstractContextManager[None]:
        """Held while this process writes; another writer gets a CollectionError."""
        ...

    def disk_bytes(self, backend: StoreBackend) -> int: ...


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def home_for(location: str | Path) -> CollectionHome:
    """The home of the collection at ``location`` (a directory or a PostgreSQL URL)."""
    if is_url(location):
        from ragmix.store.pg.home import PgHome

        return PgHome.from_url(str(location))
    if isinstance(location, str) and "://" in location:
        raise BadInputError(f"{location!r} is neither a directory nor a postgresql:// URL; "
                            "give a folder, or postgresql://USER@HOST:PORT/DB?collection=NAME")
    return DirectoryHome(Path(location))


class DirectoryHome:
    """A collection directory: manifest.json, a lock file, the embedded backend's files."""

    default_index = "flat"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)

    def exists(self) -> bool:
        return (self.directory / MANIFEST_NAME).exists()

    def load_manifest(self) -> Manifest:
        return Manifest.load(self.directory)

    def save_manifest(self, manifest: Manifest) -> None:
        manifest.save(self.directory)

    def index_settings(self, kind: str, params: dict[str, Any], dim: int) -> dict[str, Any]:
        from ragmix.index import INDEX_KINDS

        if kind not in INDEX_KINDS:
            raise BadInputError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
        from ragmix.index.faiss_index import FaissIndex

        FaissIndex(kind, dim, **params)  # validates the knobs before anything is written
        return {"kind": kind, **params}

    def create(self, manifest: Manifest) -> StoreBackend:
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest.save(self.directory)
        return self.open_backend(manifest)

    def open_backend(self, manifest: Manifest) -> StoreBackend:
        from ragmix.store.embedded import EmbeddedBackend

        return EmbeddedBackend.for_manifest(self.directory, manifest)

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        with open(self.directory / LOCK_FILE, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(
                    f"collection {self.location!r} is being written by another process; "
                    "wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def disk_bytes(self, backend: StoreBackend) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
