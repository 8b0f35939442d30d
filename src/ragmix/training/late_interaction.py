"""Training a late-interaction (ColBERT) reranker: MaxSim scores under the retriever's InfoNCE.

The loop is the retriever trainer's (``training/retriever.py``): the same
(query, positive) batches, in-batch plus mined hard negatives with the
false-negative filter, GradCache, checkpoints that resume exactly, progress
events. Only the scoring differs (:class:`MaxSimScoring`): each text becomes
unit token vectors (:func:`ragmix.rerank.late_interaction.token_vectors`, the
encoding the scorer uses at query time), through a linear projection to
``dim`` (ColBERT's 128) when one is asked for, and a query scores each passage
of the pool by MaxSim (:func:`ragmix.rerank.maxsim.maxsim_batch`). The
temperature defaults to 1: ColBERT trains on raw MaxSim sums, which already
span several units.

"model" negatives come from the transformer's own mean-pooled embedding (the
dense retriever sharing its weights), as the retriever trainer mines them:
mining by MaxSim would need every passage's token vectors at every re-mining.

The projection starts orthogonal (rows orthonormal, seeded), so step 0 keeps
the untrained model's geometry as far as ``dim`` allows: on 60 SciFact train
claims (BM25 top 15 reranked, nDCG@10) untrained MiniLM vectors scored 0.755
without a projection and 0.758 / 0.757 through a random orthogonal 128-d one
(two seeds; 64-d: 0.748 / 0.744).

    data = load_beir_pairs("../shared/data/scifact")
    trainer = late_interaction_trainer("minilm", data, RetrieverTrainConfig(temperature=1.0))
    trainer.train("models/scifact-colbert")
    LateInteractionScorer("models/scifact-colbert").score(query, texts)

The folder is the sentence-transformers model (so also a dense encoder), plus
``projection.safetensors``, ``late_interaction.json`` and the training report
``ragmix_training.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.rerank.late_interaction import (
    PROJECTION_FILE,
    LateInteractionSettings,
    load_projection,
    punctuation_ids,
    token_vectors,
)
from ragmix.rerank.maxsim import maxsim_batch
from ragmix.training.infonce import info_nce
from ragmix.training.pairs import TrainingSet
from ragmix.training.retriever import RetrieverTrainer, load_base_model
from ragmix.training.retriever_config import RetrieverTrainConfig

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_DIM = 128  # ColBERT's; it shrinks the cache 3x against MiniLM's 384


class MaxSimScoring:
    """A :class:`~ragmix.training.pool_scoring.PoolScoring`: MaxSim over unit token vectors.

    Texts are embedded to a fixed length (queries ``settings.query_length``,
    passages ``max_length`` tokens), so GradCache can join chunks; masked
    tokens are zero vectors (``token_vectors`` zeroes them) and a unit vector
    never is, so each mask is read back from its vectors inside the loss.
    """

    def __init__(self, model: Any, settings: LateInteractionSettings, *, max_length: int,
                 dtype: str, seed: int, start: Path | None = None) -> None:
        torch = require("torch", "models")
        self.transformer, self.tokenizer = model[0].auto_model, model.tokenizer
        self.late, self.dtype = settings, dtype
        positions = getattr(self.transformer.config, "max_position_embeddings", None)
        self.max_length = min(max_length, int(positions)) if positions else max_length
        hidden = int(self.transformer.config.hidden_size)
        self.projection = None
        if settings.dim:
            self.projection = _starting_projection(torch, hidden, settings, seed, start)
        self.modules: tuple[Any, ...] = () if self.projection is None else (self.projection,)
        self.settings = {"late_interaction": json.dumps(asdict(settings), sort_keys=True)}
        self._skip = punctuation_ids(self.tokenizer) if settings.skip_punctuation \
            else frozenset()

    def _embed(self, texts: list[str], length: int, skip: frozenset[int]) -> Tensor:
        torch = require("torch", "models")
        vectors, _ = token_vectors(self.transformer, self.tokenizer, texts, max_length=length,
                                   projection=self.projection, skip_ids=skip,
                                   dtype=self.dtype)  # (n, T, D), masked tokens zero
        return torch.nn.functional.pad(vectors, (0, 0, 0, length - vectors.shape[1]))  # (n, L, D)

    def embed_queries(self, texts: list[str]) -> Tensor:
        return self._embed(texts, self.late.query_length, frozenset())  # (B, Tq, D)

    def embed_passages(self, texts: list[str]) -> Tensor:
        return self._embed(texts, self.max_length, self._skip)  # (N, Td, D)

    def loss(self, queries: Tensor, passages: Tensor, targets: Tensor, *,
             temperature: Tensor | float, excluded: Tensor) -> Tensor:
        """InfoNCE over MaxSim scores; queries (B, Tq, D), passages (N, Td, D)."""
        torch = require("torch", "models")
        scores = maxsim_batch(queries, queries.abs().sum(-1) > 0,
                              passages, passages.abs().sum(-1) > 0)  # (B, N)
        # info_nce scores q @ p.T: the scores against the identity are the scores themselves
        identity = torch.eye(scores.shape[1], dtype=scores.dtype)  # (N, N)
        return info_nce(scores, identity, targets, temperature=temperature, excluded=excluded)

    def save(self, output: Path) -> None:
        """The projection and the settings, beside the trainer's sentence-transformers folder."""
        (output / PROJECTION_FILE).unlink(missing_ok=True)  # a stale one would be loaded
        if self.projection is not None:
            st = require("safetensors.torch", "models")
            st.save_file({k: v.detach().contiguous() for k, v in
                          self.projection.state_dict().items()}, str(output / PROJECTION_FILE))
        self.late.save(output)


