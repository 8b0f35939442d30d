"""The embedded backend: a directory with SQLite (the truth) and FAISS, BM25 and SPLADE views.

This is the :class:`~ragmix.store.backend.StoreBackend` every collection
directory uses. SQLite holds documents, chunks and embeddings and counts the
generation; the FAISS, bm25s and SPLADE files are views stamped with the
generation they reflect, brought up to date when a search finds them stale (see
:mod:`ragmix.store.views`). The SPLADE view exists once a SPLADE search has
asked for it (:meth:`EmbeddedBackend.sparse_search`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix.store.backend import EMPTY_SCORE, ChunkRow, DocumentRow
from ragmix.store.sqlite_store import SqliteBatch, SqliteStore
from ragmix.store.views import Views
from ragmix.types import ScoredId

if TYPE_CHECKING:
    from scipy.sparse import spmatrix

    from ragmix.encoders.splade import SparseEncoder
    from ragmix.index.faiss_index import FaissIndex
    from ragmix.store.manifest import Manifest

STORE_FILE = "store.sqlite"
# Index kinds whose scores come from compressed codes: their shortlist of
# REFINE_FACTOR * k is re-scored exactly with the embeddings kept in SQLite.
REFINED_KINDS = ("ivfpq",)
REFINE_FACTOR = 10


class EmbeddedBackend:
    """SQLite + FAISS + bm25s in ``directory``: the embedded :class:`StoreBackend`.

    ``index`` holds the FAISS settings (``{"kind": "flat"}`` by default, see
    :class:`~ragmix.index.FaissIndex`), ``bm25`` the :meth:`BM25Index.build` options.
    ``store`` and ``views`` are its parts, for code that needs this backend only.
    """

    def __init__(self, directory: str | Path, dim: int, *, index: dict[str, Any] | None = None,
                 bm25: dict[str, Any] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dim = int(dim)
        self.store = SqliteStore(self.directory / STORE_FILE)
        self.views = Views(self.directory, self.store, index or {"kind": "flat"}, bm25 or {},
                           self._dim)

    @classmethod
    def for_manifest(cls, directory: str | Path, manifest: Manifest) -> EmbeddedBackend:
        """The backend of the collection in ``directory``, with its manifest's settings."""
        return cls(directory, manifest.dim, index=manifest.index, bm25=manifest.bm25)

    def __repr__(self) -> str:
        return f"EmbeddedBackend({str(self.directory)!r}, dim={self._dim})"

    def close(self) -> None:
        self.store.close()

    # -- reads -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def generation(self) -> int:
        return self.store.generation

    def count_documents(self) -> int:
        return self.store.count_documents()

    def count_chunks(self) -> int:
        return self.store.count_chunks()

    def documents(self, pattern: str = "*") -> list[DocumentRow]:
        return self.store.documents(pattern)

    def get_documents(self, doc_ids: Sequence[str]) -> dict[str, DocumentRow]:
        return self.store.get_documents(doc_ids)

    def chunk_ids(self, source: str | None = None) -> np.ndarray:
        return self.store.chunk_ids() if source is None else self.store.chunk_ids_for_source(source)

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        return self.store.chunk_rows(ids)

    def embeddings(self, ids: Sequence[int]) -> np.ndarray:
        return self.store.embeddings(ids, self._dim)

    # -- search ------------------------------------------------------------------
    def vector_search(self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None,
                      ef_search: int | None = None,
                      nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`StoreBackend.vector_search`; ``ef_search`` (hnsw) and ``nprobe`` (ivf,
        ivfpq) override the index's setting for this call only."""
        index = self.views.dense(persist=False)
        knobs = {"ef_search": ef_search, "nprobe": nprobe}
        if index.kind not in REFINED_KINDS:
            return index.search(queries, k, allowed_ids=allowed_ids, **knobs)
        return self._refined_search(index, np.asarray(queries, dtype=np.float32), k, allowed_ids,
                                    knobs)

    def _refined_search(self, index: FaissIndex, queries: np.ndarray, k: int,
                        allowed_ids: np.ndarray | None,
                        knobs: dict[str, int | None]) -> tuple[np.ndarray, np.ndarray]:
        """A shortlist from the compressed codes, re-scored exactly: queries (q, dim) -> (q, k)."""
        _, shortlist = index.search(queries, k * REFINE_FACTOR, allowed_ids=allowed_ids,
                                    **knobs)  # (q, k * REFINE_FACTOR)
        out_scores = np.full((len(queries), k), EMPTY_SCORE, dtype=np.float32)  # (q, k)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)  # (q, k)
        for row, (query, found) in enumerate(zip(queries, shortlist)):
            found = found[found >= 0]  # (n,)
            if not len(found):
                continue
            exact = self.embeddings(found) @ query  # (n, dim) @ (dim,) -> (n,)
            order = np.argsort(-exact, kind="stable")[:k]  # (<= k,)
            out_scores[row, : len(order)] = exact[order]
            out_ids[row, : len(order)] = found[order]
        return out_scores, out_ids

    def keyword_search(self, query: str, k: int, *,
                       allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        return self.views.bm25(persist=False).search(query, k, allowed_ids=allowed_ids)

    def sparse_search(self, queries: spmatrix, k: int, *, encoder: SparseEncoder,
                      allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        """Up to ``k`` chunks by inner product > 0 with ``queries`` (1, vocab) from ``encoder``.

        The SPLADE view of ``encoder`` first catches up with the store, encoding
        only the chunks it lacks, and is saved when it changed: the first search
        encodes every chunk, later ones only what was added since. ``allowed_ids``
        keeps exactly those chunks, as in :meth:`keyword_search`.
        """
        view = self.views.splade.get(encoder, persist=True)
        return view.search(queries, k, allowed_ids=allowed_ids)

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[SqliteBatch]:
        with self.store.write(self._dim) as batch:
            yield batch

    def refresh(self) -> None:
        self.views.refresh(persist=True)


class SpladeSearch:
    """An embedded backend's SPLADE view for one encoder, as the index a SpladeRetriever
    searches (synced on every search, so a long-lived retriever sees later writes)."""

    def __init__(self, backend: EmbeddedBackend, encoder: SparseEncoder) -> None:
        self.backend, self.encoder = backend, encoder

    def search(self, queries: spmatrix, k: int, *,
               allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        return self.backend.sparse_search(queries, k, encoder=self.encoder,
                                          allowed_ids=allowed_ids)
