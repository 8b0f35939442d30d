"""One collection's tables in PostgreSQL: a schema ``ragmix_<name>`` with three tables.

- ``documents``: one row per source document (doc_id, source, title, mtime, hash).
- ``chunks``: the passages, with their document's source and title copied in (so a
  filtered vector search reads one table), offsets, the embedding as ``vector(d)``
  (float32, as given, bit for bit), and a generated ``tsvector`` when keyword search is on.
  ``storage="halfvec"`` adds ``embedding_half halfvec(d)`` (clipped to float16's range)
  and indexes that (an index half the size); searches re-score its shortlist with the
  float32 column.
- ``meta``: key/value settings, among them ``generation``, raised by one per commit.

Collection names are checked against :data:`NAME_PATTERN` and every table name is
composed with :class:`psycopg.sql.Identifier`, never pasted into SQL text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.store.pg.connection import PostgresStoreError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as psql

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")
SCHEMA_PREFIX = "ragmix_"  # keeps collections apart from the database's own schemas
SCHEMA_VERSION = "1"
MAX_DIM = 16000  # pgvector's limit for both vector and halfvec columns
HALF_MAX = 65504.0  # float16's largest finite value: halfvec copies are clipped to it
Storage = Literal["vector", "halfvec"]
STORAGES: tuple[str, ...] = ("vector", "halfvec")


def collection_name(name: str) -> str:
    """``name`` if it can name a collection's schema, else a :class:`BadInputError`.

    >>> collection_name("scifact_v2")
    'scifact_v2'
    >>> collection_name("x; DROP TABLE y")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ragmix.errors.BadInputError: collection name 'x; DROP TABLE y' is not allowed; ...
    """
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise BadInputError(
            f"collection name {name!r} is not allowed; use 1-48 lowercase letters, digits "
            "and underscores, starting with a letter (e.g. 'scifact')"
        )
    return name


@dataclass(frozen=True)
class CollectionTables:
    """Where one collection lives and how its embeddings are stored.

    >>> tables = CollectionTables("scifact", dim=384)
    >>> tables.schema, tables.vector_type
    ('ragmix_scifact', 'vector')
    """

    name: str
    dim: int
    storage: Storage = "vector"
    text_search: str | None = "english"  # the regconfig of the tsvector column; None: none

    def __post_init__(self) -> None:
        collection_name(self.name)
        if not 1 <= int(self.dim) <= MAX_DIM:
            raise BadInputError(f"dim must be in 1..{MAX_DIM}, got {self.dim}")
        if self.storage not in STORAGES:
            raise BadInputError(f"storage must be one of {STORAGES}, got {self.storage!r}")

    @property
    def schema(self) -> str:
        return SCHEMA_PREFIX + self.name

    @property
    def vector_type(self) -> str:
        """``vector`` or ``halfvec``: the SQL type the embedding index holds (no dimension).

        The column itself is always ``vector``: float32, so embeddings read back exactly.
        """
        return self.storage

    def table(self, table: Literal["documents", "chunks", "meta"]) -> psql.Identifier:
        """The schema-qualified identifier of one of the collection's tables."""
        sql = require("psycopg.sql", "postgres")
        return sql.Identifier(self.schema, table)

    def index_name(self, kind: Literal["embedding", "keyword"]) -> psql.Identifier:
        """The schema-qualified name of the embedding or keyword index."""
        sql = require("psycopg.sql", "postgres")
        return sql.Identifier(self.schema, f"chunks_{kind}_idx")


def _check_text_search(conn: psycopg.Connection, config: str) -> None:
    psycopg = require("psycopg", "postgres")
    try:
        with conn.transaction():
            conn.execute("SELECT %s::regconfig", (config,))
    except (psycopg.errors.UndefinedObject, psycopg.errors.InvalidParameterValue) as exc:
        names = [r[0] for r in conn.execute("SELECT cfgname FROM pg_ts_config ORDER BY 1")]
        raise BadInputError(
            f"text search configuration {config!r} does not exist on this server; "
            f"use one of {names}, or None for no keyword search"
        ) from exc


def _create_statements(tables: CollectionTables) -> list[psql.Composed]:
    sql = require("psycopg.sql", "postgres")
    tsv = sql.SQL("")
    if tables.text_search is not None:
        tsv = sql.SQL(
            ",\n tsv tsvector GENERATED ALWAYS AS (to_tsvector({}::regconfig, text)) STORED"
        ).format(sql.Literal(tables.text_search))
    half = sql.SQL("")
    if tables.storage == "halfvec":
        half = sql.SQL(",\n embedding_half halfvec({}) NOT NULL").format(sql.Literal(tables.dim))
    chunks = sql.SQL(
        "CREATE TABLE {chunks} (\n"
        # BY DEFAULT: a copy between stores may keep its ids; the sequence never reuses one.
        " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
        " doc_id text NOT NULL REFERENCES {documents} (doc_id) ON DELETE CASCADE,\n"
        " position integer NOT NULL, start_offset integer NOT NULL, end_offset integer NOT NULL,\n"
        " text text NOT NULL, source text NOT NULL, title text NOT NULL,\n"
        " embedding vector({dim}) NOT NULL{half}{tsv})"
    ).format(chunks=tables.table("chunks"), documents=tables.table("documents"),
             dim=sql.Literal(tables.dim), tsv=tsv, half=half)
    return [
        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(tables.schema)),
        sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text NOT NULL)").format(
            tables.table("meta")),
        sql.SQL(
            "CREATE TABLE {} (doc_id text PRIMARY KEY, source text NOT NULL, title text NOT NULL,"
            " mtime double precision NOT NULL, content_hash text NOT NULL,"
            " n_chars integer NOT NULL, indexed_at double precision NOT NULL)"
        ).format(tables.table("documents")),
        chunks,
        sql.SQL("CREATE INDEX ON {} (doc_id)").format(tables.table("chunks")),
    ]


