"""Beam bookkeeping shared by RAG-Token and RAG-Sequence decoding."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """A finished (or cut-off) answer: its tokens and log-probability.

    ``score`` is the sum of the token log-probabilities (the end token
    included when ``finished``), divided by ``len(tokens) ** length_penalty``
    for ranking; ``logprob`` is the raw sum.
    """

    tokens: tuple[int, ...]
    logprob: float
    score: float
    finished: bool


def ranked(logprob: float, n_tokens: int, length_penalty: float) -> float:
    """The beam ranking score of a hypothesis: logprob / n_tokens ** length_penalty.

    >>> ranked(-4.0, 4, 0.0), ranked(-4.0, 4, 1.0)
    (-4.0, -1.0)
    """
    return logprob / max(n_tokens, 1) ** length_penalty


class Finished:
    """The best ``width`` finished hypotheses so far, and whether search can stop."""

    def __init__(self, width: int, length_penalty: float) -> None:
        self.width, self.length_penalty = width, length_penalty
        self.items: list[Hypothesis] = []

    def add(self, tokens: tuple[int, ...], logprob: float, *, finished: bool = True) -> None:
        n = len(tokens) + (1 if finished else 0)  # the end token counts
        self.items.append(Hypothesis(tokens, logprob, ranked(logprob, n, self.length_penalty),
                                     finished))
        self.items.sort(key=lambda h: -h.score)
        del self.items[self.width :]

    def done(self, best_live_logprob: float, length: int) -> bool:
        """True when no live beam can still beat the worst kept hypothesis.

        Log-probabilities only fall as tokens are added, so with
        ``length_penalty=0`` this is exact; otherwise it is the usual
        heuristic (the live beam judged at its current length).
        """
        if len(self.items) < self.width:
            return False
        return self.items[-1].score >= ranked(best_live_logprob, length + 1,
                                              self.length_penalty)