def _starting_projection(torch: Any, hidden: int, settings: LateInteractionSettings, seed: int,
                         start: Path | None) -> Any:
    """The base folder's own projection if it has one of this width, else a seeded orthogonal one."""
    if start is not None and LateInteractionSettings.load(start).dim == settings.dim:
        projection = load_projection(start, settings, hidden)
        return projection.train()
    projection = torch.nn.Linear(hidden, settings.dim, bias=False)
    with torch.no_grad():  # rows orthonormal: inner products kept as far as dim allows
        torch.nn.init.orthogonal_(projection.weight, generator=torch.Generator().manual_seed(seed))
    return projection


def late_interaction_trainer(base: str | Path, data: TrainingSet, config: RetrieverTrainConfig,
                             *, settings: LateInteractionSettings | None = None,
                             model: Any = None) -> RetrieverTrainer:
    """The retriever trainer with MaxSim scoring; ``train(OUT)`` writes a late-interaction folder.

    ``base`` is 'minilm', a sentence-transformers folder or a late-interaction
    folder (its projection is kept when ``settings.dim`` matches); ``model``
    (a SentenceTransformer) replaces loading it. ``settings`` default to a
    128-d projection, ColBERT's.
    """
    settings = settings or LateInteractionSettings(dim=DEFAULT_DIM)
    if config.two_tower:
        raise BadInputError("late interaction shares one encoder for queries and passages "
                            "(ColBERT); drop two_tower")
    if settings.dim is not None and settings.dim <= 0:
        raise BadInputError(f"dim must be > 0 (or None for no projection), got {settings.dim}")
    if settings.query_length < 2:
        raise BadInputError(f"query_length must be >= 2 tokens, got {settings.query_length}")
    model = model if model is not None else load_base_model(base)
    start = Path(base) if Path(str(base)).is_dir() else None
    scoring = MaxSimScoring(model, settings, max_length=config.max_seq_length,
                            dtype=config.dtype, seed=config.seed, start=start)
    return RetrieverTrainer(base, data, config, model=model, scoring=scoring)
