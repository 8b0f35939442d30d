"""The storage seam of a collection: what a backend must do for ``Collection`` to use it.

A :class:`StoreBackend` keeps documents, their chunks and the chunks' embeddings,
and searches them by vector and by keyword. Writes go through atomic batches:
a batch commits whole or not at all, and each commit increases
:attr:`~PassageIndex.generation` by one. The embedded backend
(:class:`ragmix.store.embedded.EmbeddedBackend`: SQLite + FAISS + bm25s in a
directory) is one implementation; ``tests/backend_contract.py`` is the contract
every implementation must pass.

Training reads a collection through the narrower :class:`PassageIndex`: texts,
embeddings and dense search over a passage index it never writes.

Example (any backend; here the embedded one on 2-d vectors):

>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> from ragmix.store.embedded import EmbeddedBackend
>>> from ragmix.types import Chunk, Document
>>> tmp = tempfile.TemporaryDirectory()
>>> backend = EmbeddedBackend(Path(tmp.name), dim=2)
>>> doc = Document("a", "north south", source="a.txt", title="A")
>>> with backend.batch() as batch:  # one commit: generation 0 -> 1
...     batch.put(doc, [Chunk("a", 0, 0, 5, "north"), Chunk("a", 1, 6, 11, "south")],
...               np.array([[1, 0], [0, 1]], dtype=np.float32))
>>> backend.generation, backend.chunk_ids().tolist()
(1, [1, 2])
>>> scores, ids = backend.vector_search(np.array([[0.9, 0.1]], dtype=np.float32), 3)
>>> ids.tolist()  # best first; -1 marks an empty slot
[[1, 2, -1]]
>>> [hit.chunk_id for hit in backend.keyword_search("south", 5)]
[2]
>>> backend.close()
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ragmix.errors import BadInputError, CollectionError
from ragmix.types import Chunk, Document, ScoredId

# The score of an empty slot in a vector search result (what FAISS writes there).
EMPTY_SCORE = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk joined with its document's title and source."""

    chunk_id: int
    doc_id: str
    text: str
    start: int
    end: int
    title: str
    source: str


@dataclass(frozen=True)
class DocumentRow:
    """A stored document's metadata (its text lives in its chunks)."""

    doc_id: str
    source: str
    title: str
    mtime: float
    content_hash: str
    n_chunks: int


