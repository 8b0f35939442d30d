"""Top-k inner-product search with filters, and keyword search, over one collection.

pgvector facts this module relies on (``tests/test_pgvector_server.py`` checks each):

- ``a <#> b`` is the *negative* inner product, and the HNSW / IVFFlat index serves
  only ``ORDER BY embedding <#> query`` ascending on the bare operator; the score
  returned is ``-(a <#> b)``.
- An index scan stops after ``hnsw.ef_search`` candidates (40 by default) and
  filters afterwards, so a filter matching 2% of rows returned about 1 row of 10.
  With ``hnsw.iterative_scan = relaxed_order`` (pgvector >= 0.8) the scan goes on
  until the LIMIT is met; its rows may come slightly out of order, hence the
  re-sort around a ``MATERIALIZED`` CTE.
- Settings hold per transaction only (``SET LOCAL``, via :func:`.local_settings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.store.pg.connection import PostgresStoreError, local_settings
from ragmix.store.pg.load import to_half
from ragmix.store.pg.schema import CollectionTables
from ragmix.types import ScoredId

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as psql

EMPTY_SCORE = float(np.finfo(np.float32).min)  # an empty result slot, as FAISS writes it
DEFAULT_EF_SEARCH = 40  # pgvector's default
MAX_EF_SEARCH = 1000  # pgvector's limit
# An allow-list this short is searched exactly: cheaper than walking the graph for it.
EXACT_ALLOWED_IDS = 2000
NO_MATCH = "(?!)"  # a regex that matches no string
# A halfvec index ranks by float16 products; this many times k rows are re-scored in float32.
HALFVEC_SHORTLIST = 4


def glob_to_regex(pattern: str) -> str:
    """A PostgreSQL regex (for ``~``) matching what SQLite's GLOB matches.

    ``*`` is any string (``/`` included), ``?`` one character, ``[abc]`` / ``[^abc]``
    a set; everything else stands for itself, case-sensitively. A ``[`` that is never
    closed matches nothing, as in SQLite.

    >>> glob_to_regex("docs/*.md")
    '^docs\\\\/.*\\\\.md$'
    >>> glob_to_regex("a[^0-9]?")
    '^a[^0-9].$'
    """
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            j += pattern[j:j + 1] == "]"  # a leading ] is a member, not the end
            end = pattern.find("]", j)
            if end < 0:
                return NO_MATCH  # SQLite: a [ never closed matches nothing
            negate = pattern[i + 1] == "^"
            body = pattern[i + 1 + negate:end].replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + "^" * negate + body + "]")
            i = end
        else:
            out.append(ch if ch.isalnum() or ch in " _" else "\\" + ch)
        i += 1
    return "".join(out) + "$"


def _where(allowed_ids: np.ndarray | None, doc_ids: Sequence[str] | None,
           source: str | None) -> tuple[psql.Composable, dict[str, object]]:
    """The WHERE condition of the filters given (all must hold) and its parameters."""
    sql = require("psycopg.sql", "postgres")
    parts: list[psql.Composable] = []
    params: dict[str, object] = {}
    if allowed_ids is not None:
        parts.append(sql.SQL("id = ANY(%(allowed_ids)s)"))
        params["allowed_ids"] = np.asarray(allowed_ids, dtype=np.int64).tolist()
    if doc_ids is not None:
        parts.append(sql.SQL("doc_id = ANY(%(doc_ids)s)"))
        params["doc_ids"] = list(doc_ids)
    if source is not None:
        parts.append(sql.SQL("(source ~ %(source)s OR doc_id ~ %(source)s)"))
        params["source"] = glob_to_regex(source)
    if not parts:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(parts), params


def _settings(limit: int, filtered: bool, ef_search: int | None,
              probes: int | None) -> dict[str, str]:
    ef = DEFAULT_EF_SEARCH if ef_search is None else ef_search
    if not 1 <= ef <= MAX_EF_SEARCH:
        raise BadInputError(f"ef_search must be in 1..{MAX_EF_SEARCH}, got {ef_search}")
    if probes is not None and probes < 1:
        raise BadInputError(f"probes must be >= 1, got {probes}")
    # Unfiltered HNSW returns at most ef_search rows: raise it to the LIMIT where it allows.
    settings = {"hnsw.ef_search": str(min(max(ef, limit), MAX_EF_SEARCH))}
    if probes is not None:
        settings["ivfflat.probes"] = str(probes)
    if filtered or limit > MAX_EF_SEARCH:
        settings["hnsw.iterative_scan"] = "relaxed_order"
        settings["ivfflat.iterative_scan"] = "relaxed_order"
    return settings


def shortlist_size(tables: CollectionTables, k: int, exact: bool) -> int:
    """Rows the index is asked for: k, or HALFVEC_SHORTLIST * k when a halfvec index ranks
    them (its order is float16's; the float32 re-score then picks the true top k)."""
    return k if exact or tables.storage == "vector" else HALFVEC_SHORTLIST * k


def _vector_query(tables: CollectionTables, where: psql.Composable, exact: bool) -> psql.Composed:
    sql = require("psycopg.sql", "postgres")
    distance = sql.SQL("embedding <#> %(q)s::vector")  # float32, as stored
    if exact:
        # `+ 0` hides the operator from the planner, so an exact search never uses the index.
        order = sql.SQL("({}) + 0, id").format(distance)
    elif tables.storage == "halfvec":  # the float16 copy the index holds (index.py)
        order = sql.SQL("embedding_half <#> %(q_half)s::halfvec")
    else:
        order = distance
    return sql.SQL(
        "WITH hits AS MATERIALIZED (SELECT id, embedding FROM {chunks}"
        " WHERE {where} ORDER BY {order} LIMIT %(shortlist)s)"
        " SELECT id, {distance} AS distance FROM hits ORDER BY distance, id LIMIT %(k)s"
    ).format(distance=distance, chunks=tables.table("chunks"), where=where, order=order)


def vector_search(conn: psycopg.Connection, tables: CollectionTables, queries: np.ndarray,
                  k: int, *, allowed_ids: np.ndarray | None = None,
                  doc_ids: Sequence[str] | None = None, source: str | None = None,
                  ef_search: int | None = None, probes: int | None = None,
                  exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Maximum inner product search: queries (q, dim) -> scores (q, k) float32, ids (q, k) int64.

    Each row is best first (ties by id); slots beyond the hits have id -1 and score
    :data:`EMPTY_SCORE`. Filters, all of which must hold: ``allowed_ids`` (chunk ids),
    ``doc_ids``, ``source`` (a glob on the document's source or doc_id). ``ef_search``
    (HNSW) and ``probes`` (IVFFlat) hold for this call only; ``exact`` skips the index.
    Scores are float32 inner products with the stored embeddings, whatever the index:
    a ``halfvec`` index only picks the shortlist. One transaction for all queries.
    """
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != tables.dim:
        raise BadInputError(f"queries must have shape (q, {tables.dim}), got {queries.shape}")
    if k <= 0:
        raise BadInputError(f"k must be > 0, got {k}")
    where, params = _where(allowed_ids, doc_ids, source)
    exact = exact or (allowed_ids is not None and len(allowed_ids) <= EXACT_ALLOWED_IDS)
    statement = _vector_query(tables, where, exact)
    shortlist = shortlist_size(tables, k, exact)
    scores = np.full((len(queries), k), EMPTY_SCORE, dtype=np.float32)  # (q, k)
    ids = np.full((len(queries), k), -1, dtype=np.int64)  # (q, k)
    with local_settings(conn, _settings(shortlist, bool(params), ef_search, probes)):
        for row, query in enumerate(queries):
            args = {**params, "q": query, "k": k, "shortlist": shortlist}
            if tables.storage == "halfvec" and not exact:
                args["q_half"] = to_half(query[None])[0]
            hits = conn.execute(statement, args).fetchall()
            for col, (chunk_id, distance) in enumerate(hits):
                ids[row, col] = chunk_id
                scores[row, col] = -distance  # <#> is the negative inner product
    return scores, ids


def _tsquery(tables: CollectionTables) -> psql.Composed:
    """Any of the query's terms (plainto_tsquery ANDs them; ranking wants OR), or NULL."""
    sql = require("psycopg.sql", "postgres")
    return sql.SQL(
        "NULLIF(replace(plainto_tsquery({}::regconfig, %(text)s)::text, ' & ', ' | '), '')::tsquery"
    ).format(sql.Literal(tables.text_search))


def keyword_search(conn: psycopg.Connection, tables: CollectionTables, query: str, k: int, *,
                   allowed_ids: np.ndarray | None = None, doc_ids: Sequence[str] | None = None,
                   source: str | None = None) -> list[ScoredId]:
    """Up to ``k`` chunks sharing a term with ``query``, best first, ties by chunk id.

    Scores are PostgreSQL's ``ts_rank_cd`` (cover density; > 0 for a match), not
    BM25: there is no IDF, so a common term counts as much as a rare one. Terms are
    stemmed and stop words dropped by the collection's text search configuration.
    Filters as in :func:`vector_search`.
    """
    if tables.text_search is None:
        raise PostgresStoreError(
            f"collection {tables.name!r} was created without keyword search (text_search=None)")
    if k <= 0:
        raise BadInputError(f"k must be > 0, got {k}")
    sql = require("psycopg.sql", "postgres")
    where, params = _where(allowed_ids, doc_ids, source)
    statement = sql.SQL(
        "WITH q AS (SELECT {tsquery} AS query) SELECT id, ts_rank_cd(tsv, q.query) AS score"
        " FROM {chunks}, q WHERE tsv @@ q.query AND {where} ORDER BY score DESC, id LIMIT %(k)s"
    ).format(tsquery=_tsquery(tables), chunks=tables.table("chunks"), where=where)
    with conn.transaction():
        rows = conn.execute(statement, {**params, "text": query, "k": k}).fetchall()
    return [ScoredId(int(chunk_id), float(score)) for chunk_id, score in rows]


def chunk_ids(conn: psycopg.Connection, tables: CollectionTables, *,
              source: str | None = None) -> np.ndarray:
    """(n,) int64, ascending: every chunk id, or those whose document matches ``source``."""
    sql = require("psycopg.sql", "postgres")
    where, params = _where(None, None, source)
    rows = conn.execute(sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(
        tables.table("chunks"), where), params).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
