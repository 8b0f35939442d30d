"""SQLite holds the truth of a collection: documents, chunks and their embeddings.

Every change is one transaction that also bumps ``generation``; the FAISS and
BM25 files are derived views stamped with the generation they reflect, so after
a crash they are brought up to date from here (see ``Collection``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ragmix.errors import CollectionError
from ragmix.store.backend import ChunkNotFoundError, ChunkRow, DocumentRow, checked_vectors
from ragmix.types import Chunk, Document

__all__ = ["ChunkRow", "DocumentRow", "SqliteBatch", "SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    mtime REAL NOT NULL,
    content_hash TEXT NOT NULL,
    n_chars INTEGER NOT NULL,
    indexed_at REAL NOT NULL
);
-- AUTOINCREMENT: ids are never reused, so a stale index can never confuse an
-- old chunk with a new one.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
"""
_MAX_PARAMS = 900  # bound parameters per query: SQLite builds before 3.32 cap them at 999


class SqliteStore:
    """Documents and chunks (with embeddings) in one SQLite file, WAL, fsync on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path)

    def close(self) -> None:
        self._db.close()

    # -- reads ---------------------------------------------------------------
    @property
    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0])

    def count_documents(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def count_chunks(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def chunk_ids(self) -> np.ndarray:
        """(n,) int64, ascending."""
        rows = self._db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_ids_for_source(self, pattern: str) -> np.ndarray:
        """Chunk ids whose document source or id matches a glob (``*`` crosses ``/``)."""
        rows = self._db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            "WHERE d.source GLOB ?1 OR d.doc_id GLOB ?1 ORDER BY c.id",
            (pattern,),
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings(self, ids: Sequence[int], dim: int) -> np.ndarray:
        """(len(ids), dim) float32, in the order of ``ids``; ChunkNotFoundError names ids not
        stored."""
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), _MAX_PARAMS):
            part = [int(i) for i in ids[start : start + _MAX_PARAMS]]
            marks = ",".join("?" * len(part))
            found = dict(
                self._db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks})", part)
            )
            if len(found) < len(set(part)):
                raise ChunkNotFoundError(sorted(set(part) - set(found)))
            for row, chunk_id in enumerate(part, start=start):
                out[row] = np.frombuffer(found[chunk_id], dtype=np.float32)
        return out

    def iter_texts(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, list[str]]]:
        """All chunk ids and texts in id order, in batches: ((n,) int64, texts)."""
        cursor = self._db.execute("SELECT id, text FROM chunks ORDER BY id")
        while rows := cursor.fetchmany(batch):
            yield np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def texts_after(self, after: int, limit: int) -> tuple[np.ndarray, list[str]]:
        """Up to ``limit`` chunk ids above ``after`` with their texts, in id order.

        One complete query per call, so the caller may write between calls.
        """
        rows = self._db.execute("SELECT id, text FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                                (int(after), int(limit))).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            "SELECT c.id, c.doc_id, c.text, c.start, c.end, d.title, d.source FROM chunks c "
            f"JOIN documents d ON d.doc_id = c.doc_id WHERE c.id IN ({marks})",
            [int(i) for i in ids],
        )
        return {r[0]: ChunkRow(*r) for r in rows}

    def get_documents(self, doc_ids: Sequence[str]) -> dict[str, DocumentRow]:
        """The documents with these ids, keyed by id; ids not stored are absent."""
        out: dict[str, DocumentRow] = {}
        for start in range(0, len(doc_ids), _MAX_PARAMS):
            part = [str(d) for d in doc_ids[start : start + _MAX_PARAMS]]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                "SELECT d.doc_id, d.source, d.title, d.mtime, d.content_hash, "
                "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) "
                f"FROM documents d WHERE d.doc_id IN ({marks})", part)
            out.update((r[0], DocumentRow(*r)) for r in rows)
        return out

    def documents(self, pattern: str = "*") -> list[DocumentRow]:
        rows = self._db.execute(
            "SELECT d.doc_id, d.source, d.title, d.mtime, d.content_hash, COUNT(c.id) "
            "FROM documents d LEFT JOIN chunks c ON c.doc_id = d.doc_id "
            "WHERE d.doc_id GLOB ?1 OR d.source GLOB ?1 GROUP BY d.doc_id ORDER BY d.doc_id",
            (pattern,),
        )
        return [DocumentRow(*r) for r in rows]

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- writes (each call is one transaction) ------------------------------
    def set_embeddings(self, ids: Sequence[int], vectors: np.ndarray,
                       meta: dict[str, str | None] | None = None) -> None:
        """Replace the embeddings (n, dim) of chunks ``ids`` (n,), and set or delete ``meta``
        keys (None deletes) in the same transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction() as db:
            db.executemany("UPDATE chunks SET embedding = ? WHERE id = ?",
                           [(vectors[i].tobytes(), int(c)) for i, c in enumerate(ids)])
            for key, value in (meta or {}).items():
                if value is None:
                    db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def copy_to(self, path: Path, meta: dict[str, str] | None = None) -> None:
        """A consistent copy of the whole database at ``path`` (SQLite's online backup),
        with ``meta`` keys set in the copy."""
        target = sqlite3.connect(str(path))
        try:
            self._db.backup(target)
            with target:
                target.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   list((meta or {}).items()))
        finally:
            target.close()

    @contextmanager
    def write(self, dim: int | None = None) -> Iterator[SqliteBatch]:
        """One transaction (BEGIN IMMEDIATE): commits and bumps the generation on leaving,
        rolls back on an exception. ``dim`` checks the vectors put."""
        with self._transaction() as db:
            yield SqliteBatch(db, dim)

    def _transaction(self):
        return _Transaction(self._db)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state, even while another process writes (WAL)."""
        self._db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._db.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` with the schema in place, or a CollectionError naming the file."""
    db = None
    try:
        # check_same_thread=False: a collection opened in one thread may be read from
        # another (a caller's worker pool); this SQLite build is serialised
        # (sqlite3.threadsafety == 3), so it guards the connection itself.
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")  # the first read: a corrupt file fails here
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        return db
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise CollectionError(
            f"cannot open the collection's store {str(path)!r} ({exc}); it holds the "
            "documents and embeddings, so restore it from a backup, or re-index into a "
            "new collection (ragmix index PATH --collection NEW_DIR)"
        ) from exc


class SqliteBatch:
    """The writes of one :meth:`SqliteStore.write` transaction (a :class:`StoreBatch`)."""

    def __init__(self, db: sqlite3.Connection, dim: int | None) -> None:
        self._db, self._dim, self._now = db, dim, time.time()

    def put(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace ``document`` with its chunks and (len(chunks), dim) embeddings."""
        dim = self._dim if self._dim is not None else np.shape(vectors)[-1]
        vectors = checked_vectors(document, chunks, vectors, dim)
        doc = document
        self._db.execute("DELETE FROM documents WHERE doc_id = ?", (doc.doc_id,))  # cascades
        self._db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc.doc_id, doc.source, doc.title, doc.mtime, doc.content_hash, len(doc.text),
             self._now),
        )
        self._db.executemany(
            "INSERT INTO chunks (doc_id, position, start, end, text, embedding) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(doc.doc_id, c.index, c.start, c.end, c.text, vectors[i].tobytes())
             for i, c in enumerate(chunks)],
        )

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete documents and (by cascade) their chunks; unknown ids are ignored."""
        self._db.executemany("DELETE FROM documents WHERE doc_id = ?",
                             [(str(d),) for d in doc_ids])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT that also bumps the generation; ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._db.execute("ROLLBACK")
            return
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )
        self._db.execute("COMMIT")
