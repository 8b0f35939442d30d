"""The derived search views of a collection (FAISS and BM25), kept in step with SQLite.

Each view file is written atomically and stamped, in ``views.json``, with the
store generation it reflects. A view whose stamp differs from the store's
generation (a crash between the SQLite commit and the view save, a missing or
unreadable view file, or a write by another process) is brought up to date
from SQLite, which is the truth.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix.errors import MissingExtraError, RagmixError
from ragmix.store.manifest import write_json_atomic
from ragmix.store.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from ragmix.index.faiss_index import FaissIndex
    from ragmix.retrieval.bm25 import BM25Index

log = logging.getLogger(__name__)

DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
STAMPS_FILE = "views.json"
_ADD_BATCH = 50_000  # vectors read back from SQLite per FAISS add: bounds memory
# A view file that fails to load is rebuilt from SQLite rather than failing the search;
# a missing extra is not the file's fault (a rebuild needs it too), so it is re-raised first.
_LOAD_ERRORS = (RagmixError, OSError, RuntimeError, ValueError, KeyError)


class Views:
    """Loads, syncs and saves the FAISS and BM25 views of one collection directory."""

    def __init__(self, directory: Path, store: SqliteStore, index_settings: dict[str, Any],
                 bm25_settings: dict[str, Any], dim: int) -> None:
        self.directory = directory
        self.store = store
        self._index_settings = dict(index_settings)
        self._bm25_settings = dict(bm25_settings)
        self._dim = dim
        self._dense: FaissIndex | None = None
        self._dense_generation = -1  # store generation the in-memory view reflects
        self._bm25: BM25Index | None = None
        self._bm25_generation = -1

    # -- stamps ---------------------------------------------------------------
    def _stamps(self) -> dict[str, int]:
        try:
            return json.loads((self.directory / STAMPS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def _stamp(self, view: str, generation: int) -> None:
        stamps = self._stamps()
        stamps[view] = generation
        write_json_atomic(self.directory / STAMPS_FILE, stamps)

    def is_current(self, view: str) -> bool:
        return self._stamps().get(view) == self.store.generation

    # -- dense ----------------------------------------------------------------
    def dense(self, *, persist: bool) -> FaissIndex:
        """The FAISS view, synced with the store (and saved if ``persist``)."""
        with self.store.snapshot():  # one generation for the checks, the ids and the vectors
            generation = self.store.generation
            if self._dense is None:
                self._dense, self._dense_generation = self._load_dense(generation)
            if self._dense_generation == generation:
                return self._dense
            self._sync_dense(generation)
        if persist:
            self.save_dense()
        return self._dense

    def _load_dense(self, generation: int) -> tuple[FaissIndex, int]:
        from ragmix.index.faiss_index import FaissIndex

        path = self.directory / DENSE_FILE
        if path.exists():
            try:
                index = FaissIndex.load(str(path))
                current = self._stamps().get("dense") == generation
                return index, generation if current else -1
            except MissingExtraError:
                raise
            except _LOAD_ERRORS as exc:
                log.warning("rebuilding unreadable %s from the store: %s", path, exc)
        settings = dict(self._index_settings)
        return FaissIndex(settings.pop("kind"), self._dim, **settings), -1

    def _sync_dense(self, generation: int) -> None:
        want = self.store.chunk_ids()  # (n,) sorted
        have = np.sort(self._dense.ids())
        extra = np.setdiff1d(have, want, assume_unique=True)
        missing = np.setdiff1d(want, have, assume_unique=True)
        if len(extra):
            self._dense.remove(extra)
        for start in range(0, len(missing), _ADD_BATCH):
            ids = missing[start : start + _ADD_BATCH]
            self._dense.add(ids, self.store.embeddings(ids, self._dim))
        self._dense_generation = generation

    def save_dense(self) -> None:
        self._dense.save(str(self.directory / DENSE_FILE))
        self._stamp("dense", self._dense_generation)

    # -- bm25 -----------------------------------------------------------------
    def bm25(self, *, persist: bool, rebuild: bool = False) -> BM25Index:
        """The BM25 view, rebuilt from the store's texts when stale (or when ``rebuild``)."""
        with self.store.snapshot():
            generation = self.store.generation
            if self._bm25 is None and not rebuild:
                self._bm25, self._bm25_generation = self._load_bm25(generation)
            if self._bm25_generation == generation and not rebuild:
                return self._bm25
            self._bm25 = self._build_bm25()
            self._bm25_generation = generation
        if persist:
            self._bm25.save(str(self.directory / BM25_DIR))
            self._stamp("bm25", generation)
        return self._bm25

    def _load_bm25(self, generation: int) -> tuple[BM25Index | None, int]:
        from ragmix.retrieval.bm25 import BM25Index

        path = self.directory / BM25_DIR
        if self._stamps().get("bm25") != generation or not path.exists():
            return None, -1
        try:
            index = BM25Index.load(str(path))
        except MissingExtraError:
            raise
        except _LOAD_ERRORS as exc:
            log.warning("rebuilding unreadable %s from the store: %s", path, exc)
            return None, -1
        # A cheap cross-check against a stamp that outlived its files (power loss).
        if len(index) != self.store.count_chunks():
            return None, -1
        return index, generation

    def _build_bm25(self) -> BM25Index:
        from ragmix.retrieval.bm25 import BM25Index

        ids, texts = [], []
        for batch_ids, batch_texts in self.store.iter_texts():
            ids.append(batch_ids)
            texts += batch_texts
        all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return BM25Index.build(all_ids, texts, **self._bm25_settings)

    def refresh(self, *, persist: bool = True) -> None:
        """Bring both views up to date after a write."""
        self.dense(persist=persist)
        self.bm25(persist=persist)
