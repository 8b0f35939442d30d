"""Retrievers: a query in, ranked chunk ids out. Dense, BM25, and their fusion."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ragmix.encoders.base import Encoder
from ragmix.errors import BadInputError
from ragmix.index.base import VectorIndex
from ragmix.retrieval.fusion import reciprocal_rank_fusion, weighted_fusion
from ragmix.types import ScoredId

FUSIONS = ("rrf", "weighted")


class Retriever(Protocol):
    """Ranks chunk ids for a query; ``allowed_ids`` restricts the candidates exactly."""

    def retrieve(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]: ...


class KeywordIndex(Protocol):
    def search(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]: ...


class DenseRetriever:
    """DPR-style retrieval: encode the query, top-k by inner product d(z)·q(x)."""

    def __init__(self, encoder: Encoder, index: VectorIndex) -> None:
        self.encoder = encoder
        self.index = index

    def retrieve(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        q = self.encoder.encode_queries([query])  # (1, dim)
        scores, ids = self.index.search(q, k, allowed_ids=allowed_ids)  # (1, k) each
        return [
            ScoredId(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0
        ]


class BM25Retriever:
    """Keyword retrieval with BM25 scores."""

    def __init__(self, index: KeywordIndex) -> None:
        self.index = index

    def retrieve(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        return self.index.search(query, k, allowed_ids=allowed_ids)


class HybridRetriever:
    """Dense + BM25, fused by Reciprocal Rank Fusion (default) or weighted scores.

    Each side retrieves ``depth`` candidates (deeper than k, so fusion can
    promote a passage that one side ranks low).
    """

    def __init__(
        self,
        dense: Retriever,
        sparse: Retriever,
        *,
        fusion: str = "rrf",
        rrf_k: int = 60,
        dense_weight: float = 0.5,
        depth: int = 100,
    ) -> None:
        if fusion not in FUSIONS:
            raise BadInputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not 0.0 <= dense_weight <= 1.0:
            raise BadInputError(f"dense_weight must be in [0, 1], got {dense_weight}")
        if rrf_k <= 0 or depth <= 0:
            raise BadInputError(f"rrf_k and depth must be > 0, got {rrf_k} and {depth}")
        self.dense, self.sparse = dense, sparse
        self.fusion, self.rrf_k = fusion, rrf_k
        self.dense_weight, self.depth = dense_weight, depth

    def retrieve(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        depth = max(k, self.depth)
        rankings = [
            self.dense.retrieve(query, depth, allowed_ids=allowed_ids),
            self.sparse.retrieve(query, depth, allowed_ids=allowed_ids),
        ]
        weights = [self.dense_weight, 1.0 - self.dense_weight]
        if self.fusion == "rrf":
            fused = reciprocal_rank_fusion(rankings, k=self.rrf_k, weights=weights)
        else:
            fused = weighted_fusion(rankings, weights=weights)
        return fused[:k]
