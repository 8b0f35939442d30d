"""A collection in a PostgreSQL database: manifest in its meta table, advisory write lock.

Its location is ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE?collection=NAME``;
any other query parameter (``sslmode=...``) goes to libpq, except ``keyword``
(``bm25`` or ``tsvector``), which overrides the collection's keyword search for
this handle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ragmix.errors import BadInputError, CollectionError
from ragmix.store import pg
from ragmix.store.manifest import Manifest
from ragmix.store.pg.backend import PgBackend
from ragmix.store.pg.connection import _redact
from ragmix.store.pg.schema import SCHEMA_PREFIX
from ragmix.store.pg.settings import KEYWORDS, PgSettings

MANIFEST_KEY = "manifest"
LOCK_WAIT_S = 5.0  # how long a writer waits for another's advisory lock


def split_url(location: str) -> tuple[str, str, str | None]:
    """(libpq URL, collection name, keyword override) of a collection location.

    >>> split_url("postgresql://me@db/rag?collection=notes&sslmode=require")
    ('postgresql://me@db/rag?sslmode=require', 'notes', None)
    """
    parts = urlsplit(location)
    params = parse_qsl(parts.query)
    names = [value for key, value in params if key == "collection"]
    if len(names) != 1:
        raise BadInputError(
            f"{_redact(location)!r} names no collection; add one: "
            "postgresql://USER@HOST:PORT/DATABASE?collection=NAME (or ragmix ... --store URL "
            "-c NAME)")
    keywords = [value for key, value in params if key == "keyword"]
    if keywords and keywords[-1] not in KEYWORDS:
        raise BadInputError(f"keyword= must be one of {KEYWORDS}, got {keywords[-1]!r}")
    rest = urlencode([(k, v) for k, v in params if k not in ("collection", "keyword")])
    url = urlunsplit(parts._replace(query=rest))
    return url, pg.collection_name(names[0]), keywords[-1] if keywords else None


def location_of(url: str, name: str) -> str:
    """The location of collection ``name`` in the database at ``url``.

    >>> location_of("postgresql://me@db/rag", "notes")
    'postgresql://me@db/rag?collection=notes'
    """
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode({"collection": name})]))
    return urlunsplit(parts._replace(query=query))


class PgHome:
    """The home of collection ``name`` in the database at ``url``."""

    default_index = "hnsw"
    directory = None

    def __init__(self, url: str, name: str, *, keyword: str | None = None) -> None:
        self.url, self.name, self.keyword = url, pg.collection_name(name), keyword
        self.location = _redact(location_of(url, name))

    @classmethod
    def from_url(cls, location: str) -> PgHome:
        url, name, keyword = split_url(location)
        return cls(url, name, keyword=keyword)

    def _meta(self) -> dict[str, str] | None:
        with pg.connect(self.url) as conn:
            if not pg.collection_exists(conn, self.name):
                return None
            return pg.get_meta(conn, pg.CollectionTables(self.name, dim=1))

    def exists(self) -> bool:
        meta = self._meta()
        return meta is not None and MANIFEST_KEY in meta

    def load_manifest(self) -> Manifest:
        meta = self._meta()
        if meta is None or MANIFEST_KEY not in meta:
            raise CollectionError(
                f"{self.location!r} is not a ragmix collection (no collection {self.name!r} "
                "with a manifest in that database); create one with: ragmix index PATH "
                f"--store URL -c {self.name}")
        where = f"{self.location} (meta table)"
        try:
            data = json.loads(meta[MANIFEST_KEY])
        except json.JSONDecodeError as exc:
            raise CollectionError(f"corrupt manifest in {where}: {exc}") from None
        return Manifest.from_data(data, where=self.location, path=where)

    def save_manifest(self, manifest: Manifest) -> None:
        with pg.connect(self.url) as conn:
            pg.set_meta(conn, pg.CollectionTables(self.name, dim=manifest.dim),
                        {MANIFEST_KEY: json.dumps(asdict(manifest), sort_keys=True)})

    def index_settings(self, kind: str, params: dict[str, Any], dim: int) -> dict[str, Any]:
        if kind == "ivfpq":
            raise BadInputError("pgvector has no ivfpq index; use --index hnsw (with "
                                "--halfvec for a smaller index), ivf or flat")
        return PgSettings.from_index({"kind": kind, **params}).as_index()

    def _settings(self, manifest: Manifest) -> PgSettings:
        settings = PgSettings.from_index(manifest.index)
        return replace(settings, keyword=self.keyword) if self.keyword else settings

    def create(self, manifest: Manifest) -> PgBackend:
        return PgBackend.create(self.url, self.name, manifest.dim,
                                settings=self._settings(manifest), bm25=manifest.bm25,
                                meta={MANIFEST_KEY: json.dumps(asdict(manifest), sort_keys=True)})

    def open_backend(self, manifest: Manifest) -> PgBackend:
        return PgBackend.open(self.url, self.name, settings=self._settings(manifest),
                              bm25=manifest.bm25)

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """A session advisory lock on its own connection: a killed writer's ends with it.

        The server ends a killed writer's session when it next reads from it, which
        can be after the statement it was running, so this waits up to LOCK_WAIT_S.
        """
        with pg.connect(self.url) as conn:
            key = f"ragmix:{SCHEMA_PREFIX}{self.name}"
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                                   (key,)).fetchone()
                if (row and row[0]) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not (row and row[0]):
                raise CollectionError(
                    f"collection {self.location!r} is being written by another process; "
                    "wait for it to finish")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def disk_bytes(self, backend: Any) -> int:
        """Tables, indexes and TOAST of the collection's schema, as PostgreSQL counts them."""
        with pg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'",
                (SCHEMA_PREFIX + self.name,)).fetchone()
        return int(row[0]) if row else 0
