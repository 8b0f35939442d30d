"""Sharded dense search on Ray: one actor per FAISS shard, results merged into the exact top-k.

Each actor reads its shard from a path, memory-mapped (FAISS indexes do not
pickle, so they never travel through Ray's object store); only queries go out and
(scores, ids) come back. :class:`ShardedSearcher` has the ``search`` of a
:class:`~ragmix.index.VectorIndex`, so it goes wherever ragmix's dense search does:

Example (Ray and a collection ``col`` already there)::

    from ragmix.distributed import ShardedSearcher, shard_backend, sharded_retriever

    shards = shard_backend(col.backend, "/data/shards", n_shards=4)
    with ShardedSearcher(shards) as searcher:          # 4 actors, one shard each
        scores, ids = searcher.search(queries, 10)     # (q, 10) each, exact
        hybrid = sharded_retriever(col, searcher, mode="hybrid")
        hits = col.hits(hybrid.retrieve("how deep is lake varno?", 5))
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.distributed.cluster import connect, ray_module
from ragmix.distributed.shards import SHARDS_FILE, ShardSet, merge_topk, shard_topk
from ragmix.errors import BadInputError, CollectionError
from ragmix.retrieval.retrievers import DEFAULT_FUSION, MODES, Retriever

if TYPE_CHECKING:
    from ragmix.store.collection import Collection


class ShardWorker:
    """The body of one shard actor: a FAISS index memory-mapped from ``path``."""

    def __init__(self, path: str) -> None:
        faiss = require("faiss", "faiss")
        if not os.path.exists(path):
            raise BadInputError(f"no shard at {path!r} on this node; every node must see the "
                                "shard directory (a shared file system) at the same path")
        self.index = faiss.read_index(path, faiss.IO_FLAG_MMAP)

    def count(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return require("faiss", "faiss").vector_to_array(self.index.id_map)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return shard_topk(self.index, queries, k, allowed_ids)  # (q, k) each


class ShardedSearcher:
    """Exact MIPS over a :class:`ShardSet`, one Ray actor per shard; read-only.

    Connects to Ray (a local cluster) if this process is not connected yet; call
    :func:`ragmix.distributed.connect` first to use a running cluster.
    ``num_cpus`` is what each shard actor reserves. :meth:`close` (or leaving a
    ``with`` block) stops the actors.
    """

    def __init__(self, shards: ShardSet, *, num_cpus: float = 1.0) -> None:
        if num_cpus < 0:
            raise BadInputError(f"num_cpus must be >= 0, got {num_cpus}")
        ray = ray_module()
        if not ray.is_initialized():
            connect()
        self.shards = shards
        actor = ray.remote(num_cpus=num_cpus)(ShardWorker)
        self._actors = [actor.remote(str(path)) for path in shards.paths()]
        counts = ray.get([a.count.remote() for a in self._actors])
        expected = [s.count for s in shards.shards]
        if counts != expected:
            self.close()
            raise CollectionError(f"shard files in {str(shards.directory)!r} hold {counts} "
                                  f"vectors, {SHARDS_FILE} says {expected}; write them again")

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, num_cpus: float = 1.0) -> ShardedSearcher:
        """A searcher over the shards written to ``directory``."""
        return cls(ShardSet.load(directory), num_cpus=num_cpus)

    # -- the VectorIndex protocol ------------------------------------------------
    @property
    def dim(self) -> int:
        return self.shards.dim

    @property
    def generation(self) -> int:
        """The store generation the shards were written at."""
        return self.shards.generation

    def __len__(self) -> int:
        return len(self.shards)

    def __repr__(self) -> str:
        return (f"ShardedSearcher({str(self.shards.directory)!r}, shards={len(self.shards.shards)},"
                f" n={len(self)})")

    def ids(self) -> np.ndarray:
        """(n,) int64: every id, ascending (shard by shard)."""
        ray = ray_module()
        return np.concatenate([np.empty(0, dtype=np.int64),
                               *ray.get([a.ids.remote() for a in self._live()])])

    def search(self, queries: np.ndarray, k: int, *,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: queries (q, dim) -> scores (q, k) float32, ids (q, k) int64.

        Equal to one flat index over all the vectors, ties by the smaller id; empty
        slots have id -1 and the lowest float32 score. ``allowed_ids`` keeps only those.
        """
        ray = ray_module()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise BadInputError(f"queries must have shape (q, {self.dim}), got {queries.shape}; "
                                "wrap a single query as queries[None, :]")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise BadInputError(f"k must be an integer > 0, got {k!r}")
        allowed = None if allowed_ids is None else np.unique(np.asarray(allowed_ids, np.int64))
        queries_ref = ray.put(queries)  # sent once, read by every actor
        pending = []
        for actor, shard in zip(self._live(), self.shards.shards):
            mine = None
            if allowed is not None:  # only the ids in this shard's range travel to it
                mine = allowed[(allowed >= shard.min_id) & (allowed <= shard.max_id)]
                if not len(mine):
                    continue
            pending.append(actor.search.remote(queries_ref, int(k), mine))
        if not pending:
            return (np.full((len(queries), k), np.finfo(np.float32).min, dtype=np.float32),
                    np.full((len(queries), k), -1, dtype=np.int64))
        return merge_topk(ray.get(pending), int(k))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise BadInputError(_READ_ONLY)

    def remove(self, ids: np.ndarray) -> None:
        raise BadInputError(_READ_ONLY)

    def save(self, path: str) -> None:
        raise BadInputError(_READ_ONLY)

    # -- lifetime ----------------------------------------------------------------
    def _live(self) -> list[Any]:
        if not self._actors:
            raise CollectionError("this ShardedSearcher is closed; open a new one")
        return self._actors

    def close(self) -> None:
        """Stop the shard actors (their CPUs go back to the cluster)."""
        ray = ray_module()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    def __enter__(self) -> ShardedSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_READ_ONLY = ("a ShardedSearcher is read-only; add to the collection, then write the shards "
              "again with shard_backend and open a new searcher")


def sharded_retriever(collection: Collection, searcher: ShardedSearcher, *, mode: str = "hybrid",
                      fusion: str = DEFAULT_FUSION, dense_weight: float = 0.5,
                      depth: int = 100) -> Retriever:
    """``collection.retriever(mode)`` with its dense side searched on the shard actors.

    BM25 stays with the collection's backend. Raises
    :class:`~ragmix.errors.CollectionError` when the shards were written at another
    generation of the store than the current one (they would miss or resurrect chunks).
    """
    if mode not in MODES or mode == "bm25":
        raise BadInputError(
            f"mode must be 'dense' or 'hybrid' (bm25 needs no shards), got {mode!r}")
    if searcher.generation != collection.backend.generation:
        raise CollectionError(
            f"the shards in {str(searcher.shards.directory)!r} were written at generation "
            f"{searcher.generation}, the collection is at {collection.backend.generation}; "
            "write them again with shard_backend")
    return collection.retriever(mode, fusion=fusion, dense_weight=dense_weight, depth=depth,
                                vectors=searcher)