class ChunkNotFoundError(CollectionError, KeyError):
    """Embeddings were asked for chunk ids the store does not hold (deleted, or never issued)."""

    def __init__(self, missing: Sequence[int]) -> None:
        shown = ", ".join(str(int(i)) for i in list(missing)[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        super().__init__(f"chunk ids {shown}{more} are not in the store (deleted since they "
                         "were found?); search again for the current chunks")
        self.missing = [int(i) for i in missing]

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@runtime_checkable
class PassageIndex(Protocol):
    """A frozen passage index as training reads it: texts, embeddings and dense search.

    Training never writes through it; every :class:`StoreBackend` is one.
    """

    @property
    def dim(self) -> int:
        """The dimension of every stored embedding."""
        ...

    @property
    def generation(self) -> int:
        """How many batches have committed: 0 when new, +1 per commit, never lower."""
        ...

    def count_chunks(self) -> int:
        """How many chunks (passages) are stored."""
        ...

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks with these ids, keyed by id; ids not stored are absent, not errors."""
        ...

    def embeddings(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), dim) float32: row i is the embedding of ``ids[i]``, as stored, bit for bit.

        Ids may repeat. Raises :class:`ChunkNotFoundError` naming any id not stored.
        """
        ...

    def vector_search(self, queries: np.ndarray, k: int, *,
                      allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Maximum inner product search: queries (q, dim) -> scores (q, k), ids (q, k).

        Scores are float32 inner products q . d(z) with the stored embeddings (an
        approximate index may miss a neighbour, never misreport a score); each row is
        best first. Slots beyond the hits have id -1 and score :data:`EMPTY_SCORE`.
        ``allowed_ids`` (int64) keeps exactly those chunks; ids in it that are not
        stored are ignored. Raises :class:`~ragmix.errors.BadInputError` for k <= 0 or
        queries not of shape (q, dim). Sees every committed batch.
        """
        ...


class StoreBatch(Protocol):
    """The writes of one atomic batch; see :meth:`StoreBackend.batch`."""

    def put(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert ``document`` with its chunks and their (len(chunks), dim) float32 vectors.

        A document already stored under ``document.doc_id`` is replaced whole: its old
        chunks are deleted. New chunks get ids above every id the store has issued,
        ascending in the order of ``chunks``. Raises
        :class:`~ragmix.errors.BadInputError` for vectors of another shape, or a chunk of
        another document.
        """
        ...

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete these documents and their chunks; ids not stored are ignored."""
        ...


@runtime_checkable
class StoreBackend(PassageIndex, Protocol):
    """Documents, chunks, embeddings, vector and keyword search, and atomic batches.

    Globs (``documents``, ``chunk_ids``) follow SQLite's GLOB: case-sensitive,
    ``*`` is any string (``/`` included), ``?`` one character, ``[abc]`` a set; a
    document matches when its doc_id or its source does.
    """

    # -- documents ---------------------------------------------------------------
    def documents(self, pattern: str = "*") -> list[DocumentRow]:
        """The documents whose doc_id or source matches the glob ``pattern``, by doc_id."""
        ...

    def get_documents(self, doc_ids: Sequence[str]) -> dict[str, DocumentRow]:
        """The documents with these ids, keyed by id; ids not stored are absent."""
        ...

    def count_documents(self) -> int:
        ...

    # -- chunks ------------------------------------------------------------------
    def chunk_ids(self, source: str | None = None) -> np.ndarray:
        """(n,) int64, ascending: every chunk id, or with ``source`` (a glob) only the
        chunks of the documents it matches (the filter a search takes as ``allowed_ids``)."""
        ...

    # -- search ------------------------------------------------------------------
    def keyword_search(self, query: str, k: int, *,
                       allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        """Up to ``k`` chunks sharing a term with ``query``, best first, ties by chunk id.

        Scores are > 0 and higher is better (BM25 for the embedded backend; a
        backend documents its own scoring). A query with no indexed term finds
        nothing. ``allowed_ids`` keeps exactly those chunks. Sees every committed batch.
        """
        ...

    # -- writes ------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[StoreBatch]:
        """An atomic batch: ``with backend.batch() as b: b.put(...); b.delete(...)``.

        Leaving the block commits every write at once and increases
        :attr:`generation` by exactly one; an exception inside it (re-raised) leaves
        the store and its generation as they were. Until the commit, other handles
        on the same store see none of it. One batch at a time per store.
        """
        ...

    def refresh(self) -> None:
        """Bring derived search structures up to date with the last commit and persist them.

        Searches are right without it (a backend catches up when it searches); a
        writer calls it once after a run of batches so readers need not.
        """
        ...

    def close(self) -> None:
        ...


def checked_vectors(document: Document, chunks: Sequence[Chunk], vectors: np.ndarray,
                    dim: int) -> np.ndarray:
    """``vectors`` as C-contiguous float32 (len(chunks), dim), or a BadInputError saying why not.

    For :meth:`StoreBatch.put` implementations.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(chunks), dim):
        raise BadInputError(
            f"document {document.doc_id!r} has {len(chunks)} chunks, so its vectors must have "
            f"shape ({len(chunks)}, {dim}), got {vectors.shape}; embed each chunk once")
    strays = sorted({c.doc_id for c in chunks} - {document.doc_id})
    if strays:
        raise BadInputError(f"document {document.doc_id!r} was given chunks of {strays}; "
                            "put each document with its own chunks")
    return vectors
