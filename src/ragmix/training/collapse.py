"""Watching the retriever while it learns from the generator: is it collapsing?

The RAG paper (Appendix) saw retrieval "collapse" in some tasks: the
retriever learns to return the same passages whatever the question, the
generator learns to ignore them. Three signals, over a sliding window:
the entropy of p(z|x) (near 0: one passage takes all the mass), how often the
top-1 passage differs from the untrained encoder's, and answer recall@k
(whether the retrieved passages still contain the answer). A warning is
raised when recall falls below half its starting value or the top-1
passages stop depending on the question.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


def entropy(probs: Sequence[float]) -> float:
    """Shannon entropy in nats.

    >>> round(entropy([0.5, 0.5]), 4)
    0.6931
    """
    import math

    return -sum(p * math.log(p) for p in probs if p > 0)


@dataclass(frozen=True)
class RetrievalStats:
    """Window averages: entropy of p(z|x), top-1 changed, answer recall@k, distinct top-1 share."""

    entropy: float
    top1_changed: float
    answer_recall: float
    distinct_top1: float
    warning: str | None = None


class CollapseMonitor:
    """Feed one record per question; ``stats()`` averages the last ``window`` steps."""

    def __init__(self, window: int) -> None:
        self._rows: deque[tuple[float, bool, bool, int]] = deque(maxlen=window * 64)
        self._window = window
        self._start_recall: float | None = None
        self._seen = 0

    def add(self, probs: Sequence[float], top1: int, initial_top1: int, has_answer: bool) -> None:
        self._rows.append((entropy(probs), top1 != initial_top1, has_answer, top1))
        self._seen += 1

    def stats(self) -> RetrievalStats:
        rows = list(self._rows)
        if not rows:
            return RetrievalStats(0.0, 0.0, 0.0, 0.0)
        n = len(rows)
        recall = sum(r[2] for r in rows) / n
        if self._start_recall is None and self._seen >= self._window:
            self._start_recall = recall
        stats = RetrievalStats(
            entropy=sum(r[0] for r in rows) / n, top1_changed=sum(r[1] for r in rows) / n,
            answer_recall=recall, distinct_top1=len({r[3] for r in rows}) / n)
        warning = None
        if self._start_recall and recall < 0.5 * self._start_recall:
            warning = (f"retrieval may be collapsing: answer recall@k fell from "
                       f"{self._start_recall:.2f} to {recall:.2f}")
        elif n >= 20 and stats.distinct_top1 < 0.2:
            warning = (f"retrieval may be collapsing: only {stats.distinct_top1:.0%} of questions "
                       "get a distinct top-1 passage")
        return RetrievalStats(stats.entropy, stats.top1_changed, stats.answer_recall,
                              stats.distinct_top1, warning)
