"""The derived search views of a collection (FAISS, BM25, SPLADE), kept in step with SQLite.

Each view file is written atomically and stamped, in ``views.json``, with the
store generation it reflects. A view whose stamp differs from the store's
generation (a crash between the SQLite commit and the view save, a missing or
unreadable view file, or a write by another process) is brought up to date
from SQLite, which is the truth.

The SPLADE view (:class:`SparseView`) is built only when a search first asks
for it, since encoding every chunk costs about as much as embedding it, and
keeps its own stamp in ``splade/stamp.json``: the search that brings it up to
date saves it, and a reader never writes ``views.json``, which the writer owns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragmix._extras import require
from ragmix.errors import MissingExtraError, RagmixError
from ragmix.store.manifest import write_json_atomic
from ragmix.store.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from ragmix.encoders.splade import SparseEncoder
    from ragmix.index.faiss_index import FaissIndex
    from ragmix.retrieval.bm25 import BM25Index
    from ragmix.retrieval.sparse import SparseIndex
    from ragmix.store.backend import ChunkRow

log = logging.getLogger(__name__)

DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
STAMPS_FILE = "views.json"
SPLADE_DIR = "splade"
_ENCODE_BATCH = 1024  # chunk texts read and SPLADE-encoded at a time: bounds memory
_ADD_BATCH = 50_000  # vectors read back from SQLite per FAISS add: bounds memory
# A view file that fails to load is rebuilt from SQLite rather than failing the search;
# a missing extra is not the file's fault (a rebuild needs it too), so it is re-raised first.
_LOAD_ERRORS = (RagmixError, OSError, RuntimeError, ValueError, KeyError)


class Views:
    """Loads, syncs and saves the FAISS and BM25 views of one collection directory, and holds
    its SPLADE view (``splade``, built on first use)."""

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
        self.splade = SparseView(directory / SPLADE_DIR, store)

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
                # The manifest's search knobs win over the saved file's: ragmix tune
                # changes them in the manifest only, and they need no rebuild.
                index.set_search_knobs(**_search_knobs(index.kind, self._index_settings))
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
        self._dense.reserve(len(have) - len(extra) + len(missing))
        for start in range(0, len(missing), _ADD_BATCH):
            ids = missing[start : start + _ADD_BATCH]
            self._dense.add(ids, self.store.embeddings(ids, self._dim))
        self._dense_generation = generation

    def set_search_knobs(self, **knobs: int) -> None:
        """Set ``ef_search`` / ``nprobe`` for later dense searches (the open view included)."""
        self._index_settings.update(knobs)
        if self._dense is not None:
            self._dense.set_search_knobs(**_search_knobs(self._dense.kind, knobs))

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

        # batch by batch: memory holds the corpus's term ids, never all its text
        return BM25Index.build_batches(self.store.iter_texts(), **self._bm25_settings)

    def refresh(self, *, persist: bool = True) -> None:
        """Bring the FAISS and BM25 views up to date after a write.

        Not the SPLADE view: the next SPLADE search encodes the chunks it lacks. A saved
        FAISS view leaves memory before the BM25 view is built (the next dense search
        reads it back), so the two builds' peaks do not add up.
        """
        self.dense(persist=persist)
        if persist:
            self._dense, self._dense_generation = None, -1
        self.bm25(persist=persist)


def _search_knobs(kind: str, settings: dict[str, Any]) -> dict[str, int]:
    """The search-time knobs in ``settings`` that an index of ``kind`` takes."""
    names = {"hnsw": ("ef_search",), "ivf": ("nprobe",), "ivfpq": ("nprobe",)}.get(kind, ())
    return {name: settings[name] for name in names if settings.get(name) is not None}


class ChunkTexts(Protocol):
    """What a SPLADE view reads from a store; every StoreBackend (and SqliteStore) has it."""

    @property
    def generation(self) -> int: ...

    def chunk_ids(self) -> np.ndarray: ...

    def count_chunks(self) -> int: ...

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]: ...


def sync_sparse(index: SparseIndex, chunks: ChunkTexts, encoder: SparseEncoder, *,
                progress: Callable[[int], None] | None = None) -> SparseIndex:
    """``index`` with the chunks ``chunks`` now holds: deleted ones dropped, new ones encoded.

    ``progress(n)`` is called as each batch of n chunks is encoded.

    Only the chunks missing from ``index`` are encoded. That is right because a
    store never reuses a chunk id (a changed document gets new ones), so a chunk
    already in the index has the text it was encoded from. A chunk deleted
    while this runs is left out; one added is taken in, or found by the next sync.
    """
    from ragmix.retrieval.sparse import SparseIndex

    if index.encoder != encoder.name or index.vocab_size != encoder.vocab_size:
        index = SparseIndex.empty(encoder.vocab_size, encoder=encoder.name)
    want = chunks.chunk_ids()  # (n,) ascending
    drop = np.setdiff1d(index.ids, want)  # (d,) deleted since the index was built
    missing = np.setdiff1d(want, index.ids)  # (m,) added since
    add_ids, add_vectors = [], []
    for start in range(0, len(missing), _ENCODE_BATCH):
        rows = chunks.chunk_rows(missing[start : start + _ENCODE_BATCH].tolist())
        ids = [int(i) for i in missing[start : start + _ENCODE_BATCH] if int(i) in rows]
        add_ids += ids
        add_vectors.append(encoder.encode_documents([rows[i].text for i in ids],
                                                    progress=progress))
    if not add_ids and not len(drop):
        return index
    sparse = require("scipy.sparse", "bm25")
    vectors = sparse.vstack(add_vectors, format="csr") if add_vectors else None
    return index.updated(np.asarray(add_ids, dtype=np.int64), vectors, drop)


class SparseView:
    """The SPLADE view of a store: a SparseIndex in memory, and in ``folder`` once saved.

    ``folder`` holds ``index/`` (:meth:`SparseIndex.save`) and ``stamp.json``, the
    store generation the index reflects; a saved index whose stamp is behind is
    still loaded and brought up to date by :func:`sync_sparse`, not rebuilt.
    ``folder=None`` keeps the view in memory only. It reads the store only through
    :class:`ChunkTexts`, so any backend can keep one (PostgreSQL's would live in its
    cache folder, as its BM25 view does).
    """

    def __init__(self, folder: Path | None, chunks: ChunkTexts) -> None:
        self.folder = folder
        self.chunks = chunks
        self._index: SparseIndex | None = None
        self._generation = -1  # the store generation the in-memory index reflects

    def get(self, encoder: SparseEncoder, *, persist: bool,
            progress: Callable[[int], None] | None = None) -> SparseIndex:
        """The view for ``encoder``, synced with the store (and saved if ``persist``).

        ``progress(n)`` is called as each batch of n chunks is encoded: a CLI can
        build the view ahead of the first search with a progress bar.
        """
        # Read before the chunks: a write during the sync leaves the stamp behind the
        # store, so the next search syncs again instead of trusting a stale view.
        generation = self.chunks.generation
        if self._index is None or self._index.encoder != encoder.name:
            self._index, self._generation = self._load(encoder, generation)
        if self._generation == generation:
            return self._index
        self._index = sync_sparse(self._index, self.chunks, encoder, progress=progress)
        self._generation = generation
        if persist:
            self.save()
        return self._index

    def _load(self, encoder: SparseEncoder, generation: int) -> tuple[SparseIndex, int]:
        from ragmix.retrieval.sparse import SparseIndex

        empty = SparseIndex.empty(encoder.vocab_size, encoder=encoder.name), -1
        if self.folder is None or not (self.folder / "index").exists():
            return empty
        try:
            index = SparseIndex.load(self.folder / "index", mmap=True)
        except MissingExtraError:
            raise
        except _LOAD_ERRORS as exc:
            log.warning("rebuilding unreadable %s from the store: %s", self.folder, exc)
            return empty
        if index.encoder != encoder.name:
            return empty  # another model's vectors: nothing to reuse
        try:
            stamp = json.loads((self.folder / "stamp.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stamp = {}  # a crash before the stamp: the index is kept, and synced
        # A cheap cross-check against a stamp that outlived its files (power loss).
        current = (stamp.get("generation") == generation
                   and len(index) == self.chunks.count_chunks())
        return index, generation if current else -1

    def save(self) -> None:
        """Write the index, then its stamp (a crash between them leaves an old stamp, so the
        next load syncs). A folder that cannot be written keeps the view in memory only."""
        if self.folder is None or self._index is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._index.save(self.folder / "index")
            write_json_atomic(self.folder / "stamp.json", {"generation": self._generation})
        except OSError as exc:  # read-only, full, or a concurrent save won the rename
            log.warning("could not save the SPLADE view in %s: %s", self.folder, exc)
