"""DPR's two towers: one sentence-transformers model for queries, another for passages.

A folder written by ``ragmix train retriever --two-tower`` holds ``query/``,
``document/`` and ``ragmix_two_tower.json`` naming them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragmix.encoders.sentence_transformer import SentenceTransformerEncoder
from ragmix.errors import BadInputError

TWO_TOWER_FILE = "ragmix_two_tower.json"


def is_two_tower(path: str | Path) -> bool:
    return (Path(path) / TWO_TOWER_FILE).is_file()


class TwoTowerEncoder:
    """Queries through the query tower, documents through the document tower."""

    def __init__(self, path: str | Path, *, dtype: str = "float32") -> None:
        path = Path(path)
        try:
            parts = json.loads((path / TWO_TOWER_FILE).read_text(encoding="utf-8"))
            query, document = parts["query"], parts["document"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInputError(f"{str(path)!r} is not a two-tower folder: {exc}") from None
        self._query = SentenceTransformerEncoder(path / query, dtype=dtype)
        self._document = SentenceTransformerEncoder(path / document, dtype=dtype)
        if self._query.dim != self._document.dim:
            raise BadInputError(f"the towers of {str(path)!r} disagree on dim: "
                                f"{self._query.dim} vs {self._document.dim}")
        self._name = str(path.resolve())

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._document.dim

    @property
    def query_model(self):
        return self._query.model

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._query.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 64,
                         progress=None) -> np.ndarray:
        return self._document.encode_documents(texts, batch_size=batch_size, progress=progress)
