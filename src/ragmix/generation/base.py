"""The generator interfaces: text in, text out, and what RAG's marginals need beyond that.

:class:`Generator` answers a prompt and scores continuations; it is all the
everyday "stuff" mode (:class:`~ragmix.generation.RAG`) needs.
:class:`ScoringGenerator` adds token ids, teacher-forced scores and lockstep
decoding (a :class:`Decoder`): what ``ragmix.marginal`` builds RAG-Sequence and
RAG-Token on. :class:`TrainableGenerator` adds the torch module and tokenizer
that joint training (``ragmix.training.rag``) fine-tunes and saves.
:class:`~ragmix.generation.hf.HFGenerator` is all of them. Importing this
module does not import torch; tensors in these signatures are torch tensors.

A backend is any class with these members (no base class to inherit):

>>> from ragmix.testing import ScriptedGenerator
>>> isinstance(ScriptedGenerator("Paris."), Generator)
True
>>> isinstance(ScriptedGenerator("Paris."), ScoringGenerator)  # no token ids, no scores
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


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


@dataclass(frozen=True)
class ForcedScores:
    """Teacher-forced log-probabilities of N padded continuations (see ``score_ids``)."""

    token_lp: Any  # torch.Tensor (N, T), 0 at padding
    mask: Any  # torch.Tensor (N, T) bool, True at real tokens
    full_lp: Any = None  # torch.Tensor (N, T, V) when asked for


@runtime_checkable
class Decoder(Protocol):
    """N token-id prompts decoded in lockstep, one row per (hypothesis, passage) pair.

    ``next_lp`` (N, V) holds every row's next-token log-probabilities (a
    float tensor, each row a distribution). Beam search moves on with
    :meth:`advance` (one token per row) and :meth:`select` (keep, reorder or
    repeat rows); RAG-Sequence scores other answers from the same prompts with
    :meth:`fork` and :meth:`extend`.
    """

    @property
    def next_lp(self) -> Tensor: ...

    @property
    def rows(self) -> int:
        """N, the number of rows now."""
        ...

    def advance(self, tokens: Tensor) -> Tensor:
        """Append ``tokens`` (N,) to the rows; returns and keeps the new ``next_lp`` (N, V)."""
        ...

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (M,), in that order; a row may be repeated (beam search)."""
        ...

    def fork(self, index: Tensor) -> Decoder:
        """A copy holding rows ``index`` (M,); this decoder is left as it was."""
        ...

    def extend(self, continuations: Sequence[Sequence[int]]) -> Tensor:
        """Teacher-force one continuation per row; their token log-probs (N, S), 0 past the end.

        Row r's numbers are what ``score_ids`` gives continuation r after the
        row's prompt and the answer tokens it has so far. The decoder is
        spent afterwards.
        """
        ...


@runtime_checkable
class ScoringGenerator(Generator, Protocol):
    """A :class:`Generator` over token ids: what RAG-Sequence and RAG-Token decode and score with.

    Prompts and answers are lists of token ids. ``score_ids`` and a
    :class:`Decoder` from ``start_decoding`` give the same numbers for the
    same (prompt, continuation): teacher forcing and step-by-step decoding
    agree. An answer ends with ``end_token_id``, and decoding stops at any of
    ``stop_token_ids`` (which hold it).
    """

    @property
    def end_token_id(self) -> int | None:
        """The token that ends an answer (scored after its last token), or None."""
        ...

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Tokens that end an answer when decoded; ``end_token_id`` is one of them."""
        ...

    def encode_prompt(self, prompt: str) -> list[int]:
        """``prompt`` as the model reads it (any chat wrapping and special tokens included)."""
        ...

    def encode_answer(self, text: str) -> list[int]:
        """Answer text as tokens, without special tokens (the end token is not added)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids back to text, special tokens left out."""
        ...

    def score_ids(
        self, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[int]], *,
        full: bool = False, left: bool | None = None, decoder_prefix: Sequence[int] | None = None,
    ) -> ForcedScores:
        """Teacher-forced log p(c_t | prompt, c_<t) of each continuation (each >= 1 token).

        Rows are padded to the longest continuation: ``token_lp`` (N, T),
        ``mask`` (N, T), and with ``full=True`` every vocabulary entry,
        ``full_lp`` (N, T, V). Gradients flow if the caller enables them
        (training). ``left`` is a padding side hint that must not change the
        numbers; ``decoder_prefix`` replaces an encoder-decoder model's decoder
        start tokens (None: the model's own; models without them ignore it).
        """
        ...

    def start_decoding(
        self, prompts: Sequence[Sequence[int]], *, decoder_prefix: Sequence[int] | None = None
    ) -> Decoder:
        """A :class:`Decoder` with one row per prompt, before any answer token."""
        ...


@runtime_checkable
class TrainableGenerator(ScoringGenerator, Protocol):
    """A :class:`ScoringGenerator` whose weights joint RAG training fine-tunes and saves.

    ``model`` is the Hugging Face ``PreTrainedModel`` that ``score_ids`` runs
    (read at every call: training wraps it in LoRA adapters, switches it
    between train and eval, and finally replaces it with the merged model);
    ``model`` and ``tokenizer`` are saved with ``save_pretrained``, so the
    output folder loads with ``HFGenerator.from_pretrained``.
    """

    model: Any
    tokenizer: Any


@runtime_checkable
class ContextLimited(Protocol):
    """A generator that says how many tokens it reads, so RAG can drop passages that do not fit."""

    @property
    def max_context_tokens(self) -> int | None:
        """How many tokens the model reads at most (prompt plus answer), or None if unknown."""
        ...

    def count_tokens(self, prompt: str) -> int:
        """How many tokens ``prompt`` takes, as ``generate`` sends it."""
        ...
