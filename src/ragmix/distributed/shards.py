"""FAISS shards on disk and the maths of searching them: per-shard top-k and the exact merge.

A collection's vectors are cut into contiguous ranges of chunk ids, one exact
(flat inner-product) FAISS index per range, written to ``DIR/shard-NNN.faiss``
beside ``DIR/shards.json``. Nothing here needs Ray: :mod:`ragmix.distributed.searcher`
puts each shard in an actor, which reads its file memory-mapped.

Ties: every function here ranks by score, highest first, and equal scores by the
smaller chunk id, so a merged top-k is one definite list (FAISS alone keeps
whichever equal score it met first).

>>> import tempfile
>>> rng = np.random.default_rng(0)
>>> vectors = rng.standard_normal((10, 4)).astype(np.float32)  # (n, dim)
>>> vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # unit length
>>> ids = np.arange(100, 110)  # chunk ids
>>> tmp = tempfile.TemporaryDirectory()
>>> shards = write_shards(ids, vectors, tmp.name, 3)
>>> [(s.min_id, s.max_id, s.count) for s in shards.shards]
[(100, 103, 4), (104, 106, 3), (107, 109, 3)]
>>> faiss = require("faiss", "faiss")
>>> parts = [shard_topk(faiss.read_index(str(p), faiss.IO_FLAG_MMAP), vectors[:2], 3)
...          for p in shards.paths()]
>>> scores, found = merge_topk(parts, 3)  # (q, k) each
>>> found[:, 0].tolist()  # each query vector finds itself first
[100, 101]
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError, CollectionError

if TYPE_CHECKING:
    from ragmix.store.backend import StoreBackend

SHARDS_FILE = "shards.json"
_FORMAT = "ragmix.shards/1"
# Embeddings read from the store per step while a shard is written: 50k x 384 float32
# is 77 MB, so sharding a large collection never holds all its vectors at once.
READ_BATCH = 50_000


@dataclass(frozen=True)
class Shard:
    """One shard file: ``count`` vectors with chunk ids in [min_id, max_id]."""

    file: str  # relative to the shard set's directory
    count: int
    min_id: int
    max_id: int


@dataclass(frozen=True)
class ShardSet:
    """The shards of one collection's vectors, as written at store ``generation``."""

    directory: Path
    dim: int
    generation: int
    shards: tuple[Shard, ...]

    def paths(self) -> list[Path]:
        return [self.directory / s.file for s in self.shards]

    def __len__(self) -> int:
        return sum(s.count for s in self.shards)

    def save(self) -> None:
        body = {"format": _FORMAT, "dim": self.dim, "generation": self.generation,
                "shards": [asdict(s) for s in self.shards]}
        tmp = self.directory / (SHARDS_FILE + ".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.replace(tmp, self.directory / SHARDS_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ShardSet:
        """The shards in ``directory``, written by :func:`write_shards` or :func:`shard_backend`."""
        directory = Path(directory)
        try:
            body = json.loads((directory / SHARDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CollectionError(f"cannot read {str(directory / SHARDS_FILE)!r} ({exc}); "
                                  "write the shards with shard_backend first") from exc
        if body.get("format") != _FORMAT:
            raise CollectionError(f"{str(directory / SHARDS_FILE)!r} is not a {_FORMAT} file; "
                                  "write the shards again")
        return cls(directory, int(body["dim"]), int(body["generation"]),
                   tuple(Shard(**s) for s in body["shards"]))


def _split(ids: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """Sorted unique ``ids`` cut into ``n_shards`` contiguous ranges, sizes differing by <= 1."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards <= 0:
        raise BadInputError(f"n_shards must be an integer > 0, got {n_shards!r}")
    if len(ids) < n_shards:
        raise BadInputError(f"cannot cut {len(ids)} vectors into {n_shards} shards; "
                            f"use at most {max(len(ids), 1)} shards")
    return np.array_split(ids, n_shards)


def _write_index(index: Any, path: Path) -> None:
    faiss = require("faiss", "faiss")
    faiss.write_index(index, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)


def _new_index(dim: int) -> Any:
    faiss = require("faiss", "faiss")
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def write_shards(ids: np.ndarray, vectors: np.ndarray, directory: str | os.PathLike[str],
                 n_shards: int, *, generation: int = 0) -> ShardSet:
    """Write ids (n,) int64 and vectors (n, dim) float32 as ``n_shards`` exact FAISS shards.

    Shard i holds the i-th contiguous range of the ids in ascending order.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)  # (n,)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
    if ids.ndim != 1 or vectors.ndim != 2 or len(vectors) != len(ids):
        raise BadInputError(f"write_shards needs ids (n,) and vectors (n, dim), got "
                            f"{ids.shape} and {vectors.shape}")
    if len(np.unique(ids)) != len(ids):
        raise BadInputError("ids must be unique; each chunk belongs to one shard")
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], vectors[order]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards, start = [], 0
    for number, part in enumerate(_split(ids, n_shards)):
        index = _new_index(vectors.shape[1])
        index.add_with_ids(vectors[start : start + len(part)], part)
        start += len(part)
        shards.append(_finish(index, directory, number, part))
    shard_set = ShardSet(directory, int(vectors.shape[1]), int(generation), tuple(shards))
    shard_set.save()
    return shard_set


def _finish(index: Any, directory: Path, number: int, part: np.ndarray) -> Shard:
    name = f"shard-{number:03d}.faiss"
    _write_index(index, directory / name)
    return Shard(name, len(part), int(part[0]), int(part[-1]))


def shard_backend(backend: StoreBackend, directory: str | os.PathLike[str], n_shards: int, *,
                  read_batch: int = READ_BATCH) -> ShardSet:
    """Write a store's vectors (any :class:`~ragmix.store.StoreBackend`) as ``n_shards`` shards.

    Reads ``read_batch`` embeddings at a time, so memory holds one shard's index plus
    one batch; the shard set is stamped with the store's generation at the start.
    """
    if read_batch <= 0:
        raise BadInputError(f"read_batch must be > 0, got {read_batch}")
    generation = int(backend.generation)
    ids = np.asarray(backend.chunk_ids(), dtype=np.int64)  # (n,) ascending
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards = []
    for number, part in enumerate(_split(ids, n_shards)):
        index = _new_index(backend.dim)
        for start in range(0, len(part), read_batch):
            batch = part[start : start + read_batch]
            index.add_with_ids(backend.embeddings(batch.tolist()), batch)  # (b, dim)
        shards.append(_finish(index, directory, number, part))
    shard_set = ShardSet(directory, int(backend.dim), generation, tuple(shards))
    shard_set.save()
    return shard_set


def _by_score_then_id(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row-wise order (q, n): score descending, then id ascending, empty slots (-1) last."""
    empty = ids < 0  # (q, n)
    return np.lexsort((np.where(empty, np.iinfo(np.int64).max, ids), -scores, empty), axis=-1)


def shard_topk(index: Any, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One FAISS index's exact top-k with ties to the smaller id: (q, dim) -> (q, k), (q, k).

    FAISS cuts a run of equal scores at k wherever it met them, so the search goes
    deeper until each row's k-th score is strictly above the last one returned (or
    the index is exhausted); then the rows are ordered by score and id and cut at k.
    Empty slots have id -1 and the lowest float32 score, as FAISS writes them.
    """
    faiss = require("faiss", "faiss")
    params = None
    if allowed_ids is not None:
        params = faiss.SearchParameters(
            sel=faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64)))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    total = int(index.ntotal)
    depth = max(1, min(k, total))
    while True:
        scores, ids = index.search(queries, depth, params=params)  # (q, depth) each
        if depth >= total:
            break
        last, kth = scores[:, -1], scores[:, k - 1]  # (q,) each; depth >= k here
        if not np.any((last == kth) & (ids[:, -1] >= 0)):
            break
        depth = min(2 * depth, total)
    order = _by_score_then_id(scores, ids)[:, :k]  # (q, <= k)
    out_scores = np.full((len(queries), k), np.finfo(np.float32).min, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores[:, : order.shape[1]] = np.take_along_axis(scores, order, axis=1)
    out_ids[:, : order.shape[1]] = np.take_along_axis(ids, order, axis=1)
    return out_scores, out_ids


def merge_topk(results: Sequence[tuple[np.ndarray, np.ndarray]],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The global top-k of shards' results: [(scores (q, k_i), ids (q, k_i))] -> (q, k), (q, k).

    Each shard's result must be its own top-k_i (as :func:`shard_topk` returns), the
    shards disjoint. ``faiss.ResultHeap`` selects the k best scores; it keeps
    whichever equal score it met first, so the slots holding the k-th score then get
    the smallest ids among every candidate with that score. Rows come out by score,
    ties by the smaller id: the order one flat index over all the vectors gives once
    its ties are ordered the same way.
    """
    if not results:
        raise BadInputError("merge_topk needs at least one shard's result")
    faiss = require("faiss", "faiss")
    n_queries = len(results[0][0])
    heap = faiss.ResultHeap(n_queries, k, keep_max=True)
    for scores, ids in results:
        heap.add_result(np.ascontiguousarray(scores, dtype=np.float32),
                        np.ascontiguousarray(ids, dtype=np.int64))
    heap.finalize()
    scores, ids = heap.D.copy(), heap.I.copy()  # (q, k) each
    every_score = np.concatenate([s for s, _ in results], axis=1)  # (q, sum k_i)
    every_id = np.concatenate([i for _, i in results], axis=1)  # (q, sum k_i)
    for row in range(n_queries):
        slots = (scores[row] == scores[row, -1]) & (ids[row] >= 0)  # (k,)
        if not slots.any():
            continue
        tied = every_id[row][(every_score[row] == scores[row, -1]) & (every_id[row] >= 0)]
        ids[row, slots] = np.unique(tied)[: int(slots.sum())]  # np.unique sorts ascending
    order = _by_score_then_id(scores, ids)  # (q, k)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
