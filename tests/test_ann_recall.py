"""ANN collections against exact search: recall@10 >= 0.9 on structured vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmix.store import Collection
from ragmix.types import Document


class TableEncoder:
    """Looks vectors up by text: lets a collection index prepared, clustered vectors."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.name, self.dim = "table-64", 64

    def encode_queries(self, texts):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def encode_documents(self, texts, *, batch_size=64, progress=None):
        return self.encode_queries(texts)


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    x = centres[picks] + 0.35 * rng.standard_normal((n, centres.shape[1]))  # (n, 64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_dense_recall_at_10_against_exact(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 64))
    docs, queries = clustered(rng, 4000, centres), clustered(rng, 50, centres)
    table = {f"d{i}": v for i, v in enumerate(docs)} | {f"q{i}": v for i, v in enumerate(queries)}
    encoder = TableEncoder(table)
    with Collection.create(tmp_path / kind, encoder=encoder, index=kind) as col:
        col.add_documents(Document(doc_id=f"d{i}", text=f"d{i}", source="table", content_hash=str(i))
                          for i in range(len(docs)))
        exact = np.argsort(-(queries @ docs.T), axis=1)[:, :10]  # (50, 10) brute force
        found = 0
        for qi in range(len(queries)):
            hits = col.search(f"q{qi}", k=10, mode="dense")
            found += len({int(h.doc_id[1:]) for h in hits} & set(exact[qi].tolist()))
        recall = found / exact.size
        assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"
