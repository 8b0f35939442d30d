"""The generator interface: text in, text out, plus token log-probabilities.

``token_logprobs`` is what the paper's RAG-Sequence / RAG-Token marginals are
built on (a later issue); ``generate`` is the everyday "stuff" mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Generator(Protocol):
    """A language model that answers a prompt and scores continuations."""

    @property
    def name(self) -> str: ...

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """Greedy answer to ``prompt``; ``on_token`` receives text pieces as they decode."""
        ...

    def token_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[np.ndarray]:
        """Teacher-forced log p(y_i | prompt, y_<i) for each continuation token: (T_j,) each."""
        ...
