"""Adapters between a collection's backend and the retrievers, and a collection bound to
fixed search settings (what RAG, MarginalRAG and the evaluation functions search)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ragmix.store.backend import StoreBackend
from ragmix.types import Hit, ScoredId

if TYPE_CHECKING:
    from ragmix.store.collection import Collection


class BoundSearch:
    """A collection searched with fixed ``fusion`` and ``source``: ``search(query, k, *, mode)``."""

    def __init__(self, collection: Collection, *, fusion: str, source: str | None,
                 temperature: float = 1.0, dense_weight: float = 0.5) -> None:
        self.collection, self.fusion, self.source = collection, fusion, source
        self.temperature, self.dense_weight = temperature, dense_weight

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        return self.collection.search(query, k, mode=mode, fusion=self.fusion, source=self.source,
                                      temperature=self.temperature, dense_weight=self.dense_weight)


class _VectorSearch:
    """A backend's vector search as the ``search`` a DenseRetriever calls on its index."""

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend

    def search(self, queries: np.ndarray, k: int, *,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.vector_search(queries, k, allowed_ids=allowed_ids)


class _KeywordSearch:
    """A backend's keyword search as the ``search`` a BM25Retriever calls on its index."""

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend

    def search(self, query: str, k: int, *,
               allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        return self.backend.keyword_search(query, k, allowed_ids=allowed_ids)
