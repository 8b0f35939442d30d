"""The contract every reranker's scorer passes, as a test mixin.

A scorer's test module subclasses :class:`ScorerContract` and supplies a
``scorer`` fixture: a :class:`ragmix.rerank.PassageScorer` (a tiny random model
is enough: the contract checks shapes, batching and bookkeeping, not quality).
The reranking built over it (:class:`ragmix.rerank.ScoreReranker`) is checked
too, so a scorer that passes can stand behind ``--rerank``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.rerank import PassageScorer, ScoreReranker
from ragmix.types import Hit

QUERY = "how deep is lake varno?"
TEXTS = ["Lake Varno is 310 metres deep.", "Kelm lies on the shore of Lake Varno.",
         "Paris is the capital of France.", "The deepest lake in the region is Varno.",
         "Bread is made from flour, water and yeast."]


def hits(texts=TEXTS) -> list[Hit]:
    """First-stage hits with falling scores, offsets and sources to carry through."""
    return [Hit(chunk_id=100 + i, doc_id=f"d{i}", text=t, score=10.0 - i, prob=0.2, rank=i + 1,
                title=f"T{i}", source=f"/data/d{i}.txt", start=3 * i, end=3 * i + len(t))
            for i, t in enumerate(texts)]


class ScorerContract:
    @pytest.fixture
    def scorer(self) -> PassageScorer:
        raise NotImplementedError("a scorer test module supplies the scorer fixture")

    def test_is_a_passage_scorer(self, scorer):
        assert isinstance(scorer, PassageScorer)
        assert isinstance(scorer.name, str) and scorer.name

    def test_one_finite_float_per_passage(self, scorer):
        scores = np.asarray(scorer.score(QUERY, TEXTS))
        assert scores.shape == (len(TEXTS),)
        assert np.isfinite(scores).all()

    def test_empty_list_gives_empty_scores(self, scorer):
        assert np.asarray(scorer.score(QUERY, [])).shape == (0,)

    def test_scores_do_not_depend_on_the_batch(self, scorer):
        together = np.asarray(scorer.score(QUERY, TEXTS))
        alone = np.array([np.asarray(scorer.score(QUERY, [t]))[0] for t in TEXTS])
        np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)

    def test_deterministic(self, scorer):
        np.testing.assert_array_equal(np.asarray(scorer.score(QUERY, TEXTS)),
                                      np.asarray(scorer.score(QUERY, TEXTS)))

    def test_rerank_keeps_hits_and_orders_by_score(self, scorer):
        first = hits()
        out = ScoreReranker(scorer).rerank(QUERY, first, 3)
        assert len(out) == 3
        assert [h.rank for h in out] == [1, 2, 3]
        scores = [h.score for h in out]
        assert scores == sorted(scores, reverse=True)
        assert abs(sum(h.prob for h in out) - 1.0) < 1e-9
        by_id = {h.chunk_id: h for h in first}
        for h in out:
            old = by_id[h.chunk_id]
            assert (h.doc_id, h.text, h.title, h.source, h.start, h.end) == (
                old.doc_id, old.text, old.title, old.source, old.start, old.end)
            assert h.retrieval_score == old.score

    def test_rerank_of_nothing_is_nothing(self, scorer):
        assert ScoreReranker(scorer).rerank(QUERY, [], 5) == []

    def test_rerank_rejects_bad_k(self, scorer):
        with pytest.raises(BadInputError, match="k must be > 0"):
            ScoreReranker(scorer).rerank(QUERY, hits(), 0)
