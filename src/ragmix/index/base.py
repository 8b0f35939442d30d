"""The vector index interface: maximum inner product search with ids."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """A MIPS index over (id, vector) pairs; ids are int64 chunk ids."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """(n,) int64: every id in the index."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids (n,) int64, vectors (n, dim) float32."""
        ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, dim) -> scores (q, k) float32, ids (q, k) int64; missing slots are id -1."""
        ...

    def save(self, path: str) -> None: ...
