"""FAISS inner-product (MIPS) indexes behind the :class:`VectorIndex` protocol."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError, CollectionError
from ragmix.index.faiss_files import FORMAT, read_sidecar, threads_for, write_atomically
from ragmix.index.knobs import (
    _DEFAULTS,
    _MIN_POINTS_PER_CENTROID,
    auto_nlist,
    check_params,
    positive_int,
)

_log = logging.getLogger(__name__)

# With at most this many allowed ids, flat/hnsw score them exactly and ivf kinds probe
# every list: filtered ANN search degrades when few ids pass the filter.
EXACT_FILTER_MAX = 2048

_EMPTY_SCORE = np.finfo(np.float32).min  # what faiss writes into empty IP slots


def _faiss() -> Any:
    return require("faiss", "faiss")


def _empty(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (q, k) and ids (q, k) for a search that found nothing."""
    return np.full((q, k), _EMPTY_SCORE, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)


class FaissIndex:
    """A FAISS inner-product index over int64 chunk ids, one of ``flat|hnsw|ivf|ivfpq``.

    Ids are the caller's int64 chunk ids. ``flat`` and ``hnsw`` sit inside an
    ``IndexIDMap2``; ``ivf`` and ``ivfpq`` store the ids in their inverted lists
    themselves, because ``IndexIDMap2.remove_ids`` renumbers the ids after the
    removed ones, which is right for a flat array and wrong for inverted lists
    (FAISS 1.15: every search after a removal returned the wrong ids).
    ``ivf`` and ``ivfpq`` train on the vectors of their first :meth:`add`: give that
    first call a representative batch (the whole corpus if you can). With too few
    vectors the codebooks shrink rather than fail: ``nlist`` drops to what the batch
    supports and ``ivfpq``'s ``nbits`` drops to ``floor(log2(n))`` (see
    :attr:`effective_params`); ``ivfpq`` needs at least 2 vectors in that first add.

    >>> import tempfile
    >>> from pathlib import Path
    >>> vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)  # (3, 3)
    >>> index = FaissIndex("hnsw", 3, ef_search=64)
    >>> index.add(np.array([10, 11, 12]), vectors)  # ids (n,) int64, vectors (n, dim)
    >>> scores, ids = index.search(vectors[:1], 4)  # (q, k) each; -1 marks an empty slot
    >>> ids.tolist(), [round(s, 2) for s in scores[0, :3].tolist()]
    ([[10, 11, 12, -1]], [1.0, 0.6, 0.0])
    >>> index.search(vectors[:1], 1, allowed_ids=np.array([11, 12]))[1].tolist()
    [[11]]
    >>> tmp = tempfile.TemporaryDirectory()
    >>> index.save(Path(tmp.name, "vectors.faiss"))
    >>> FaissIndex.load(Path(tmp.name, "vectors.faiss")).params == index.params
    True
    >>> tmp.cleanup()
    """

    def __init__(self, kind: str, dim: int, **params: Any) -> None:
        if kind not in _DEFAULTS:
            raise BadInputError(
                f"unknown index kind {kind!r}; choose one of: {', '.join(_DEFAULTS)}"
            )
        self._kind = kind
        self._dim = positive_int("dim", dim)
        self._params = check_params(kind, self._dim, params)
        self._install(self._new_base(self._params.get("nlist") or 1, self._params.get("nbits")))

    # -- properties ---------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._kind

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def params(self) -> dict[str, Any]:
        """The knobs as configured (JSON-able): ``FaissIndex(kind, dim, **params)`` rebuilds it."""
        return dict(self._params)

    @property
    def effective_params(self) -> dict[str, Any]:
        """:attr:`params` with ``nlist``/``nbits`` as trained; equal to params until trained."""
        out = dict(self._params)
        if self._kind in ("ivf", "ivfpq") and self._base.is_trained:
            out["nlist"] = int(self._base.nlist)
            if self._kind == "ivfpq":
                out["nbits"] = int(self._base.pq.nbits)
        return out

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"FaissIndex({self._kind!r}, {self._dim}, n={len(self)}, params={self._params})"

    def ids(self) -> np.ndarray:
        """(n,) int64: every id in the index (flat/hnsw: insertion order; ivf: by list)."""
        faiss = _faiss()
        if self._kind in ("flat", "hnsw"):
            return faiss.vector_to_array(self._index.id_map)
        lists = self._base.invlists
        parts = [np.empty(0, dtype=np.int64)]
        for list_no in range(self._base.nlist):
            size = lists.list_size(list_no)
            if size:
                ptr = lists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                lists.release_ids(list_no, ptr)
        return np.concatenate(parts)

    # -- building -----------------------------------------------------------------
    def _new_base(self, nlist: int, nbits: int | None) -> Any:
        faiss, p, dim = _faiss(), self._params, self._dim
        if self._kind == "flat":
            return faiss.IndexFlatIP(dim)
        if self._kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, p["M"], faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = p["ef_construction"]
            return base
        quantizer = faiss.IndexFlatIP(dim)  # the IVF object keeps a reference to it
        if self._kind == "ivf":
            base = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            base = faiss.IndexIVFPQ(
                quantizer, dim, nlist, p["m"], nbits, faiss.METRIC_INNER_PRODUCT
            )
            base.pq.cp.min_points_per_centroid = 1
        # _train logs weak training (INFO) instead of faiss printing a warning to stderr.
        base.cp.min_points_per_centroid = 1
        return base

    def _install(self, base: Any, index: Any = None) -> None:
        """Adopt ``base`` and set its search knobs; wrap flat/hnsw in an IndexIDMap2 if needed."""
        if index is None:
            index = _faiss().IndexIDMap2(base) if self._kind in ("flat", "hnsw") else base
        self._index = index
        self._base = base
        # A Python flag, not index.ntotal: a SWIG attribute read costs ~1 us per search.
        self._searchable = bool(base.is_trained)  # an untrained IVF raises on search
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, storage rows)
        if self._kind == "hnsw":
            base.hnsw.efSearch = self._params["ef_search"]
        elif self._kind in ("ivf", "ivfpq"):
            base.nprobe = self._params["nprobe"]

    def _train(self, vectors: np.ndarray) -> None:
        """Size the IVF (and PQ) codebooks for the first batch, then train on it."""
        n = len(vectors)
        nlist = self._params["nlist"] or auto_nlist(n)
        if nlist > n:
            _log.info("nlist=%d > %d training vectors; using nlist=%d", nlist, n, n)
            nlist = n
        nbits = self._params.get("nbits")
        if nbits is not None and n < 2**nbits:
            if n < 2:
                raise BadInputError(
                    f"kind 'ivfpq' trains its codebooks on the first add and needs at least "
                    f"2 vectors there, got {n}; add more vectors at once or use kind 'ivf'"
                )
            nbits = n.bit_length() - 1  # floor(log2(n)): k-means needs >= 2**nbits points
            _log.info("only %d training vectors for ivfpq; using nbits=%d", n, nbits)
        centroids = max(nlist, 2**nbits if nbits else 0)
        if n < _MIN_POINTS_PER_CENTROID * centroids:
            _log.info("training %d centroids on %d vectors: codebooks will be coarse", centroids, n)
        base = self._new_base(nlist, nbits)
        base.train(vectors)
        self._install(base)

    def reserve(self, n: int) -> None:
        """Make room for ``n`` vectors in all before adding many in batches (flat and hnsw;
        other kinds ignore it): growing the stored vectors otherwise reallocates them, with
        the old and the new copy in memory at once, up to twice the index."""
        if self._kind not in ("flat", "hnsw") or n <= len(self):
            return
        base = self._base
        storage = base if self._kind == "flat" else _faiss().downcast_index(base.storage)
        held = storage.codes.size()
        storage.codes.resize(int(n) * storage.code_size)  # one allocation of the full size
        storage.codes.resize(held)  # the vectors held are kept, and so is the capacity

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (n, dim) float32 under ``ids`` (n,) int64 >= 0, new and unique."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)  # (n,)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
        if ids.ndim != 1 or vectors.ndim != 2 or vectors.shape != (len(ids), self._dim):
            raise BadInputError(
                f"add needs ids (n,) and vectors (n, {self._dim}), "
                f"got {ids.shape} and {vectors.shape}"
            )
        if len(ids) == 0:
            return
        if ids.min() < 0:
            raise BadInputError(f"ids must be >= 0 (-1 marks empty slots), got {int(ids.min())}")
        if not np.isfinite(vectors).all():
            raise BadInputError("vectors contain NaN or inf; check the encoder output")
        unique, counts = np.unique(ids, return_counts=True)
        if len(unique) != len(ids):
            raise BadInputError(
                f"ids must be unique, got {int(unique[counts > 1][0])} more than once"
            )
        clash = unique[np.isin(unique, self.ids())] if len(self) else unique[:0]
        if len(clash):
            raise BadInputError(f"id {int(clash[0])} is already in the index; remove it first")
        if not self._index.is_trained:
            self._train(vectors)
        self._index.add_with_ids(vectors, ids)
        self._lookup = None

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (m,) int64; ids not in the index are ignored.

        ``hnsw`` graphs do not support deletion in FAISS, so that kind is rebuilt
        from its remaining vectors (read back from the graph's flat storage): this
        costs about as much as adding them again. Batch removals where you can.
        """
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64).ravel()  # (m,)
        if len(ids) == 0 or len(self) == 0:
            return
        if self._kind != "hnsw":
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._lookup = None
            return
        current = self.ids()  # (n,)
        keep = ~np.isin(current, ids)  # (n,)
        if keep.all():
            return
        vectors = self._base.reconstruct_n(0, len(current))  # (n, dim), insertion order
        self._install(self._new_base(1, None))
        self._index.add_with_ids(np.ascontiguousarray(vectors[keep]), current[keep])

    def set_search_knobs(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Set the ``ef_search`` (hnsw) or ``nprobe`` (ivf, ivfpq) of later searches; no rebuild."""
        knobs = self._knobs(ef_search, nprobe)
        if "efSearch" in knobs:
            self._params["ef_search"] = self._base.hnsw.efSearch = knobs["efSearch"]
        if "nprobe" in knobs:
            self._params["nprobe"] = self._base.nprobe = knobs["nprobe"]

    # -- searching ----------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed_ids: np.ndarray | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products: queries (q, dim) -> scores (q, k) float32, ids (q, k) int64.

        Empty slots (k > len(self), or too few allowed ids) have id -1 and score
        ``np.finfo(np.float32).min``. ``allowed_ids`` keeps only those ids. Up to
        :data:`EXACT_FILTER_MAX` of them, flat/hnsw score them exactly and ivf kinds
        probe every list (unless ``nprobe`` is given); above that, a FAISS
        ``IDSelectorBatch`` filters during the search (IndexIDMap2 translates it for
        flat/hnsw), which for ANN kinds can miss hits when only a few percent of the
        index is allowed: raise ``ef_search``/``nprobe`` then. ``ef_search`` (hnsw)
        and ``nprobe`` (ivf, ivfpq) override the index's setting for this call only.
        """
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self._dim:
            raise BadInputError(
                f"queries must have shape (q, {self._dim}), got {queries.shape}; "
                "wrap a single query as queries[None, :]"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise BadInputError(f"k must be an integer > 0, got {k!r}")
        with threads_for(len(queries)):
            return self._search(queries, int(k), allowed_ids, ef_search, nprobe)

    def _search(self, queries, k, allowed_ids, ef_search, nprobe):
        if allowed_ids is None and ef_search is None and nprobe is None and self._searchable:
            return self._index.search(queries, int(k))  # the hot path: nothing but FAISS
        knobs = self._knobs(ef_search, nprobe)
        allowed = (
            None if allowed_ids is None else np.unique(np.asarray(allowed_ids, dtype=np.int64))
        )
        if not self._searchable or (allowed is not None and len(allowed) == 0):
            return _empty(len(queries), int(k))
        if allowed is not None:
            if len(allowed) <= EXACT_FILTER_MAX:
                if self._kind in ("flat", "hnsw"):
                    return self._exact_among(queries, int(k), allowed)
                knobs.setdefault("nprobe", int(self._base.nlist))  # few ids: probe every list
            knobs["sel"] = _faiss().IDSelectorBatch(allowed)
        return self._index.search(queries, int(k), params=self._params_object(knobs))

    def _knobs(self, ef_search: int | None, nprobe: int | None) -> dict[str, Any]:
        """Validated per-call overrides, named as FAISS SearchParameters fields."""
        knobs: dict[str, Any] = {}
        if ef_search is not None:
            if self._kind != "hnsw":
                raise BadInputError(f"ef_search applies to kind 'hnsw' only, not {self._kind!r}")
            knobs["efSearch"] = positive_int("ef_search", ef_search)
        if nprobe is not None:
            if self._kind not in ("ivf", "ivfpq"):
                raise BadInputError(
                    f"nprobe applies to kinds 'ivf' and 'ivfpq' only, not {self._kind!r}"
                )
            knobs["nprobe"] = positive_int("nprobe", nprobe)
        return knobs

    def _params_object(self, knobs: dict[str, Any]) -> Any:
        faiss = _faiss()
        if self._kind == "hnsw":
            return faiss.SearchParametersHNSW(**{"efSearch": self._params["ef_search"], **knobs})
        if self._kind in ("ivf", "ivfpq"):
            return faiss.SearchParametersIVF(**{"nprobe": self._params["nprobe"], **knobs})
        return faiss.SearchParameters(**knobs)

    def _exact_among(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among a few allowed ids (sorted, unique): score their stored vectors.

        HNSW filtered traversal loses recall when few ids are allowed (measured:
        recall@10 ~0.5 and empty slots with 1% of ids allowed), and a flat scan
        with a selector still visits every vector; reading back <= EXACT_FILTER_MAX
        vectors is cheaper and exact. Ties go to the smaller id.
        """
        if self._lookup is None:
            ids = self.ids()  # (n,) in storage order
            order = np.argsort(ids)  # (n,)
            self._lookup = (ids[order], order)
        sorted_ids, rows_of_sorted = self._lookup
        if not len(sorted_ids):
            return _empty(len(queries), k)
        at = np.searchsorted(sorted_ids, allowed).clip(max=len(sorted_ids) - 1)  # (m,)
        present = sorted_ids[at] == allowed  # (m,)
        subset, rows = allowed[present], rows_of_sorted[at[present]]  # (m',), (m',)
        storage = (
            self._base if self._kind == "flat" else _faiss().downcast_index(self._base.storage)
        )
        vectors = storage.reconstruct_batch(rows)  # (m', dim)
        scores = np.ascontiguousarray(queries, dtype=np.float32) @ vectors.T  # (q, m')
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (q, min(k, m'))
        out_scores, out_ids = _empty(len(queries), k)  # (q, k) each
        out_scores[:, : top.shape[1]] = np.take_along_axis(scores, top, axis=1)
        out_ids[:, : top.shape[1]] = subset[top]
        return out_scores, out_ids

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` and its settings to ``path + ".json"``, each atomically."""
        sidecar = {"format": FORMAT, "kind": self._kind, "dim": self._dim, "params": self._params}
        write_atomically(_faiss(), self._index, os.fspath(path), sidecar)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaissIndex:
        """Read an index written by :meth:`save`, with its kind and search knobs."""
        path = os.fspath(path)
        sidecar = read_sidecar(path)
        self = cls(sidecar["kind"], sidecar["dim"], **sidecar["params"])
        faiss = _faiss()
        index = faiss.read_index(path)  # already downcast to its concrete class
        expected = type(self._index)
        if not isinstance(index, expected) or index.d != self._dim:
            raise CollectionError(
                f"{path!r} holds a {type(index).__name__} of dim {index.d}, but its sidecar says "
                f"a {expected.__name__} of dim {self._dim}; rebuild the index"
            )
        if isinstance(index, faiss.IndexIDMap2):
            self._install(faiss.downcast_index(index.index), index)
        else:
            self._install(index)
        return self
