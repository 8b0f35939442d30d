"""One collection as a server holds it: a reader for requests, a writer for ingestion.

A :class:`~ragmix.store.Collection` keeps one database connection (SQLite, or
PostgreSQL for a ``postgresql://...?collection=NAME`` location) and its in-memory
views, so requests take turns on the reader (searches take milliseconds).
Ingestion and deletion go through a second instance, the writer, on its own
connection: SQLite's WAL (or PostgreSQL's transactions) lets searches go on while
a large upload is embedded, and the reader's views catch up with the store's
generation at its next search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmix.errors import RagmixError
from ragmix.modes import DEFAULT_RERANK_DEPTH
from ragmix.rerank.base import RerankedSearch, Reranker
from ragmix.store import Collection
from ragmix.types import Hit


class CollectionGoneError(RagmixError):
    """The collection was deleted while a request or a job waited for it (HTTP 404)."""


class ServedCollection:
    """A named collection with its locks; ``uploads`` is where its uploaded files are kept.

    ``location`` is a directory or a PostgreSQL collection URL; ``directory`` is the
    folder, None for a collection in a database. ``created``: made over the API (in
    the data folder), so the API may delete it.
    """

    def __init__(self, name: str, location: Path | str, uploads: Path, *, dtype: str,
                 created: bool = False) -> None:
        self.name, self.location, self.uploads = name, location, uploads
        self.directory: Path | None = location if isinstance(location, Path) else None
        self.created = created
        self._dtype = dtype
        self._reader = Collection.open(location, dtype=dtype)
        self._writer: Collection | None = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._opened_at = int(time.time())

    @property
    def shown_location(self) -> str:
        """The location for messages: a database URL without its password."""
        if self.directory is not None:
            return str(self.directory)
        from ragmix.store.pg.connection import redact_url

        return redact_url(str(self.location))

    @property
    def created_at(self) -> int:
        """Unix seconds: the folder's last change, or when this server opened the collection."""
        return int(self.directory.stat().st_mtime) if self.directory else self._opened_at

    def _check_open(self) -> None:
        if self._closed:
            raise CollectionGoneError(f"collection {self.name!r} was deleted; "
                                      "GET /v1/collections lists those served")

    @contextmanager
    def reading(self) -> Iterator[Collection]:
        """The reader, for this thread alone while the block runs."""
        with self._read_lock:
            self._check_open()
            yield self._reader

    @contextmanager
    def writing(self) -> Iterator[Collection]:
        """The writer (opened at first use, sharing the reader's encoder), one writer at a time."""
        with self._write_lock:
            self._check_open()
            if self._writer is None:
                with self.reading() as reader:
                    encoder = reader.encoder
                self._writer = Collection.open(self.location, encoder=encoder, dtype=self._dtype)
            yield self._writer

    def searcher(self, *, fusion: str, source: str | None,
                 on_hits: Callable[[list[Hit]], None] | None = None,
                 rerank: Reranker | None = None, rerank_depth: int = DEFAULT_RERANK_DEPTH,
                 ) -> LockedSearch:
        """What ``RAG`` and ``MarginalRAG`` search, through the reader's lock; with ``rerank``,
        the first stage runs under the lock and the reranker after it."""
        return LockedSearch(self, fusion=fusion, source=source, on_hits=on_hits,
                            rerank=rerank, rerank_depth=rerank_depth)

    def close(self) -> None:
        """Close both instances, once what runs on them has finished; later uses fail."""
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            if self._writer is not None:
                self._writer.close()


class LockedSearch:
    """``search(query, k, *, mode)`` on a served collection; ``on_hits`` sees each result."""

    def __init__(self, served: ServedCollection, *, fusion: str, source: str | None,
                 on_hits: Callable[[list[Hit]], None] | None, rerank: Reranker | None = None,
                 rerank_depth: int = DEFAULT_RERANK_DEPTH) -> None:
        self.served, self.fusion, self.source, self.on_hits = served, fusion, source, on_hits
        self.reranked = None if rerank is None else RerankedSearch(
            _FirstStage(self), rerank, depth=rerank_depth)

    def first_stage(self, query: str, k: int, *, mode: str) -> list[Hit]:
        with self.served.reading() as col:
            return col.search(query, k, mode=mode, fusion=self.fusion, source=self.source)

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        if self.reranked is not None:
            hits = self.reranked.search(query, k, mode=mode)
        else:
            hits = self.first_stage(query, k, mode=mode)
        if self.on_hits is not None:
            self.on_hits(hits)
        return hits


class _FirstStage:
    """A LockedSearch's search before reranking, as RerankedSearch calls it."""

    def __init__(self, locked: LockedSearch) -> None:
        self.locked = locked

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        return self.locked.first_stage(query, k, mode=mode)
