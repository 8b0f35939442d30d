"""Reads of one collection's rows: documents, chunks, embeddings, counts and the generation.

Plain functions over a psycopg connection, as the rest of :mod:`ragmix.store.pg`.
Embeddings are read over the binary protocol, so they come back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require
from ragmix.store.backend import ChunkNotFoundError, ChunkRow, DocumentRow
from ragmix.store.pg.schema import CollectionTables
from ragmix.store.pg.search import glob_to_regex

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as psql


def current_generation(conn: psycopg.Connection, tables: CollectionTables) -> int:
    """The generation in the meta table (one key, not the whole table)."""
    sql = require("psycopg.sql", "postgres")
    row = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = 'generation'").format(
        tables.table("meta"))).fetchone()
    return int(row[0]) if row else 0


def count(conn: psycopg.Connection, tables: CollectionTables, table: str) -> int:
    sql = require("psycopg.sql", "postgres")
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(tables.table(table))).fetchone()
    return int(row[0]) if row else 0


def _documents_query(tables: CollectionTables, where: psql.Composable) -> psql.Composed:
    sql = require("psycopg.sql", "postgres")
    # COLLATE "C": ordered by code point, as SQLite orders text (``Notes`` before ``a``).
    return sql.SQL(
        "SELECT d.doc_id, d.source, d.title, d.mtime, d.content_hash,"
        " (SELECT count(*) FROM {chunks} c WHERE c.doc_id = d.doc_id)"
        " FROM {documents} d WHERE {where} ORDER BY d.doc_id COLLATE \"C\""
    ).format(chunks=tables.table("chunks"), documents=tables.table("documents"), where=where)


def _document_row(row: tuple) -> DocumentRow:
    doc_id, source, title, mtime, content_hash, n_chunks = row
    return DocumentRow(doc_id, source, title, float(mtime), content_hash, int(n_chunks))


def documents(conn: psycopg.Connection, tables: CollectionTables,
              pattern: str = "*") -> list[DocumentRow]:
    """The documents whose doc_id or source matches the glob ``pattern``, by doc_id."""
    sql = require("psycopg.sql", "postgres")
    where = sql.SQL("(d.doc_id ~ %(p)s OR d.source ~ %(p)s)")
    rows = conn.execute(_documents_query(tables, where), {"p": glob_to_regex(pattern)})
    return [_document_row(row) for row in rows.fetchall()]


def get_documents(conn: psycopg.Connection, tables: CollectionTables,
                  doc_ids: Sequence[str]) -> dict[str, DocumentRow]:
    """The documents with these ids, keyed by id; ids not stored are absent."""
    if not doc_ids:
        return {}
    sql = require("psycopg.sql", "postgres")
    rows = conn.execute(_documents_query(tables, sql.SQL("d.doc_id = ANY(%(ids)s)")),
                        {"ids": list(doc_ids)})
    return {row.doc_id: row for row in map(_document_row, rows.fetchall())}


def chunk_rows(conn: psycopg.Connection, tables: CollectionTables,
               ids: Sequence[int]) -> dict[int, ChunkRow]:
    """The chunks with these ids, keyed by id; ids not stored are absent."""
    if not len(ids):
        return {}
    sql = require("psycopg.sql", "postgres")
    rows = conn.execute(sql.SQL(
        "SELECT id, doc_id, text, start_offset, end_offset, title, source FROM {}"
        " WHERE id = ANY(%s)").format(tables.table("chunks")),
        ([int(i) for i in ids],)).fetchall()
    return {row[0]: ChunkRow(*row) for row in rows}


def embeddings(conn: psycopg.Connection, tables: CollectionTables,
               ids: Sequence[int]) -> np.ndarray:
    """(len(ids), dim) float32, row i the stored embedding of ``ids[i]`` (repeats allowed).

    Raises :class:`ChunkNotFoundError` naming the ids not stored.
    """
    sql = require("psycopg.sql", "postgres")
    wanted = [int(i) for i in ids]
    out = np.empty((len(wanted), tables.dim), dtype=np.float32)  # (n, dim)
    if not wanted:
        return out
    unique = sorted(set(wanted))
    with conn.cursor(binary=True) as cur:
        cur.execute(sql.SQL("SELECT id, embedding FROM {} WHERE id = ANY(%s)").format(
            tables.table("chunks")), (unique,))
        # the binary loader gives pgvector.Vector objects (text mode gives numpy arrays)
        found = {chunk_id: getattr(vector, "to_numpy", lambda v=vector: v)()
                 for chunk_id, vector in cur.fetchall()}
    missing = [i for i in unique if i not in found]
    if missing:
        raise ChunkNotFoundError(missing)
    for row, chunk_id in enumerate(wanted):
        out[row] = found[chunk_id]
    return out
