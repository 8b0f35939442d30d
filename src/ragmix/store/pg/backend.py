"""The PostgreSQL + pgvector :class:`~ragmix.store.backend.StoreBackend`.

PostgreSQL is the truth and does the work: a batch is one transaction (the
generation row it bumps also queues a second writer behind it), vector search runs
on the HNSW or IVFFlat index (``tests/test_backend_pg.py`` runs the contract suite
on each), keyword search on a bm25s view of the texts or on PostgreSQL's tsvector
(see :class:`~ragmix.store.pg.settings.PgSettings`). Writes are binary ``COPY``; the
embedding index is built by the first :meth:`PgBackend.refresh` after a load, and
maintained by PostgreSQL for later inserts.

Example (needs a server)::

    backend = PgBackend.create("postgresql://me@localhost/rag", "notes", dim=384)
    with backend.batch() as batch:
        batch.put(document, chunks, vectors)
    backend.refresh()  # builds the HNSW index once the first load is in
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix.errors import BadInputError
from ragmix.store import pg
from ragmix.store.backend import ChunkRow, DocumentRow, checked_vectors
from ragmix.store.pg import rows
from ragmix.store.pg.keyword import KeywordView, default_cache_dir, read_bm25
from ragmix.store.pg.settings import PgSettings
from ragmix.types import Chunk, Document, ScoredId

if TYPE_CHECKING:
    import psycopg

# An IVFFlat index's lists are centroids of the rows present when it was built: once
# the table has grown this many times over, refresh builds it again.
IVF_REBUILD_GROWTH = 2.0


class PgBatch:
    """The writes of one batch, sent as binary COPY when a delete or the commit needs them."""

    def __init__(self, conn: psycopg.Connection, tables: pg.CollectionTables) -> None:
        self._conn, self._tables = conn, tables
        self._pending: list[tuple[Document, Sequence[Chunk], np.ndarray]] = []

    def put(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        vectors = checked_vectors(document, chunks, vectors, self._tables.dim)
        if any(doc.doc_id == document.doc_id for doc, _, _ in self._pending):
            self.flush()  # put twice in one batch: the later one replaces the earlier
        self._pending.append((document, list(chunks), vectors))

    def delete(self, doc_ids: Sequence[str]) -> None:
        self.flush()
        pg.delete_documents(self._conn, self._tables, list(doc_ids))

    def flush(self) -> None:
        if self._pending:
            pg.load_documents(self._conn, self._tables, self._pending)
            self._pending = []


class PgBackend:
    """One collection in a PostgreSQL database: the PostgreSQL :class:`StoreBackend`.

    Open one with :meth:`create` or :meth:`open`. ``bm25`` holds the
    :meth:`~ragmix.retrieval.bm25.BM25Index.build` options of the BM25 view;
    ``cache_dir`` is where the view is saved (None: kept in memory only).
    """

    def __init__(self, conn: psycopg.Connection, tables: pg.CollectionTables,
                 settings: PgSettings, *, bm25: dict[str, Any] | None = None,
                 cache_dir: Path | None = None) -> None:
        self._conn, self.tables, self.settings = conn, tables, settings
        uid = pg.get_meta(conn, tables).get("uid")
        folder = Path(cache_dir) / "pg-bm25" / uid if cache_dir is not None and uid else None
        self._keywords = KeywordView(folder, bm25 or {})

    @classmethod
    def create(cls, url: str, name: str, dim: int, *, settings: PgSettings | None = None,
               meta: dict[str, str] | None = None, **options: Any) -> PgBackend:
        """A new, empty collection ``name`` in the database at ``url``.

        ``meta`` is written into its meta table in the same transaction (the
        collection's manifest goes there). Raises
        :class:`~ragmix.store.pg.PostgresStoreError` when it exists already.
        """
        settings = settings or PgSettings()
        conn = pg.connect(url)
        try:
            tables = pg.CollectionTables(name, dim=dim, storage=settings.storage)  # type: ignore[arg-type]
            with conn.transaction():
                pg.create_schema(conn, tables)
                pg.set_meta(conn, tables, {"uid": uuid.uuid4().hex, **(meta or {})})
        except BaseException:
            conn.close()
            raise
        return cls(conn, tables, settings, **_with_cache(options))

    @classmethod
    def open(cls, url: str, name: str, *, settings: PgSettings | None = None,
             **options: Any) -> PgBackend:
        """The existing collection ``name`` at ``url``; ``settings`` default to its own."""
        conn = pg.connect(url)
        try:
            tables = pg.open_schema(conn, name)
            if settings is None:
                settings = PgSettings(storage=tables.storage)
            elif settings.storage != tables.storage:
                raise BadInputError(
                    f"collection {name!r} stores its index as {tables.storage}, not "
                    f"{settings.storage}; copy it into a new collection to change that")
        except BaseException:
            conn.close()
            raise
        return cls(conn, tables, settings, **_with_cache(options))

    def __repr__(self) -> str:
        info = self._conn.info
        return (f"PgBackend('postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}', "
                f"{self.tables.name!r}, dim={self.dim})")

    @property
    def connection(self) -> psycopg.Connection:
        """The backend's connection (autocommit), for code that needs this backend only."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    # -- reads -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.tables.dim

    @property
    def generation(self) -> int:
        return rows.current_generation(self._conn, self.tables)

    def count_documents(self) -> int:
        return rows.count(self._conn, self.tables, "documents")

    def count_chunks(self) -> int:
        return rows.count(self._conn, self.tables, "chunks")

    def documents(self, pattern: str = "*") -> list[DocumentRow]:
        return rows.documents(self._conn, self.tables, pattern)

    def get_documents(self, doc_ids: Sequence[str]) -> dict[str, DocumentRow]:
        return rows.get_documents(self._conn, self.tables, doc_ids)

    def chunk_ids(self, source: str | None = None) -> np.ndarray:
        return pg.chunk_ids(self._conn, self.tables, source=source)

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        return rows.chunk_rows(self._conn, self.tables, ids)

    def embeddings(self, ids: Sequence[int]) -> np.ndarray:
        return rows.embeddings(self._conn, self.tables, ids)

    # -- search ------------------------------------------------------------------
    def vector_search(self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None,
                      ef_search: int | None = None,
                      nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`StoreBackend.vector_search`; ``ef_search`` (hnsw) and ``nprobe`` (ivf)
        override the collection's settings for this call only."""
        s = self.settings.searching_with(ef_search=ef_search, nprobe=nprobe)
        return pg.vector_search(self._conn, self.tables, queries, k, allowed_ids=allowed_ids,
                                ef_search=s.ef_search,
                                probes=s.nprobe if s.kind == "ivf" else None,
                                exact=s.kind == "flat")

    def keyword_search(self, query: str, k: int, *,
                       allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        if k <= 0:
            raise BadInputError(f"k must be > 0, got {k}")
        if self.settings.keyword == "tsvector":
            return pg.keyword_search(self._conn, self.tables, query, k, allowed_ids=allowed_ids)
        return self._bm25().search(query, k, allowed_ids=allowed_ids)

    def _bm25(self) -> Any:
        return self._keywords.get(
            self.generation, self.count_chunks,
            lambda settings: read_bm25(
                self._conn, self.tables,
                lambda: rows.current_generation(self._conn, self.tables), settings))

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[PgBatch]:
        with self._conn.transaction():
            batch = PgBatch(self._conn, self.tables)
            yield batch
            batch.flush()
            pg.bump_generation(self._conn, self.tables)

    def refresh(self) -> None:
        """Build the embedding index if the table has none (or IVF outgrew its lists), the
        tsvector index if keyword search uses it, and save the BM25 view if it does not."""
        self.build_index(only_if_missing=True)
        if self.settings.keyword == "tsvector":
            if not self._has_index("keyword"):
                pg.build_keyword_index(self._conn, self.tables)
        else:
            self._bm25()
            self._keywords.save()

    def build_index(self, *, only_if_missing: bool = False,
                    maintenance_work_mem: str | None = None) -> None:
        """(Re)build the embedding index from the settings (nothing for ``flat``)."""
        options = self.settings.index_options()
        if options is None:
            return
        n = self.count_chunks()
        if only_if_missing and self._has_index("embedding"):
            built_rows = int(pg.get_meta(self._conn, self.tables).get("index_rows", "0"))
            if self.settings.kind != "ivf" or n < IVF_REBUILD_GROWTH * max(built_rows, 1):
                return
        if only_if_missing and n == 0:
            return  # nothing to build the lists (or the graph) from yet
        pg.build_index(self._conn, self.tables, options,
                       maintenance_work_mem=maintenance_work_mem)
        pg.set_meta(self._conn, self.tables, {"index_rows": str(n)})

    def _has_index(self, kind: str) -> bool:
        row = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                 (f'"{self.tables.schema}"."chunks_{kind}_idx"',)).fetchone()
        return bool(row and row[0])


def _with_cache(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``cache_dir`` defaulting to the user's cache folder."""
    return {"cache_dir": default_cache_dir(), **options}
