"""An inverted index over sparse term-weight vectors (SPLADE), scored by inner product.

The documents form a (n_docs, vocab) matrix kept column-major (CSC, as bm25s
keeps its scores): column w lists the documents with term w and their weights,
a posting list. A query touches only the posting lists of its own terms, so a
search costs the total length of those lists, not n_docs * vocab.

Saved as a folder of ``.npy`` arrays (memory-mappable) plus ``params.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError, CollectionError
from ragmix.retrieval._folders import replace_folder
from ragmix.types import ScoredId

if TYPE_CHECKING:
    from scipy.sparse import csc_matrix, spmatrix

_FORMAT = "ragmix.sparse/1"
_ARRAYS = ("ids", "indptr", "indices", "data")


def sparse_scores(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_docs: int,
                  terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_docs,) float64 inner products of a sparse query with every document.

    The documents are a CSC matrix (``indptr`` (vocab + 1,), ``indices`` and
    ``data`` (nnz,): column w's rows and weights are ``indices[indptr[w]:indptr[w + 1]]``
    and ``data[...]``); the query has weight ``weights[i]`` on term ``terms[i]``, each
    term once. ``score[d] = sum_i weights[i] * D[d, terms[i]]``. The reference for
    :class:`SparseIndex`'s search, which makes the same sums through scipy.

    >>> # D = [[1, 0, 2], [0, 3, 0]] (2 docs, 3 terms), as CSC:
    >>> indptr, indices, data = np.array([0, 1, 2, 3]), np.array([0, 1, 0]), np.array([1., 3., 2.])
    >>> sparse_scores(indptr, indices, data, 2, np.array([0, 2]), np.array([0.5, 1.0])).tolist()
    [2.5, 0.0]
    """
    starts = indptr[terms].astype(np.int64)  # (t,)
    lengths = indptr[terms + 1].astype(np.int64) - starts  # (t,) posting list lengths
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(n_docs, dtype=np.float64)
    # the positions of every posting of every query term, list after list
    firsts = np.cumsum(lengths) - lengths  # (t,) where each list begins in the concatenation
    postings = np.arange(total) + np.repeat(starts - firsts, lengths)  # (total,)
    products = data[postings] * np.repeat(np.asarray(weights, dtype=np.float64), lengths)
    return np.bincount(indices[postings], weights=products, minlength=n_docs)  # (n_docs,)


def top_hits(scores: np.ndarray, ids: np.ndarray, k: int,
             allowed: np.ndarray | None = None) -> list[ScoredId]:
    """The ``k`` best positive ``scores`` (n,) as ScoredIds of ``ids`` (n,), ties by id.

    ``allowed`` (n,) bool keeps only those positions.

    >>> scores, ids = np.array([0.0, 2.0, 2.0, 1.0]), np.array([7, 9, 8, 6])
    >>> [(h.chunk_id, h.score) for h in top_hits(scores, ids, 2)]
    [(8, 2.0), (9, 2.0)]
    """
    positive = scores > 0
    hits = np.flatnonzero(positive if allowed is None else positive & allowed)  # (h,)
    if len(hits) > k:
        hit_scores = scores[hits]  # (h,)
        kth = np.partition(hit_scores, len(hits) - k)[len(hits) - k]  # the k-th best score
        hits = hits[hit_scores >= kth]  # (>= k,) keeps every tie at the cut
    hits = hits[np.lexsort((ids[hits], -scores[hits]))[:k]]  # (<= k,) score desc, then id
    return [ScoredId(i, s) for i, s in zip(ids[hits].tolist(), scores[hits].tolist())]


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise BadInputError(f"k must be an integer > 0, got {k!r}")
    return int(k)


