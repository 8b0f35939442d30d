"""Property tests for rank fusion and the retriever softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ragmix.errors import BadInputError
from ragmix.retrieval.fusion import reciprocal_rank_fusion, softmax_probs, weighted_fusion
from ragmix.types import ScoredId

FUSIONS = [reciprocal_rank_fusion, weighted_fusion]

# Scores on a 1/8 grid: exact in binary (so min-max is exact) and often tied.
scores = st.integers(-80, 80).map(lambda i: i / 8)


@st.composite
def ranking(draw) -> list[ScoredId]:
    """A retriever's output: unique chunk ids, best first, ties by chunk id."""
    ids = draw(st.lists(st.integers(0, 40), unique=True, max_size=12))
    hits = [ScoredId(i, draw(scores)) for i in ids]
    return sorted(hits, key=lambda h: (-h.score, h.chunk_id))


rankings = st.lists(ranking(), min_size=1, max_size=4)
common = settings(max_examples=100, deadline=None)


@common
@given(rankings=rankings, data=st.data())
@pytest.mark.parametrize("fuse", FUSIONS)
def test_invariant_to_order_of_rankings(fuse, rankings, data):
    permuted = data.draw(st.permutations(rankings))
    assert fuse(permuted) == fuse(rankings)


@common
@given(rankings=rankings, data=st.data())
@pytest.mark.parametrize("fuse", FUSIONS)
def test_invariant_to_order_within_rankings(fuse, rankings, data):
    shuffled = [data.draw(st.permutations(r)) for r in rankings]
    assert fuse(shuffled) == fuse(rankings)


@common
@given(
    rankings=rankings, weights=st.lists(st.integers(1, 5), min_size=4, max_size=4), data=st.data()
)
@pytest.mark.parametrize("fuse", FUSIONS)
def test_weights_travel_with_their_ranking(fuse, rankings, weights, data):
    weights = weights[: len(rankings)]
    order = data.draw(st.permutations(range(len(rankings))))
    permuted = fuse([rankings[i] for i in order], weights=[weights[i] for i in order])
    assert permuted == fuse(rankings, weights=weights)


@common
@given(rankings=rankings)
@pytest.mark.parametrize("fuse", FUSIONS)
def test_every_id_once_sorted_with_ties_by_id(fuse, rankings):
    fused = fuse(rankings)
    ids = [h.chunk_id for h in fused]
    assert sorted(ids) == sorted({h.chunk_id for r in rankings for h in r})
    assert fused == sorted(fused, key=lambda h: (-h.score, h.chunk_id))


@common
@given(r=ranking())
def test_rrf_of_one_ranking_keeps_its_order(r):
    assert [h.chunk_id for h in reciprocal_rank_fusion([r])] == [h.chunk_id for h in r]


@common
@given(r=ranking(), copies=st.integers(1, 4))
@pytest.mark.parametrize("fuse", FUSIONS)
def test_identical_rankings_keep_their_order(fuse, r, copies):
    assert [h.chunk_id for h in fuse([r] * copies)] == [h.chunk_id for h in r]


def test_rrf_worked_example():
    a = [ScoredId(1, 0.9), ScoredId(2, 0.5)]
    b = [ScoredId(2, 12.0), ScoredId(3, 7.0)]
    fused = reciprocal_rank_fusion([a, b])
    assert [h.chunk_id for h in fused] == [2, 1, 3]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    weighted = reciprocal_rank_fusion([a, b], weights=[1, 5])
    assert [h.chunk_id for h in weighted] == [2, 3, 1]  # 1/62 + 5/61, 5/62, 1/61


def test_weighted_fusion_details():
    a = [ScoredId(1, 5.0), ScoredId(2, 3.0), ScoredId(3, 1.0)]
    flat = [ScoredId(7, 0.2), ScoredId(8, 0.2)]
    fused = {h.chunk_id: h.score for h in weighted_fusion([a, flat])}
    assert fused == {1: 0.5, 2: 0.25, 3: 0.0, 7: 0.5, 8: 0.5}  # all-equal list maps to 1.0
    raw = {h.chunk_id: h.score for h in weighted_fusion([a], normalise="none")}
    assert raw == {1: 5.0, 2: 3.0, 3: 1.0}
    assert weighted_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reciprocal_rank_fusion([[]], k=0), "k must be an integer > 0, got 0"),
        (lambda: reciprocal_rank_fusion([[], []], weights=[1.0]), "one weight per ranking"),
        (lambda: weighted_fusion([[]], weights=[-1.0]), "weights must be finite and >= 0"),
        (lambda: weighted_fusion([[]], weights=[0.0]), "must not all be 0"),
        (lambda: weighted_fusion([[]], normalise="zscore"), "normalise must be one of"),
        (lambda: reciprocal_rank_fusion([[ScoredId(1, 1.0), ScoredId(1, 0.5)]]), "appears twice"),
        (lambda: weighted_fusion([[ScoredId(1, math.inf)]]), "score inf"),
        (lambda: reciprocal_rank_fusion([[ScoredId(1, math.nan)]]), "score nan"),
    ],
)
def test_fusion_validation(call, message):
    with pytest.raises(BadInputError, match=message):
        call()


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False)
score_rows = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8), elements=finite
)


@common
@given(s=score_rows, temperature=st.floats(0.05, 20))
def test_softmax_is_a_distribution(s, temperature):
    p = softmax_probs(s, temperature=temperature)
    assert p.shape == s.shape and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)


@common
@given(s=score_rows, shift=st.floats(-1e4, 1e4))
def test_softmax_is_shift_invariant(s, shift):
    np.testing.assert_allclose(softmax_probs(s + shift), softmax_probs(s), atol=1e-9)


def test_softmax_is_stable_for_large_scores():
    p = softmax_probs(np.array([1e4, 1e4 - 1.0, -1e4]))
    np.testing.assert_allclose(p, [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0.0])
    assert softmax_probs(np.array([[1e4, 1e4]]), temperature=1e-3).tolist() == [[0.5, 0.5]]
    assert softmax_probs(np.array([0.0, -np.inf])).tolist() == [1.0, 0.0]
    assert softmax_probs(np.zeros((2, 0))).shape == (2, 0)


@pytest.mark.parametrize(
    ("scores", "temperature", "message"),
    [
        (np.array([1.0]), 0.0, "temperature must be"),
        (np.array([np.nan]), 1.0, "NaN"),
        (np.array([-np.inf, -np.inf]), 1.0, "at least one finite"),
        (np.float64(1.0), 1.0, "at least one axis"),
    ],
)
def test_softmax_validation(scores, temperature, message):
    with pytest.raises(BadInputError, match=message):
        softmax_probs(scores, temperature=temperature)
