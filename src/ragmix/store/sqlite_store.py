"""SQLite holds the truth of a collection: documents, chunks and their embeddings.

Every change is one transaction that also bumps ``generation``; the FAISS and
BM25 files are derived views stamped with the generation they reflect, so after
a crash they are brought up to date from here (see ``Collection``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragmix.errors import CollectionError
from ragmix.types import Chunk, Document

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


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk joined with its document's title and source."""

    chunk_id: int
    doc_id: str
    text: str
    start: int
    end: int
    title: str
    source: str


@dataclass(frozen=True)
class DocumentRow:
    """A stored document's metadata (its text lives in its chunks)."""

    doc_id: str
    source: str
    title: str
    mtime: float
    content_hash: str
    n_chunks: int


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

    def content_hashes(self) -> dict[str, str]:
        """doc_id -> content hash, to decide what re-indexing must redo."""
        return dict(self._db.execute("SELECT doc_id, content_hash FROM documents"))

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
        """(len(ids), dim) float32, in the order of ``ids``."""
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters
            part = [int(i) for i in ids[start : start + 900]]
            marks = ",".join("?" * len(part))
            found = dict(
                self._db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks})", part)
            )
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

    def replace_documents(
        self, items: Iterable[tuple[Document, Sequence[Chunk], np.ndarray]]
    ) -> list[int]:
        """Insert or replace documents with their chunks and (n_chunks, dim) embeddings.

        Returns the ids of the chunks that were replaced (now gone).
        """
        removed: list[int] = []
        now = time.time()
        with self._transaction() as db:
            for doc, chunks, vectors in items:
                removed += [r[0] for r in db.execute(
                    "SELECT id FROM chunks WHERE doc_id = ?", (doc.doc_id,)
                )]
                db.execute("DELETE FROM documents WHERE doc_id = ?", (doc.doc_id,))
                db.execute(
                    "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (doc.doc_id, doc.source, doc.title, doc.mtime, doc.content_hash,
                     len(doc.text), now),
                )
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                db.executemany(
                    "INSERT INTO chunks (doc_id, position, start, end, text, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(doc.doc_id, c.index, c.start, c.end, c.text, vectors[i].tobytes())
                     for i, c in enumerate(chunks)],
                )
        return removed

    def delete_documents(self, doc_ids: Sequence[str]) -> list[int]:
        """Delete documents and their chunks; returns the removed chunk ids."""
        removed: list[int] = []
        with self._transaction() as db:
            for doc_id in doc_ids:
                removed += [r[0] for r in db.execute(
                    "SELECT id FROM chunks WHERE doc_id = ?", (doc_id,)
                )]
                db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return removed

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
