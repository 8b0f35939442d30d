"""A deterministic hashing encoder: fast, dependency-free, for tests and smoke runs."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from ragmix.errors import BadInputError

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Bag of words hashed into ``dim`` signed buckets, L2-normalised.

    Shared towers: queries and documents embed the same way, so a query's inner
    product with a passage grows with the words they share.

    >>> enc = HashingEncoder(dim=64)
    >>> enc.encode_queries(["a cat"]).shape
    (1, 64)
    """

    def __init__(self, dim: int = 256) -> None:
        if dim <= 0:
            raise BadInputError(f"dim must be > 0, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)  # (n, dim)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                h = zlib.crc32(token.encode("utf-8"))
                # the top bit picks the sign so collisions cancel rather than pile up
                out[row, h % self._dim] += 1.0 if h & 0x80000000 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)  # (n, 1)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress=None
    ) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), batch_size):
            parts.append(self._embed(texts[start : start + batch_size]))
            if progress is not None:
                progress(len(parts[-1]))
        if not parts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(parts)
