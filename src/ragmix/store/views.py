"""The derived search views of a collection (FAISS and BM25), kept in step with SQLite.

Each view file is written atomically and stamped, in ``views.json``, with the
store generation it reflects. A view whose stamp differs from the store's
generation (a crash between the SQLite commit and the view save, or a view
file that is missing) is brought up to date from SQLite, which is the truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ragmix.store.manifest import write_json_atomic
from ragmix.store.sqlite_store import SqliteStore

DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
STAMPS_FILE = "views.json"
_ADD_BATCH = 50_000  # vectors read back from SQLite per FAISS add: bounds memory


class Views:
    """Loads, syncs and saves the FAISS and BM25 views of one collection directory."""

    def __init__(self, directory: Path, store: SqliteStore, index_settings: dict[str, Any],
                 bm25_settings: dict[str, Any], dim: int) -> None:
        self.directory = directory
        self.store = store
        self._index_settings = dict(index_settings)
        self._bm25_settings = dict(bm25_settings)
        self._dim = dim
        self._dense = None
        self._bm25 = None

    # -- stamps ---------------------------------------------------------------
    def _stamps(self) -> dict[str, int]:
        path = self.directory / STAMPS_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def _stamp(self, view: str, generation: int) -> None:
        stamps = self._stamps()
        stamps[view] = generation
        write_json_atomic(self.directory / STAMPS_FILE, stamps)

    def is_current(self, view: str) -> bool:
        return self._stamps().get(view) == self.store.generation

    # -- dense ----------------------------------------------------------------
    def dense(self, *, persist: bool):
        """The FAISS view, synced with the store (and saved if ``persist``)."""
        from ragmix.index.faiss_index import FaissIndex

        if self._dense is None:
            path = self.directory / DENSE_FILE
            self._dense_generation = -1
            if path.exists():
                self._dense = FaissIndex.load(str(path))
                if self.is_current("dense"):
                    self._dense_generation = self.store.generation
            else:
                settings = dict(self._index_settings)
                self._dense = FaissIndex(settings.pop("kind"), self._dim, **settings)
        if self._dense_generation != self.store.generation:
            self._sync_dense()
            if persist:
                self.save_dense()
        return self._dense

    def _sync_dense(self) -> None:
        generation = self.store.generation
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
    def bm25(self, *, persist: bool):
        """The BM25 view, rebuilt from the store's texts when stale."""
        from ragmix.retrieval.bm25 import BM25Index

        path = self.directory / BM25_DIR
        if self._bm25 is None and self.is_current("bm25") and path.exists():
            self._bm25 = BM25Index.load(str(path))
            self._bm25_generation = self.store.generation
        if self._bm25 is None or self._bm25_generation != self.store.generation:
            generation = self.store.generation
            ids, texts = [], []
            for batch_ids, batch_texts in self.store.iter_texts():
                ids.append(batch_ids)
                texts += batch_texts
            all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
            self._bm25 = BM25Index.build(all_ids, texts, **self._bm25_settings)
            self._bm25_generation = generation
            if persist:
                self._bm25.save(str(path))
                self._stamp("bm25", generation)
        return self._bm25

    def refresh(self, *, persist: bool = True) -> None:
        """Bring both views up to date after a write."""
        self.dense(persist=persist)
        self.bm25(persist=persist)
