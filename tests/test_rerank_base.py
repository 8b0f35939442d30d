"""The reranking seam: ScoreReranker, fusion with the first stage, RerankedSearch, Collection.search."""

from __future__ import annotations

import numpy as np
import pytest

from ragmix.encoders import HashingEncoder
from ragmix.errors import BadInputError
from ragmix.rerank import RerankedSearch, ScoreReranker, load_scorer
from ragmix.store import Collection
from reranker_contract import QUERY, ScorerContract, hits


class Overlap:
    """Words shared with the query: a deterministic scorer with no model."""

    name = "overlap"

    def __init__(self):
        self.calls = []

    def score(self, query, texts):
        self.calls.append(len(texts))
        words = set(query.lower().strip("?").split())
        return np.array([len(words & set(t.lower().strip(".").split())) for t in texts],
                        dtype=np.float64)


class TestOverlapScorer(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return Overlap()


def test_rerank_orders_by_the_scorer_and_ties_keep_first_stage_order():
    out = ScoreReranker(Overlap()).rerank(QUERY, hits(), 5)
    assert [h.chunk_id for h in out] == [100, 103, 101, 102, 104]
    assert [h.score for h in out] == [4.0, 3.0, 2.0, 1.0, 1.0]
    tied = ScoreReranker(_Scores([1.0, 2.0, 1.0, 2.0, 1.0])).rerank(QUERY, hits(), 5)
    assert [h.chunk_id for h in tied] == [101, 103, 100, 102, 104]


def test_weight_zero_keeps_the_first_stage_and_weight_mixes_minmax_scores():
    first = hits()
    assert [h.chunk_id for h in ScoreReranker(Overlap(), weight=0.0).rerank(QUERY, first, 5)] == \
        [h.chunk_id for h in first]
    mixed = ScoreReranker(Overlap(), weight=0.5).rerank(QUERY, first, 5)
    # first stage 10..6 -> 1, .75, .5, .25, 0; overlap 4,2,1,3,1 -> 1, 1/3, 0, 2/3, 0
    expect = {100: 1.0, 101: 0.541667, 102: 0.25, 103: 0.458333, 104: 0.0}
    assert {h.chunk_id: round(h.score, 6) for h in mixed} == expect
    assert ScoreReranker(Overlap(), weight=0.5).name == "overlap@0.5"


@pytest.mark.parametrize("weight", [-0.1, 1.5, "1"])
def test_bad_weight_is_refused(weight):
    with pytest.raises(BadInputError, match="weight"):
        ScoreReranker(Overlap(), weight=weight)


class _Scores:
    name = "bad"

    def __init__(self, scores):
        self.scores = scores

    def score(self, query, texts):
        return np.asarray(self.scores)


@pytest.mark.parametrize("scores", [[1.0], [1.0, np.nan, 0, 0, 0]])
def test_a_scorer_that_breaks_its_contract_is_named(scores):
    with pytest.raises(ValueError, match="bad"):
        ScoreReranker(_Scores(scores)).rerank(QUERY, hits(), 2)


class _Fixed:
    def __init__(self, found):
        self.found, self.asked = found, []

    def search(self, query, k, *, mode):
        self.asked.append((k, mode))
        return self.found[:k]


def test_reranked_search_fetches_the_depth_and_reranks_only_it():
    first = hits()
    inner = _Fixed(first)
    scorer = Overlap()
    out = RerankedSearch(inner, ScoreReranker(scorer), depth=3).search(QUERY, 2, mode="bm25")
    assert inner.asked == [(3, "bm25")] and scorer.calls == [3]
    assert [h.chunk_id for h in out] == [100, 101]


def test_reranked_search_deeper_than_depth_appends_the_rest_with_falling_scores():
    out = RerankedSearch(_Fixed(hits()), ScoreReranker(Overlap()), depth=3).search(QUERY, 5, mode="x")
    assert [h.chunk_id for h in out] == [100, 101, 102, 103, 104]
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5
    assert [h.retrieval_score for h in out] == [10.0, 9.0, 8.0, 7.0, 6.0]
    assert abs(sum(h.prob for h in out) - 1) < 1e-9


@pytest.mark.parametrize("depth", [0, -1, 2.5, True])
def test_bad_depth_is_refused(depth):
    with pytest.raises(BadInputError, match="depth"):
        RerankedSearch(_Fixed([]), ScoreReranker(Overlap()), depth=depth)


def test_collection_search_and_searcher_rerank(tmp_path):
    col = Collection.create(tmp_path / "col", encoder=HashingEncoder(dim=64))
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(["Paris is the capital of France.", "Lake Varno is 310 metres deep.",
                              "Kelm lies on the shore of Lake Varno."]):
        (docs / f"{i}.txt").write_text(text)
    col.add([docs])
    plain = col.search("lake varno depth deep", 3, mode="bm25")
    reranked = col.search("lake varno depth deep", 2, mode="bm25", rerank=ScoreReranker(Overlap()),
                          rerank_depth=3)
    assert reranked[0].text == "Lake Varno is 310 metres deep."
    assert {h.retrieval_score for h in reranked} <= {h.score for h in plain}
    via = col.searcher(rerank=ScoreReranker(Overlap()), rerank_depth=3)
    assert [h.chunk_id for h in via.search("lake varno depth deep", 2, mode="bm25")] == \
        [h.chunk_id for h in reranked]
    col.close()


def test_unknown_reranker_and_a_cross_encoder_without_a_model_say_what_to_do():
    with pytest.raises(BadInputError, match="unknown reranker 'colbert'"):
        load_scorer("colbert")
    with pytest.raises(BadInputError, match="ragmix train reranker"):
        load_scorer("cross-encoder")