def create_schema(conn: psycopg.Connection, tables: CollectionTables) -> CollectionTables:
    """Create the collection's schema and tables, empty, at generation 0; one transaction.

    Raises :class:`PostgresStoreError` when the collection exists already.
    Build the embedding index after the first bulk load (:func:`~.index.build_index`).
    """
    if collection_exists(conn, tables.name):
        raise PostgresStoreError(
            f"collection {tables.name!r} exists already in this database (schema "
            f"{tables.schema}); open it with open_schema, or drop it with drop_schema first"
        )
    if tables.text_search is not None:
        _check_text_search(conn, tables.text_search)
    meta = {"schema_version": SCHEMA_VERSION, "dim": str(tables.dim), "storage": tables.storage,
            "text_search": json.dumps(tables.text_search), "generation": "0"}
    with conn.transaction():
        for statement in _create_statements(tables):
            conn.execute(statement)
        set_meta(conn, tables, meta)
    return tables


def collection_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether the database holds collection ``name`` (its schema and meta table)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (f'"{SCHEMA_PREFIX}{collection_name(name)}"."meta"',)).fetchone()
    return bool(row and row[0])


def list_collections(conn: psycopg.Connection) -> list[str]:
    """The names of the collections in this database, sorted."""
    rows = conn.execute(
        "SELECT substr(n.nspname, %s) FROM pg_namespace n JOIN pg_class c ON c.relnamespace ="
        " n.oid WHERE c.relname = 'meta' AND n.nspname LIKE 'ragmix\\_%%' ORDER BY 1",
        (len(SCHEMA_PREFIX) + 1,),
    ).fetchall()
    return [r[0] for r in rows if NAME_PATTERN.fullmatch(r[0])]


def open_schema(conn: psycopg.Connection, name: str) -> CollectionTables:
    """The tables of an existing collection, as its meta table describes them."""
    if not collection_exists(conn, name):
        raise PostgresStoreError(
            f"no collection {name!r} in this database; collections here: "
            f"{list_collections(conn) or 'none'}; create it with create_schema"
        )
    bare = CollectionTables(name, dim=1)
    meta = get_meta(conn, bare)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise PostgresStoreError(
            f"collection {name!r} has schema version {meta.get('schema_version')!r}, this "
            f"ragmix reads version {SCHEMA_VERSION}; upgrade ragmix or copy the collection"
        )
    storage: Storage = "halfvec" if meta["storage"] == "halfvec" else "vector"
    return CollectionTables(name, dim=int(meta["dim"]), storage=storage,
                            text_search=json.loads(meta["text_search"]))


def drop_schema(conn: psycopg.Connection, name: str) -> None:
    """Drop a collection with all its tables and indexes; nothing happens if it is absent."""
    sql = require("psycopg.sql", "postgres")
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(SCHEMA_PREFIX + collection_name(name))))


def get_meta(conn: psycopg.Connection, tables: CollectionTables) -> dict[str, str]:
    """The collection's meta table as a dict."""
    sql = require("psycopg.sql", "postgres")
    rows = conn.execute(sql.SQL("SELECT key, value FROM {}").format(tables.table("meta")))
    return {key: value for key, value in rows.fetchall()}


def set_meta(conn: psycopg.Connection, tables: CollectionTables, values: dict[str, str]) -> None:
    """Insert or overwrite meta keys, in one transaction (a savepoint inside the caller's)."""
    sql = require("psycopg.sql", "postgres")
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key)"
                    " DO UPDATE SET value = EXCLUDED.value").format(tables.table("meta")),
            list(values.items()),
        )


def generation(conn: psycopg.Connection, tables: CollectionTables) -> int:
    """How many batches have committed to this collection (0 when new)."""
    return int(get_meta(conn, tables)["generation"])


def bump_generation(conn: psycopg.Connection, tables: CollectionTables) -> int:
    """Raise the generation by one and return the new value.

    Call it inside the batch's transaction: the row lock it takes also keeps a
    second writer waiting until this batch commits or rolls back.
    """
    sql = require("psycopg.sql", "postgres")
    with conn.transaction():
        row = conn.execute(sql.SQL(
            "UPDATE {} SET value = (value::bigint + 1)::text WHERE key = 'generation'"
            " RETURNING value").format(tables.table("meta"))).fetchone()
    if row is None:
        raise PostgresStoreError(f"collection {tables.name!r} has no generation in its meta "
                                 "table; it was not made by create_schema")
    return int(row[0])
