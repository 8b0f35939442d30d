"""Watching the retriever while it learns from the generator: is it collapsing?

The RAG paper (Appendix) saw retrieval "collapse" in some tasks: the
retriever learns to return the same passages whatever the question, and the
generator learns to ignore them. Signals over the last ``window`` steps: the
entropy of p(z|x) (near 0: one passage takes all the mass), how often the
top-1 passage differs from the untrained encoder's, answer recall@k (do the
passages still contain the answer?) and how many distinct top-1 passages the
window's questions get, against the untrained encoder on the same questions.
A warning is raised when recall falls below half its starting value or the
distinct share halves.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


def entropy(probs: Sequence[float]) -> float:
    """Shannon entropy in nats.

    >>> round(entropy([0.5, 0.5]), 4)
    0.6931
    """
    return -sum(p * math.log(p) for p in probs if p > 0)


@dataclass(frozen=True)
class RetrievalStats:
    """Means over the window; ``distinct_top1`` is distinct top-1 passages per distinct question."""

    entropy: float
    top1_changed: float
    answer_recall: float
    distinct_top1: float
    warning: str | None = None


@dataclass(frozen=True)
class _Row:
    question: int
    entropy: float
    top1: int
    initial_top1: int
    has_answer: bool


class CollapseMonitor:
    """Call ``add`` for each question of a step, then ``end_step``; ``stats()`` reads the window."""

    def __init__(self, window: int) -> None:
        self._steps: deque[list[_Row]] = deque(maxlen=window)
        self._current: list[_Row] = []
        self._start_recall: float | None = None

    def add(self, question: int, probs: Sequence[float], top1: int, initial_top1: int,
            has_answer: bool) -> None:
        self._current.append(_Row(question, entropy(probs), top1, initial_top1, has_answer))

    def end_step(self) -> None:
        self._steps.append(self._current)
        self._current = []
        if self._start_recall is None and len(self._steps) == self._steps.maxlen:
            self._start_recall = self._mean(lambda r: r.has_answer)

    def _rows(self) -> list[_Row]:
        return [r for step in self._steps for r in step]

    def _mean(self, value) -> float:
        rows = self._rows()
        return sum(value(r) for r in rows) / len(rows) if rows else 0.0

    def stats(self) -> RetrievalStats:
        rows = self._rows()
        if not rows:
            return RetrievalStats(0.0, 0.0, 0.0, 0.0)
        questions = len({r.question for r in rows})
        distinct = len({r.top1 for r in rows})
        initial = len({r.initial_top1 for r in rows})
        recall = self._mean(lambda r: r.has_answer)
        warning = None
        if self._start_recall and recall < 0.5 * self._start_recall:
            warning = (f"retrieval may be collapsing: answer recall@k fell from "
                       f"{self._start_recall:.2f} to {recall:.2f}")
        elif questions >= 20 and distinct < 0.5 * initial:
            warning = (f"retrieval may be collapsing: the last {questions} questions get "
                       f"{distinct} distinct top-1 passages, the untrained encoder {initial}")
        return RetrievalStats(self._mean(lambda r: r.entropy), self._mean(
            lambda r: r.top1 != r.initial_top1), recall, distinct / questions, warning)
