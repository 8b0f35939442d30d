"""Bulk writes: documents and chunks with their embeddings by binary ``COPY``; deletes.

``COPY ... FROM STDIN (FORMAT BINARY)`` sends each embedding as pgvector's binary
form (no float-to-text round trip). Load before building the embedding index
(:func:`ragmix.store.pg.index.build_index`): one index build after the load is far
faster than inserting every row into an HNSW graph.

Each function runs in a transaction of its own, which becomes a savepoint when the
caller has opened one, so a batch is ``with conn.transaction(): delete_documents(...);
load_documents(...); bump_generation(...)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.store.backend import checked_vectors
from ragmix.store.pg.schema import HALF_MAX, CollectionTables
from ragmix.types import Chunk, Document

if TYPE_CHECKING:
    import psycopg

# One document: its metadata, its chunks and their (n_chunks, dim) float32 embeddings.
DocumentItem = tuple[Document, Sequence[Chunk], np.ndarray]


def _checked(items: Sequence[DocumentItem], dim: int) -> list[DocumentItem]:
    seen: set[str] = set()
    out = []
    for doc, chunks, vectors in items:
        if doc.doc_id in seen:
            raise BadInputError(f"document {doc.doc_id!r} appears twice in one load; "
                                "give each document once")
        seen.add(doc.doc_id)
        out.append((doc, chunks, checked_vectors(doc, chunks, vectors, dim)))
    return out


def reserve_chunk_ids(conn: psycopg.Connection, tables: CollectionTables, n: int) -> np.ndarray:
    """(n,) int64, ascending: fresh chunk ids from the table's identity sequence.

    Ids are above every id issued before and never reused, even after a rollback.
    """
    sql = require("psycopg.sql", "postgres")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    rows = conn.execute(
        sql.SQL("SELECT nextval(pg_get_serial_sequence({}, 'id')) FROM generate_series(1, %s)"
                ).format(sql.Literal(f"{tables.schema}.chunks")), (n,)).fetchall()
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64, count=n))


def load_documents(conn: psycopg.Connection, tables: CollectionTables,
                   items: Sequence[DocumentItem]) -> np.ndarray:
    """Insert documents with their chunks and embeddings; a stored doc_id is replaced whole.

    Returns the new chunks' ids, (total chunks,) int64, in the order of ``items`` and
    their chunks (ascending). One transaction: all of it is stored, or none.
    Raises :class:`~ragmix.errors.BadInputError` for vectors of the wrong shape.
    """
    checked = _checked(items, tables.dim)
    total = sum(len(chunks) for _, chunks, _ in checked)
    now = time.time()
    with conn.transaction():
        delete_documents(conn, tables, [doc.doc_id for doc, _, _ in checked])
        ids = reserve_chunk_ids(conn, tables, total)
        _copy_documents(conn, tables, [(doc, len(doc.text), now) for doc, _, _ in checked])
        _copy_chunks(conn, tables, checked, ids)
    return ids


def _copy_documents(conn: psycopg.Connection, tables: CollectionTables,
                    rows: Sequence[tuple[Document, int, float]]) -> None:
    sql = require("psycopg.sql", "postgres")
    statement = sql.SQL(
        "COPY {} (doc_id, source, title, mtime, content_hash, n_chars, indexed_at)"
        " FROM STDIN (FORMAT BINARY)").format(tables.table("documents"))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["text", "text", "text", "float8", "text", "int4", "float8"])
        for doc, n_chars, now in rows:
            copy.write_row((doc.doc_id, doc.source, doc.title, float(doc.mtime),
                            doc.content_hash, n_chars, now))


def _copy_chunks(conn: psycopg.Connection, tables: CollectionTables,
                 items: Sequence[DocumentItem], ids: np.ndarray) -> None:
    sql = require("psycopg.sql", "postgres")
    half = tables.storage == "halfvec"
    columns = ["id", "doc_id", "position", "start_offset", "end_offset", "text", "source",
               "title", "embedding"] + ["embedding_half"] * half
    types = ["int8", "text", "int4", "int4", "int4", "text", "text", "text", "vector"]
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        tables.table("chunks"), sql.SQL(", ").join(map(sql.Identifier, columns)))
    next_id = iter(ids.tolist())
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types + ["halfvec"] * half)
        for doc, chunks, vectors in items:
            halves = to_half(vectors) if half else [None] * len(chunks)
            for chunk, vector, halved in zip(chunks, vectors, halves):
                row = (next(next_id), doc.doc_id, chunk.index, chunk.start, chunk.end,
                       chunk.text, doc.source, doc.title, vector)
                copy.write_row(row + (halved,) if half else row)


def to_half(vectors: np.ndarray) -> list:
    """Rows of ``vectors`` (n, dim) as pgvector HalfVectors, clipped to float16's range."""
    half_vector = require("pgvector", "postgres").HalfVector
    clipped = np.clip(vectors, -HALF_MAX, HALF_MAX)  # (n, dim)
    return [half_vector(row) for row in clipped]


def delete_documents(conn: psycopg.Connection, tables: CollectionTables,
                     doc_ids: Sequence[str]) -> np.ndarray:
    """Delete documents and their chunks; ids not stored are ignored.

    Returns the removed chunk ids, (n,) int64, ascending.
    """
    sql = require("psycopg.sql", "postgres")
    if not doc_ids:
        return np.empty(0, dtype=np.int64)
    with conn.transaction():
        rows = conn.execute(
            sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s) RETURNING id").format(
                tables.table("chunks")), (list(doc_ids),)).fetchall()
        conn.execute(sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(
            tables.table("documents")), (list(doc_ids),))
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
