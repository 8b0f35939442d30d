"""The encoder interface: queries and documents to float32 vectors.

DPR keeps two towers (a query and a document encoder); S-BERT models share one.
Both fit this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Embeds text for maximum inner product search."""

    @property
    def name(self) -> str:
        """A spec that :func:`ragmix.encoders.load_encoder` turns back into this encoder."""
        ...

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32."""
        ...

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress=None
    ) -> np.ndarray:
        """(n, dim) float32. ``progress(n_done)`` is called after each batch if given."""
        ...
