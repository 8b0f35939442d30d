"""The embedding index (HNSW by default, IVFFlat as an option) and the keyword index.

Both are built after the bulk load: building once over loaded rows is much faster
than growing the index row by row. Later inserts are added to them by PostgreSQL.
The operator class is the inner-product one (``vector_ip_ops`` / ``halfvec_ip_ops``),
so queries must ``ORDER BY embedding <#> query`` ascending (see :mod:`.search`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.store.pg.connection import PostgresStoreError, local_settings
from ragmix.store.pg.schema import CollectionTables, get_meta, set_meta

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as psql

# pgvector's limits on indexed dimensions (the column types themselves go to 16000).
MAX_INDEX_DIM = {"vector": 2000, "halfvec": 4000}


@dataclass(frozen=True)
class HnswOptions:
    """HNSW build settings (pgvector's defaults: m=16, ef_construction=64).

    ``m`` links per node: more is better recall, a larger index and a slower build.
    ``ef_construction`` candidates while building; at least 2 * m.
    """

    m: int = 16
    ef_construction: int = 64

    def __post_init__(self) -> None:
        if not 2 <= self.m <= 100:
            raise BadInputError(f"HNSW m must be in 2..100, got {self.m}")
        if not 2 * self.m <= self.ef_construction <= 1000:
            raise BadInputError(f"HNSW ef_construction must be in 2*m..1000 "
                                f"({2 * self.m}..1000), got {self.ef_construction}")


@dataclass(frozen=True)
class IvfflatOptions:
    """IVFFlat build settings: ``lists`` clusters (pgvector suggests rows / 1000 up to 1M rows).

    Build it after loading: the lists are k-means centroids of the rows present.
    """

    lists: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.lists <= 32768:
            raise BadInputError(f"IVFFlat lists must be in 1..32768, got {self.lists}")


IndexOptions = HnswOptions | IvfflatOptions


def _index_statement(tables: CollectionTables, options: IndexOptions) -> psql.Composed:
    sql = require("psycopg.sql", "postgres")
    opclass = sql.SQL(f"{tables.vector_type}_ip_ops")
    # halfvec: the index is on the float16 copy; the float32 column re-scores (search.py)
    column = sql.SQL("embedding_half" if tables.storage == "halfvec" else "embedding")
    if isinstance(options, HnswOptions):
        method = sql.SQL("hnsw")
        params = sql.SQL("m = {}, ef_construction = {}").format(
            sql.Literal(options.m), sql.Literal(options.ef_construction))
    else:
        method = sql.SQL("ivfflat")
        params = sql.SQL("lists = {}").format(sql.Literal(options.lists))
    return sql.SQL("CREATE INDEX {name} ON {chunks} USING {method} ({column} {opclass})"
                   " WITH ({params})").format(
        name=sql.Identifier("chunks_embedding_idx"), chunks=tables.table("chunks"),
        method=method, column=column, opclass=opclass, params=params)


def build_index(conn: psycopg.Connection, tables: CollectionTables,
                options: IndexOptions | None = None, *,
                maintenance_work_mem: str | None = None) -> None:
    """(Re)build the embedding index, replacing any earlier one; one transaction.

    ``options`` defaults to :class:`HnswOptions`. ``maintenance_work_mem`` (e.g.
    ``"1GB"``) holds only for this build: an HNSW build is fastest when its graph
    fits in it. The options are recorded in the collection's meta table.
    """
    options = HnswOptions() if options is None else options
    if not isinstance(options, (HnswOptions, IvfflatOptions)):
        raise BadInputError(f"options must be HnswOptions or IvfflatOptions, got {options!r}")
    limit = MAX_INDEX_DIM[tables.storage]
    if tables.dim > limit:
        hint = "; store halfvec to index up to 4000" if tables.storage == "vector" else ""
        raise PostgresStoreError(
            f"pgvector indexes {tables.storage} of at most {limit} dimensions, this collection "
            f"has {tables.dim}{hint}")
    settings = {"maintenance_work_mem": maintenance_work_mem} if maintenance_work_mem else {}
    sql = require("psycopg.sql", "postgres")
    with local_settings(conn, settings):
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(tables.index_name("embedding")))
        conn.execute(_index_statement(tables, options))
        conn.execute(sql.SQL("ANALYZE {}").format(tables.table("chunks")))
        kind = "hnsw" if isinstance(options, HnswOptions) else "ivfflat"
        set_meta(conn, tables, {"index": json.dumps({"kind": kind, **asdict(options)})})


def index_options(conn: psycopg.Connection, tables: CollectionTables) -> IndexOptions | None:
    """The options the embedding index was last built with, or None before the first build."""
    text = get_meta(conn, tables).get("index")
    if text is None:
        return None
    fields = json.loads(text)
    kind = fields.pop("kind")
    return HnswOptions(**fields) if kind == "hnsw" else IvfflatOptions(**fields)


def build_keyword_index(conn: psycopg.Connection, tables: CollectionTables) -> None:
    """(Re)build the GIN index on the chunks' tsvector, which keyword search uses."""
    if tables.text_search is None:
        raise PostgresStoreError(
            f"collection {tables.name!r} was created without keyword search (text_search=None); "
            "create it with text_search='english' to have one")
    sql = require("psycopg.sql", "postgres")
    with conn.transaction():
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(tables.index_name("keyword")))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gin (tsv)").format(
            sql.Identifier("chunks_keyword_idx"), tables.table("chunks")))
