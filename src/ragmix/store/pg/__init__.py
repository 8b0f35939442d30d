"""PostgreSQL + pgvector, the SQL layer under the PostgreSQL store backend.

Plain functions over a psycopg connection and a :class:`CollectionTables`; no state
of their own. Needs ``pip install 'ragmix[postgres]'`` (psycopg 3, the pgvector
adapter); psycopg is imported only when a function runs, so importing this package
costs nothing. Any PostgreSQL >= 13 with pgvector >= 0.8 works.

A collection's life (run against a server; ``tests/test_pg_sql.py`` does)::

    conn = connect("postgresql://user@localhost/rag")
    tables = create_schema(conn, CollectionTables("scifact", dim=384))
    with conn.transaction():  # one batch: all or nothing, generation + 1
        ids = load_documents(conn, tables, [(doc, chunks, vectors)])
        bump_generation(conn, tables)
    build_index(conn, tables, HnswOptions(m=16, ef_construction=64))
    scores, ids = vector_search(conn, tables, queries, 10, source="papers/*", ef_search=80)
"""

from ragmix.store.pg.connection import (
    PostgresStoreError,
    ServerInfo,
    check_server,
    connect,
    local_settings,
    server_info,
)
from ragmix.store.pg.index import (
    HnswOptions,
    IndexOptions,
    IvfflatOptions,
    build_index,
    build_keyword_index,
    index_options,
)
from ragmix.store.pg.load import delete_documents, load_documents, reserve_chunk_ids
from ragmix.store.pg.schema import (
    CollectionTables,
    bump_generation,
    collection_exists,
    collection_name,
    create_schema,
    drop_schema,
    generation,
    get_meta,
    list_collections,
    open_schema,
    set_meta,
)
from ragmix.store.pg.search import (
    EMPTY_SCORE,
    chunk_ids,
    glob_to_regex,
    keyword_search,
    vector_search,
)

__all__ = [
    "EMPTY_SCORE", "CollectionTables", "HnswOptions", "IndexOptions", "IvfflatOptions",
    "PostgresStoreError", "ServerInfo", "build_index", "build_keyword_index", "bump_generation",
    "check_server", "chunk_ids", "collection_exists", "collection_name", "connect",
    "create_schema", "delete_documents", "drop_schema", "generation", "get_meta",
    "glob_to_regex", "index_options", "keyword_search", "list_collections", "load_documents",
    "local_settings", "open_schema", "reserve_chunk_ids", "server_info", "set_meta",
    "vector_search",
]