class SparseIndex:
    """Chunk ids and their sparse vectors, searched by inner product; immutable.

    ``encoder`` names the :class:`~ragmix.encoders.splade.SparseEncoder` that made
    the vectors (queries must come from the same one). :meth:`updated` returns a
    new index with vectors added and ids dropped, without re-encoding the rest.

    >>> from scipy.sparse import csr_matrix
    >>> docs = csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [0, 1, 1]], dtype=np.float32))
    >>> index = SparseIndex.build(np.array([10, 11, 12]), docs)
    >>> query = csr_matrix(np.array([[0, 1, 1]], dtype=np.float32))
    >>> [(h.chunk_id, h.score) for h in index.search(query, 5)]
    [(11, 3.0), (10, 2.0), (12, 2.0)]
    >>> [h.chunk_id for h in index.search(query, 5, allowed_ids=np.array([10, 12]))]
    [10, 12]
    >>> [h.chunk_id for h in index.updated(drop_ids=np.array([11])).search(query, 5)]
    [10, 12]
    """

    def __init__(self, ids: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                 data: np.ndarray, *, vocab_size: int, encoder: str = "") -> None:
        """Wrap CSC arrays (rows: ``ids``); use :meth:`build` or :meth:`load`."""
        if len(indptr) != vocab_size + 1 or len(indices) != len(data) or (
                len(indptr) and int(indptr[-1]) != len(data)):
            raise CollectionError(
                f"inconsistent sparse index: {len(indptr)} column pointers for vocab_size "
                f"{vocab_size}, {len(indices)} row indices, {len(data)} weights; rebuild it")
        self._ids = ids  # (n,) int64: row i holds chunk ids[i]
        self._indptr, self._indices, self._data = indptr, indices, data
        self.vocab_size = int(vocab_size)
        self.encoder = encoder
        self._columns: csc_matrix | None = None  # built at the first search, then kept

    @classmethod
    def build(cls, ids: np.ndarray, vectors: spmatrix, *, encoder: str = "") -> SparseIndex:
        """Index ``vectors`` (n, vocab) sparse under ``ids`` (n,) int64 (unique)."""
        sparse = require("scipy.sparse", "bm25")
        ids = np.asarray(ids, dtype=np.int64).ravel()  # (n,)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise BadInputError(f"build needs one vector per id, got {len(ids)} ids and "
                                f"vectors of shape {vectors.shape}")
        if len(np.unique(ids)) != len(ids):
            raise BadInputError("ids must be unique")
        matrix = sparse.csc_matrix(vectors, dtype=np.float32)  # (n, vocab)
        matrix.eliminate_zeros()
        if len(matrix.data) and matrix.data.min() < 0:
            raise BadInputError("sparse vectors must be >= 0 (SPLADE weights are)")
        matrix.sort_indices()
        return cls(ids, matrix.indptr, matrix.indices, matrix.data,
                   vocab_size=matrix.shape[1], encoder=encoder)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """(n,) int64: the chunk ids, in row order."""
        return self._ids

    @property
    def nnz(self) -> int:
        """How many (chunk, term) weights the index holds."""
        return len(self._data)

    def matrix(self) -> csc_matrix:
        """The (n, vocab) float32 CSC matrix of the vectors, row i for ``ids[i]``."""
        sparse = require("scipy.sparse", "bm25")
        return sparse.csc_matrix((self._data, self._indices, self._indptr),
                                 shape=(len(self._ids), self.vocab_size))

    def updated(self, add_ids: np.ndarray | None = None, add_vectors: spmatrix | None = None,
                drop_ids: np.ndarray | None = None) -> SparseIndex:
        """A new index without ``drop_ids`` and with ``add_vectors`` (m, vocab) under
        ``add_ids`` (m,); costs O(nnz), encodes nothing."""
        sparse = require("scipy.sparse", "bm25")
        keep = np.ones(len(self._ids), dtype=bool)  # (n,)
        if drop_ids is not None and len(drop_ids):
            keep = ~np.isin(self._ids, np.asarray(drop_ids, dtype=np.int64))
        parts, ids = [self.matrix()[keep]], [self._ids[keep]]
        if add_ids is not None and len(add_ids):
            if add_vectors is None or add_vectors.shape != (len(add_ids), self.vocab_size):
                shape = None if add_vectors is None else add_vectors.shape
                raise BadInputError(f"{len(add_ids)} ids to add need vectors of shape "
                                    f"({len(add_ids)}, {self.vocab_size}), got {shape}")
            parts.append(add_vectors)
            ids.append(np.asarray(add_ids, dtype=np.int64))
        return SparseIndex.build(np.concatenate(ids), sparse.vstack(parts, format="csc"),
                                 encoder=self.encoder)

    @classmethod
    def empty(cls, vocab_size: int, *, encoder: str = "") -> SparseIndex:
        """An index of no documents over a vocabulary of ``vocab_size`` terms."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros(vocab_size + 1, dtype=np.int64),
                   np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32),
                   vocab_size=vocab_size, encoder=encoder)

    # -- search ---------------------------------------------------------------------
    def _mask(self, allowed_ids: np.ndarray | None) -> np.ndarray | None:
        if allowed_ids is None:
            return None
        return np.isin(self._ids, np.asarray(allowed_ids, dtype=np.int64).ravel())  # (n,)

    def _query_terms(self, queries: spmatrix) -> Any:
        sparse = require("scipy.sparse", "bm25")
        if not sparse.issparse(queries) or queries.ndim != 2 or queries.shape[1] != self.vocab_size:
            raise BadInputError(
                f"queries must be a scipy sparse matrix of shape (q, {self.vocab_size}), got "
                f"{getattr(queries, 'shape', type(queries).__name__)}; encode them with "
                f"the index's encoder {self.encoder!r}")
        queries = sparse.csr_matrix(queries)  # (q, vocab)
        queries.sum_duplicates()
        return queries

    def _top(self, terms: np.ndarray, weights: np.ndarray, k: int,
             mask: np.ndarray | None) -> list[ScoredId]:
        if len(terms) == 0 or len(self._ids) == 0:
            return []
        if self._columns is None:  # once: scipy checks the arrays when it wraps them
            self._columns = self.matrix()
        # scipy's C loops: the query's columns (their posting lists) sliced out, then one
        # matrix-vector product; sparse_scores's sums in the same order, bit for bit, and
        # faster than its numpy gather (bench_rerank.py sparse-speed times it against BM25)
        scores = np.asarray(self._columns[:, terms] @ np.asarray(weights, dtype=np.float64),
                            dtype=np.float64).ravel()  # (n,)
        return top_hits(scores, self._ids, k, mask)

    def search(self, query: spmatrix, k: int, *,
               allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        """The ``k`` chunks with the largest inner product > 0 with ``query`` (1, vocab),
        best first, ties by chunk id; ``allowed_ids`` keeps exactly those chunk ids."""
        found = self.search_batch(query, k, allowed_ids=allowed_ids)
        if len(found) != 1:
            raise BadInputError(f"search takes one query vector, got {len(found)}; "
                                "use search_batch")
        return found[0]

    def search_batch(self, queries: spmatrix, k: int, *,
                     allowed_ids: np.ndarray | None = None) -> list[list[ScoredId]]:
        """:meth:`search` for each row of ``queries`` (q, vocab), sharing the mask."""
        k = _check_k(k)
        rows = self._query_terms(queries)  # (q, vocab) CSR
        mask = self._mask(allowed_ids)
        return [self._top(rows.indices[a:b], rows.data[a:b], k, mask)
                for a, b in zip(rows.indptr[:-1], rows.indptr[1:])]

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``, replacing it whole.

        Files go to a sibling temporary folder renamed into place, so a reader
        sees the old index or the new one, never a mix (a crash between the two
        renames leaves the old one at ``.<name>.old-*``).
        """
        def write(tmp: Path) -> None:
            for name, array in zip(_ARRAYS, (self._ids, self._indptr, self._indices, self._data)):
                np.save(tmp / f"{name}.npy", np.asarray(array))
            params = {"format": _FORMAT, "vocab_size": self.vocab_size, "encoder": self.encoder,
                      "n_docs": len(self._ids), "nnz": self.nnz}
            (tmp / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")

        replace_folder(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> SparseIndex:
        """Read an index written by :meth:`save`; ``mmap`` maps the arrays, not reads them."""
        path = Path(path)
        if not (path / "params.json").exists():
            raise BadInputError(f"no sparse index at {str(path)!r}; build and save one first")
        params = json.loads((path / "params.json").read_text(encoding="utf-8"))
        if params.get("format") != _FORMAT:
            raise CollectionError(f"{str(path)!r} is not a {_FORMAT} index; rebuild it")
        ids, indptr, indices, data = (np.load(path / f"{name}.npy",
                                              mmap_mode="r" if mmap else None)
                                      for name in _ARRAYS)
        if len(ids) != params["n_docs"] or len(data) != params["nnz"]:
            raise CollectionError(f"{str(path)!r} holds {len(ids)} ids and {len(data)} weights, "
                                  f"its params.json {params['n_docs']} and {params['nnz']}; "
                                  "rebuild it")
        return cls(ids, indptr, indices, data, vocab_size=params["vocab_size"],
                   encoder=params["encoder"])
