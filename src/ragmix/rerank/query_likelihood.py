"""Query-likelihood reranking (UPR, Sachan et al., 2022): how likely the passage makes the question.

A passage z is scored by log p(q | z) under a language model, the question's
tokens teacher-forced after an instruction to write a question about the
passage. Zero-shot: no reranker weights, any :class:`ScoringGenerator` (SmolLM2
by default). UPR averages over the question's tokens; the question is the same
for every candidate, so the sum ranks them identically, and the sum is the
model's own log-probability of the question.

    from ragmix.generation import load_generator
    scorer = QueryLikelihoodScorer(load_generator("smollm2"))
    scorer.score("how deep is lake varno?", ["Lake Varno is 310 metres deep.", "Paris ..."])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragmix.errors import BadInputError
from ragmix.generation.base import ScoringGenerator

# Sachan et al.'s prompt: the passage, then an instruction to write a question about it.
INSTRUCTION = "Please write a question based on this passage."


def question_prompt(passage: str) -> str:
    """The prompt after which the question is scored.

    >>> question_prompt("Lake Varno is 310 metres deep.")
    'Passage: Lake Varno is 310 metres deep.\\nPlease write a question based on this passage.'
    """
    return f"Passage: {passage}\n{INSTRUCTION}"


class QueryLikelihoodScorer:
    """log p(question | passage) under ``generator``, ``batch_size`` passages per forward pass.

    ``max_passage_tokens`` cuts long passages (their first tokens are kept), so a
    rerank of 50 long documents costs a bounded number of tokens.
    """

    def __init__(self, generator: ScoringGenerator, *, batch_size: int = 8,
                 max_passage_tokens: int = 384) -> None:
        if not isinstance(generator, ScoringGenerator):
            raise BadInputError(f"query likelihood needs a scoring generator (token ids), "
                                f"got {type(generator).__name__}")
        for label, value in (("batch_size", batch_size), ("max_passage_tokens", max_passage_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BadInputError(f"{label} must be an integer > 0, got {value!r}")
        self.generator, self.batch_size = generator, batch_size
        self.max_passage_tokens = max_passage_tokens

    @property
    def name(self) -> str:
        return f"query-likelihood:{self.generator.name}"

    def _passage(self, text: str) -> str:
        ids = self.generator.encode_answer(text)
        if len(ids) <= self.max_passage_tokens:
            return text
        return self.generator.decode(ids[: self.max_passage_tokens])

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not query or not query.strip():
            raise BadInputError("query must not be empty")
        if not texts:
            return np.zeros(0)
        import torch

        question = self.generator.encode_answer(query)
        prompts = [self.generator.encode_prompt(question_prompt(self._passage(t))) for t in texts]
        # longest prompts together, so a batch pads little
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out = np.zeros(len(prompts))
        with torch.inference_mode():
            for at in range(0, len(order), self.batch_size):
                rows = order[at: at + self.batch_size]
                forced = self.generator.score_ids([prompts[i] for i in rows], [question] * len(rows))
                sums = (forced.token_lp * forced.mask).sum(dim=1)  # (n, T) -> (n,)
                out[rows] = sums.double().cpu().numpy()
        return out
