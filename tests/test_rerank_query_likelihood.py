"""Query-likelihood reranking (UPR): log p(question | passage) under the generator."""

from __future__ import annotations

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.rerank import ScoreReranker
from ragmix.rerank.query_likelihood import QueryLikelihoodScorer, question_prompt
from ragmix.testing import ScriptedGenerator, tiny_random_generator
from reranker_contract import QUERY, TEXTS, ScorerContract, hits


@pytest.fixture(scope="module")
def generator():
    return tiny_random_generator(seed=3)


class TestQueryLikelihood(ScorerContract):
    @pytest.fixture
    def scorer(self, generator):
        return QueryLikelihoodScorer(generator, batch_size=2)


def test_score_is_the_generators_own_log_probability_of_the_question(generator):
    scores = QueryLikelihoodScorer(generator, batch_size=3).score(QUERY, TEXTS)
    own = [generator.token_logprobs([question_prompt(t)], [QUERY])[0].sum() for t in TEXTS]
    np.testing.assert_allclose(scores, own, rtol=1e-5, atol=1e-5)
    assert (scores < 0).all()


def test_long_passages_are_cut_to_their_first_tokens(generator):
    long = "Lake Varno is deep. " * 200
    cut = QueryLikelihoodScorer(generator, max_passage_tokens=12)
    head = generator.decode(generator.encode_answer(long)[:12])
    np.testing.assert_allclose(cut.score(QUERY, [long]),
                               [generator.token_logprobs([question_prompt(head)], [QUERY])[0].sum()],
                               rtol=1e-5, atol=1e-5)


def test_reranked_hits_follow_the_question_likelihood(generator):
    scorer = QueryLikelihoodScorer(generator)
    out = ScoreReranker(scorer).rerank(QUERY, hits(), 5)
    expect = np.argsort(-scorer.score(QUERY, TEXTS), kind="stable")
    assert [h.chunk_id for h in out] == [100 + int(i) for i in expect]
    assert scorer.name == "query-likelihood:tiny-random-llama"


def test_bad_settings_and_generators_are_refused(generator):
    with pytest.raises(BadInputError, match="scoring generator"):
        QueryLikelihoodScorer(ScriptedGenerator("x"))
    with pytest.raises(BadInputError, match="batch_size must be an integer > 0, got 0"):
        QueryLikelihoodScorer(generator, batch_size=0)
    with pytest.raises(BadInputError, match="query must not be empty"):
        QueryLikelihoodScorer(generator).score("  ", TEXTS)


@pytest.mark.models
def test_smollm2_prefers_the_passage_that_answers():
    from ragmix.rerank import load_scorer

    scorer = load_scorer("query-likelihood", dtype="float32")
    scores = scorer.score("How deep is Lake Varno?", [
        "Bread is made from flour, water and yeast.",
        "Lake Varno is 310 metres deep, the deepest lake in the region."])
    assert scores[1] > scores[0]
