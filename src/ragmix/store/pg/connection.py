"""Connections to PostgreSQL with pgvector, and per-transaction settings.

Needs ``pip install 'ragmix[postgres]'``; psycopg is imported only when a function runs.
Any PostgreSQL >= 13 with pgvector >= 0.8 works (0.8 brought iterative index scans,
which filtered searches rely on).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.errors import CollectionError

if TYPE_CHECKING:
    import psycopg

MIN_SERVER_VERSION = 130000  # server_version_num of PostgreSQL 13
MIN_PGVECTOR = (0, 8, 0)  # hnsw.iterative_scan


class PostgresStoreError(CollectionError):
    """The PostgreSQL server, its pgvector or a collection's tables cannot be used as asked."""


@dataclass(frozen=True)
class ServerInfo:
    """What the server runs: ``server_version_num`` (180006 is 18.6) and pgvector's version."""

    server_version_num: int
    pgvector: tuple[int, ...]


def redact_url(url: str) -> str:
    """``url`` without its password, for error messages.

    >>> redact_url("postgresql://me:secret@db:5432/rag")
    'postgresql://me:***@db:5432/rag'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


_redact = redact_url


def _version_tuple(text: str) -> tuple[int, ...]:
    """The numbers of a version string.

    >>> _version_tuple("0.8.6")
    (0, 8, 6)
    """
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def connect(url: str, *, create_extension: bool = True) -> psycopg.Connection:
    """An autocommit connection to ``url`` with pgvector's types registered.

    Autocommit matters: every function of this package opens its own
    ``conn.transaction()``, which is then a real transaction, so ``SET LOCAL``
    ends with it. ``create_extension`` runs ``CREATE EXTENSION IF NOT EXISTS vector``.
    Raises :class:`PostgresStoreError` naming the server and the fix when it cannot
    be reached or is too old.
    """
    psycopg = require("psycopg", "postgres")
    pgvector_psycopg = require("pgvector.psycopg", "postgres")
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresStoreError(
            f"cannot connect to {_redact(url)}: {str(exc).strip()}; check that the server "
            "runs and the URL (postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE) is right"
        ) from exc
    try:
        info = server_info(conn, create_extension=create_extension)
        check_server(info, url)
        pgvector_psycopg.register_vector(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def server_info(conn: psycopg.Connection, *, create_extension: bool = True) -> ServerInfo:
    """The server's version and its installed pgvector version (creating it if asked)."""
    psycopg = require("psycopg", "postgres")
    if create_extension:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PostgresStoreError(
                "this user may not create the pgvector extension; have a database owner "
                "run: CREATE EXTENSION vector"
            ) from exc
        except psycopg.errors.FeatureNotSupported as exc:  # the .so or .control is missing
            raise PostgresStoreError(
                f"the server has no pgvector extension ({exc}); install pgvector >= 0.8 on it"
            ) from exc
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, "
        "(SELECT extversion FROM pg_extension WHERE extname = 'vector')"
    ).fetchone()
    assert row is not None  # a SELECT without FROM always returns one row
    return ServerInfo(server_version_num=row[0], pgvector=_version_tuple(row[1] or ""))


def check_server(info: ServerInfo, url: str = "the server") -> None:
    """Raise :class:`PostgresStoreError` unless PostgreSQL >= 13 with pgvector >= 0.8.

    >>> check_server(ServerInfo(180006, (0, 8, 6)))
    >>> check_server(ServerInfo(180006, (0, 6, 2)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ragmix.store.pg.connection.PostgresStoreError: the server has pgvector 0.6.2, ragmix needs ...
    """
    where = _redact(url)
    if info.server_version_num < MIN_SERVER_VERSION:
        raise PostgresStoreError(
            f"{where} runs PostgreSQL {info.server_version_num // 10000}; "
            "ragmix needs PostgreSQL >= 13 with pgvector >= 0.8"
        )
    if not info.pgvector:
        raise PostgresStoreError(
            f"{where} has no pgvector extension in this database; run: CREATE EXTENSION vector"
        )
    if info.pgvector < MIN_PGVECTOR:
        shown = ".".join(map(str, info.pgvector))
        raise PostgresStoreError(
            f"the server has pgvector {shown}, ragmix needs pgvector >= 0.8 (iterative "
            "index scans for filtered search); upgrade it: ALTER EXTENSION vector UPDATE"
        )


@contextmanager
def local_settings(conn: psycopg.Connection, settings: Mapping[str, str]) -> Iterator[None]:
    """A transaction in which ``settings`` hold (``SET LOCAL``), and only there.

    On an autocommit connection this is its own transaction. Inside a caller's
    transaction it is a savepoint, and ``SET LOCAL`` would outlive it until the
    caller commits, so the previous values are put back on the way out.
    """
    psycopg = require("psycopg", "postgres")
    sql = require("psycopg.sql", "postgres")
    nested = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        previous: dict[str, str | None] = {}
        for name, value in settings.items():
            if nested:
                row = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
                previous[name] = None if row is None else row[0]
            conn.execute("SELECT set_config(%s, %s, true)", (name, str(value)))
        yield
        for name, value in previous.items():
            if value is None:  # never set in this session: back to its default
                conn.execute(sql.SQL("RESET {}").format(sql.Identifier(name)))
            else:
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))
