"""BM25 over a PostgreSQL collection: a bm25s view stamped with the database's generation.

PostgreSQL's own ranking (``ts_rank_cd``) has no IDF, so the default keyword search
of a PostgreSQL collection is the embedded backend's BM25 (bm25s, Lucene scoring)
built from the chunk texts in the database. The view is derived, never the truth:
it remembers the generation it was built at and is rebuilt when a search finds the
database's generation has moved. ``refresh`` also saves it under
``<cache>/pg-bm25/<collection uid>/`` (``$RAGMIX_CACHE``, else ``~/.cache/ragmix``)
so the next process loads it instead of rebuilding; the uid is a random id the
collection got when it was created, so a dropped and re-created collection never
reads an old view.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import MissingExtraError, RagmixError
from ragmix.store.manifest import write_json_atomic
from ragmix.store.pg.schema import CollectionTables

if TYPE_CHECKING:
    import psycopg

    from ragmix.retrieval.bm25 import BM25Index

log = logging.getLogger(__name__)
STAMP_FILE = "stamp.json"
_TEXT_ROWS = 20_000  # rows fetched per round trip while reading the texts
_LOAD_ERRORS = (RagmixError, OSError, RuntimeError, ValueError, KeyError)


def default_cache_dir() -> Path:
    """``$RAGMIX_CACHE``, else ``~/.cache/ragmix`` (where the SmolLM2 models live too)."""
    from ragmix.generation.smollm import default_cache_dir as models_cache

    return models_cache()


def read_bm25(conn: psycopg.Connection, tables: CollectionTables, generation_of: Any,
              settings: dict[str, Any]) -> tuple[int, BM25Index]:
    """The generation and a BM25 index of every (chunk id, text), read in one snapshot
    (REPEATABLE READ) and indexed a batch of rows at a time: memory never holds all the text."""
    from ragmix.retrieval.bm25 import BM25Index

    sql = require("psycopg.sql", "postgres")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        generation = generation_of()
        with conn.cursor(name="ragmix_bm25_texts") as cur:
            cur.itersize = _TEXT_ROWS
            cur.execute(sql.SQL("SELECT id, text FROM {} ORDER BY id").format(
                tables.table("chunks")))

            def batches() -> Iterator[tuple[np.ndarray, list[str]]]:
                while rows := cur.fetchmany(_TEXT_ROWS):
                    yield np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

            index = BM25Index.build_batches(batches(), **settings)
    return generation, index


class KeywordView:
    """The BM25 view of one collection: in memory, and in ``folder`` once saved."""

    def __init__(self, folder: Path | None, bm25_settings: dict[str, Any]) -> None:
        self.folder = folder
        self._settings = dict(bm25_settings)
        self._index: BM25Index | None = None
        self._generation = -1  # the database generation the view reflects

    def get(self, generation: int, n_chunks: Any, build: Any) -> BM25Index:
        """The view for ``generation``: in memory, else from ``folder``, else ``build()``.

        ``build(settings)`` returns (generation, index) read in one snapshot
        (:func:`read_bm25`); ``n_chunks`` cross-checks a saved view against the database.
        """
        if self._index is not None and self._generation == generation:
            return self._index
        if self._index is None:
            loaded = self._load(generation)
            if loaded is not None and len(loaded) == n_chunks():
                self._index, self._generation = loaded, generation
                return loaded
        self._generation, self._index = build(self._settings)
        return self._index

    def _load(self, generation: int) -> BM25Index | None:
        if self.folder is None:
            return None
        try:
            stamp = json.loads((self.folder / STAMP_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if stamp.get("generation") != generation:
            return None
        from ragmix.retrieval.bm25 import BM25Index

        try:
            return BM25Index.load(str(self.folder / "bm25"))
        except MissingExtraError:
            raise
        except _LOAD_ERRORS as exc:
            log.warning("rebuilding unreadable %s: %s", self.folder, exc)
            return None

    def save(self) -> None:
        """Write the view and then its stamp (a crash between them leaves an old stamp)."""
        if self.folder is None or self._index is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index.save(str(self.folder / "bm25"))
        write_json_atomic(self.folder / STAMP_FILE, {"generation": self._generation})
