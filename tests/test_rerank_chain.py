"""Rerankers in turn: the spec, the chain against nested reranked searches, weights and models.

The CLI and ``ragmix serve`` side is in test_cli_two_stage.py."""

from __future__ import annotations

import numpy as np
import pytest
from reranker_contract import QUERY, TEXTS, hits

from ragmix.errors import BadInputError
from ragmix.rerank import RerankChain, RerankedSearch, ScoreReranker, parse_rerank_spec
from ragmix.rerank.chain import RerankStage, chain_models, with_weight


class Lengths:
    """Shorter passages score higher: an order the first stage does not give."""

    name = "short"

    def score(self, query, texts):
        return -np.array([len(t) for t in texts], dtype=np.float64)


class Overlap:
    """Words shared with the query."""

    name = "overlap"
    tau = 0.5

    def score(self, query, texts):
        words = set(query.lower().split())
        return np.array([len(words & set(t.lower().split())) for t in texts], dtype=np.float64)


class Fixed:
    """A first stage that returns the same hits for any query."""

    def __init__(self, found):
        self.found = found

    def search(self, query, k, *, mode):
        return self.found[:k]


def test_spec_names_each_reranker_with_its_weight():
    assert parse_rerank_spec("late-interaction") == (RerankStage("late-interaction", 1.0),)
    assert parse_rerank_spec(" query-likelihood@0.7 , late-interaction@0.3") == (
        RerankStage("query-likelihood", 0.7), RerankStage("late-interaction", 0.3))


@pytest.mark.parametrize("spec, named", [
    ("colbert", "'colbert'"), ("late-interaction@x", "'x'"), ("late-interaction@1.5", "'1.5'"),
    ("query-likelihood,", "''"), ("", "''")])
def test_a_bad_spec_is_refused_naming_the_bad_part_and_the_form(spec, named):
    with pytest.raises(BadInputError) as info:
        parse_rerank_spec(spec)
    said = str(info.value)
    assert named in said and "query-likelihood@0.7,late-interaction@0.3" in said


def test_the_chain_ranks_as_nested_reranked_searches_do():
    first = hits()
    one, two = ScoreReranker(Lengths(), weight=0.7), ScoreReranker(Overlap(), weight=0.3)
    nested = RerankedSearch(RerankedSearch(Fixed(first), one, depth=5), two, depth=5)
    chained = RerankedSearch(Fixed(first), RerankChain([one, two]), depth=5)
    expect, got = nested.search(QUERY, 3, mode="hybrid"), chained.search(QUERY, 3, mode="hybrid")
    assert [(h.chunk_id, h.score, h.rank) for h in got] == [
        (h.chunk_id, h.score, h.rank) for h in expect]
    # by hand: 0.3 overlap + 0.7 (0.7 length + 0.3 first stage), each min-max over the five
    def minmax(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.min()) / (x.max() - x.min())
    stage1 = 0.7 * minmax(Lengths().score(QUERY, TEXTS)) + 0.3 * minmax([h.score for h in first])
    final = 0.3 * minmax(Overlap().score(QUERY, TEXTS)) + 0.7 * minmax(stage1)
    assert [h.chunk_id for h in got] == [100 + i for i in np.argsort(-final, kind="stable")[:3]]
    np.testing.assert_allclose([h.score for h in got], np.sort(final)[::-1][:3])


def test_the_chain_keeps_the_first_stage_and_passages_and_takes_the_last_tau():
    chain = RerankChain([ScoreReranker(Lengths()), ScoreReranker(Overlap())])
    got = chain.rerank(QUERY, hits(), 2)
    by_id = {h.chunk_id: h for h in hits()}
    assert len(got) == 2 and [h.rank for h in got] == [1, 2]
    for h in got:
        before = by_id[h.chunk_id]
        assert (h.text, h.source, h.start, h.end, h.retrieval_score) == (
            before.text, before.source, before.start, before.end, before.score)
    assert chain.name == "short,overlap" and chain.tau == 0.5
    assert chain.rerank(QUERY, [], 3) == []


def test_a_chain_refuses_nothing_to_chain_and_a_bad_k():
    with pytest.raises(BadInputError, match="at least one"):
        RerankChain([])
    with pytest.raises(BadInputError, match="not a Reranker"):
        RerankChain([Lengths()])
    with pytest.raises(BadInputError, match="k must be > 0"):
        RerankChain([ScoreReranker(Lengths())]).rerank(QUERY, hits(), 0)


def test_a_weight_option_applies_to_one_reranker_without_its_own():
    assert with_weight("late-interaction", 0.5) == "late-interaction@0.5"
    assert with_weight("late-interaction@0.3,query-likelihood", 1.0).endswith("query-likelihood")
    for spec in ("late-interaction@0.3", "late-interaction,query-likelihood"):
        with pytest.raises(BadInputError, match="NAME@WEIGHT"):
            with_weight(spec, 0.5)


def test_models_are_one_per_reranker_and_a_cross_encoder_needs_one():
    assert chain_models("late-interaction,query-likelihood", ["default", "m"]) == [
        (RerankStage("late-interaction"), None), (RerankStage("query-likelihood"), "m")]
    with pytest.raises(BadInputError, match="2 reranker.* 1 --rerank-model"):
        chain_models("late-interaction,query-likelihood", ["m"])
    with pytest.raises(BadInputError, match="ragmix train reranker"):
        chain_models("late-interaction,cross-encoder@0.5")


def test_a_weight_reaches_the_reranker_exactly_and_spaces_are_forgiven():
    (stage,) = parse_rerank_spec(with_weight("late-interaction", 0.123456789))
    assert stage.weight == 0.123456789
    assert parse_rerank_spec("late-interaction @0.3 , query-likelihood") == (
        RerankStage("late-interaction", 0.3), RerankStage("query-likelihood", 1.0))
