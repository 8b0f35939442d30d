"""How a contrastive step scores its pool: the seam between the retriever trainer's loop
and the kind of model it trains (dense bi-encoder here; late interaction plugs in too)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragmix.encoders.sentence_transformer import embed
from ragmix.training.infonce import info_nce

if TYPE_CHECKING:
    from torch import Tensor


class PoolScoring(Protocol):
    """The part of a contrastive step that depends on the kind of model.

    ``embed_*`` map texts to tensors with a graph, batch first (GradCache
    chunks along it); ``loss`` is InfoNCE of every query against the pool.
    ``modules`` are trainable weights beyond the encoders (optimised,
    checkpointed, saved by ``save``); ``settings`` are what a checkpoint must
    match besides the config.
    """

    @property
    def modules(self) -> tuple[Any, ...]: ...

    @property
    def settings(self) -> dict[str, str]: ...

    def embed_queries(self, texts: list[str]) -> Tensor: ...

    def embed_passages(self, texts: list[str]) -> Tensor: ...

    def loss(self, queries: Tensor, passages: Tensor, targets: Tensor, *,
             temperature: Tensor | float, excluded: Tensor) -> Tensor: ...

    def save(self, output: Path) -> None: ...


class DenseScoring:
    """A bi-encoder's scoring: cosine of the unit sentence embeddings the index stores."""

    def __init__(self, query_model: Any, passage_model: Any, dtype: str) -> None:
        self.query_model, self.passage_model, self.dtype = query_model, passage_model, dtype
        self.modules: tuple[Any, ...] = ()  # the encoders are the trainer's own
        self.settings: dict[str, str] = {}

    def embed_queries(self, texts: list[str]) -> Tensor:
        return embed(self.query_model, texts, dtype=self.dtype)  # (n, D)

    def embed_passages(self, texts: list[str]) -> Tensor:
        return embed(self.passage_model, texts, dtype=self.dtype)  # (n, D)

    def loss(self, queries: Tensor, passages: Tensor, targets: Tensor, *,
             temperature: Tensor | float, excluded: Tensor) -> Tensor:
        return info_nce(queries, passages, targets, temperature=temperature, excluded=excluded)

    def save(self, output: Path) -> None:
        """Nothing beyond the sentence-transformers folder."""
