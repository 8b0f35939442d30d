"""Teacher-forced scores of answers under each of K passages, in one batched forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragmix.errors import BadInputError

if TYPE_CHECKING:
    from ragmix.generation.base import ScoringGenerator


@dataclass(frozen=True)
class PassageScores:
    """log p(y_t | x, z, y_<t) of B answers under K passages each.

    ``token_lp`` (B, K, T) is 0 at padding; ``mask`` (B, T); ``full_lp``
    (B, K, T, V) when asked for (label smoothing needs it).
    """

    token_lp: Any
    mask: Any
    full_lp: Any = None


def score_passages(
    gen: ScoringGenerator,
    prompts: Sequence[Sequence[Sequence[int]]],
    answers: Sequence[Sequence[int]],
    *,
    full: bool = False,
    left: bool | None = None,
    decoder_prefix: Sequence[int] | None = None,
) -> PassageScores:
    """Score answer ``b`` (token ids) under each of its K prompts ``prompts[b]`` (token ids).

    All B x K (prompt, answer) pairs go through the model in one forward
    pass; gradients flow when the caller enables them. Every question needs
    the same number of passages K (pad with a repeated passage and give it
    prior probability 0 when fewer were retrieved).
    """
    if len(prompts) != len(answers):
        raise BadInputError(f"got {len(prompts)} prompt lists but {len(answers)} answers")
    sizes = {len(p) for p in prompts}
    if len(sizes) != 1 or 0 in sizes:
        raise BadInputError(f"every question needs the same number (>= 1) of passages, "
                            f"got {sorted(sizes)}")
    k = sizes.pop()
    flat_prompts = [p for row in prompts for p in row]
    flat_answers = [a for a in answers for _ in range(k)]
    scores = gen.score_ids(flat_prompts, flat_answers, full=full, left=left,
                           decoder_prefix=decoder_prefix)
    b, t = len(answers), scores.token_lp.shape[-1]
    return PassageScores(
        token_lp=scores.token_lp.view(b, k, t),
        mask=scores.mask.view(b, k, t)[:, 0],
        full_lp=None if scores.full_lp is None else scores.full_lp.view(b, k, t, -1),
    )


def with_end(gen: ScoringGenerator, tokens: Sequence[int]) -> list[int]:
    """An answer's tokens followed by the model's end token, as decoding scores it."""
    end = gen.end_token_id
    return list(tokens) + ([] if end is None else [end])
