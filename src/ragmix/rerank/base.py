"""The second stage of retrieval: a reranker re-scores the first stage's candidates.

Two seams. A :class:`PassageScorer` is the model: ``score(query, texts)`` says
how well each passage answers the query (a cross-encoder, late interaction,
query likelihood). A :class:`Reranker` turns scores into a new ranking of
:class:`~ragmix.types.Hit` values; :class:`ScoreReranker` is the one ragmix
builds over any scorer, optionally fusing the reranker's scores with the first
stage's (min-max weighted, as hybrid retrieval fuses dense and BM25).
:class:`RerankedSearch` puts a reranker behind the ``search(query, k, *, mode)``
that RAG, MarginalRAG and the evaluation functions call.

>>> from ragmix.types import Hit
>>> class Overlap:  # a toy scorer: words in common
...     name = "overlap"
...     def score(self, query, texts):
...         words = set(query.split())
...         return np.array([len(words & set(t.split())) for t in texts], dtype=np.float64)
>>> hits = [Hit(chunk_id=i, doc_id=str(i), text=t, score=s, prob=0.0, rank=i + 1)
...         for i, (t, s) in enumerate([("paris is big", 2.0), ("lake varno is deep", 1.0)])]
>>> [(h.chunk_id, h.score, h.retrieval_score) for h in ScoreReranker(Overlap()).rerank(
...     "how deep is lake varno", hits, 2)]
[(1, 4.0, 1.0), (0, 1.0, 2.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np

from ragmix.errors import BadInputError
from ragmix.retrieval.fusion import softmax_probs, weighted_fusion
from ragmix.types import Hit, ScoredId


@runtime_checkable
class PassageScorer(Protocol):
    """A relevance model: one score per passage for a query, higher is better."""

    @property
    def name(self) -> str: ...

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores of ``texts`` for ``query``, shape (len(texts),), float64; batched inside."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Re-ranks retrieved hits: the best ``k`` of ``hits`` for ``query``, best first.

    Returned hits keep their ids, text, source and offsets; ``score`` is the
    reranker's, ``retrieval_score`` the first stage's, ``rank`` is renumbered
    and ``prob`` is softmax(score) over the returned hits.
    """

    @property
    def name(self) -> str: ...

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


class ScoreReranker:
    """A :class:`Reranker` over a :class:`PassageScorer`.

    ``weight`` is the reranker's share when its scores are fused with the first
    stage's: 1.0 (the default) ranks by the reranker alone; below 1 both are
    min-max normalised over the candidates and mixed, ``weight * rerank +
    (1 - weight) * first stage``.
    """

    def __init__(self, scorer: PassageScorer, *, weight: float = 1.0) -> None:
        if not (isinstance(weight, (int, float)) and 0.0 <= weight <= 1.0):
            raise BadInputError(f"rerank weight must be in [0, 1], got {weight!r}")
        self.scorer, self.weight = scorer, float(weight)

    @property
    def name(self) -> str:
        return self.scorer.name if self.weight == 1.0 else f"{self.scorer.name}@{self.weight:g}"

    @property
    def tau(self) -> float:
        """The prior temperature p(z|x) = softmax(score / tau) suits: hybrid's 0.1 for fused
        scores in [0, 1], else the scorer's own (``scorer.tau``, default 1: logits, log-probs)."""
        return 0.1 if self.weight < 1.0 else float(getattr(self.scorer, "tau", 1.0))

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if k <= 0:
            raise BadInputError(f"k must be > 0, got {k}")
        if not hits:
            return []
        scores = np.asarray(self.scorer.score(query, [h.text for h in hits]), dtype=np.float64)
        if scores.shape != (len(hits),):
            raise ValueError(f"{self.scorer.name} returned scores of shape {scores.shape} "
                             f"for {len(hits)} passages")
        if not np.isfinite(scores).all():
            raise ValueError(f"{self.scorer.name} returned a non-finite score")
        if self.weight < 1.0:
            scores = _fused(hits, scores, self.weight)
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))[:k]
        return renumbered([hits[i] for i in order], [float(scores[i]) for i in order])


def _fused(hits: Sequence[Hit], scores: np.ndarray, weight: float) -> np.ndarray:
    """Min-max weighted fusion of the reranker's ``scores`` and the hits' own, per hit."""
    first = [ScoredId(i, h.score) for i, h in enumerate(hits)]
    second = [ScoredId(i, float(s)) for i, s in enumerate(scores)]
    fused = weighted_fusion([second, first], weights=[weight, 1.0 - weight])
    out = np.zeros(len(hits))
    for item in fused:
        out[item.chunk_id] = item.score
    return out


def renumbered(hits: Sequence[Hit], scores: Sequence[float]) -> list[Hit]:
    """``hits`` with new scores, ranks 1.., p(z|x) = softmax(scores), first-stage scores kept."""
    probs = softmax_probs(np.asarray(scores, dtype=np.float64)) if hits else []
    return [
        replace(h, score=float(s), prob=float(p), rank=rank,
                retrieval_score=h.score if h.retrieval_score is None else h.retrieval_score)
        for rank, (h, s, p) in enumerate(zip(hits, scores, probs), start=1)
    ]


class RerankedSearch:
    """A searcher whose top ``depth`` hits are reranked: ``search(query, k, *, mode)``.

    Asked for more than ``depth`` hits, the rest follow in first-stage order,
    each scored one below the hit before it, so scores still fall with rank.
    """

    def __init__(self, searcher: object, reranker: Reranker, *, depth: int = 50) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise BadInputError(f"rerank depth must be an integer > 0, got {depth!r}")
        self.searcher, self.reranker, self.depth = searcher, reranker, depth

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        hits = self.searcher.search(query, max(k, self.depth), mode=mode)  # type: ignore[attr-defined]
        head = self.reranker.rerank(query, hits[: self.depth], min(k, self.depth))
        if k <= self.depth:
            return head
        rest = hits[self.depth:k]
        floor = min((h.score for h in head), default=0.0)
        scores = [h.score for h in head] + [floor - n for n in range(1, len(rest) + 1)]
        return renumbered([*head, *rest], scores)
