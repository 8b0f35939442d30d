"""MarginalRAG: retrieval prior, decoding, posterior provenance, on a tiny random LM."""

from __future__ import annotations

import math

import pytest
from tiny_models import minilm_tokenizer, tiny_llama

from ragmix.errors import BadInputError
from ragmix.generation.prompt import build_passage_prompt
from ragmix.marginal import math as rm
from ragmix.marginal.model import MarginalRAG
from ragmix.marginal.scoring import score_passages, with_end
from ragmix.types import Hit

TEXTS = ["the lake varno lies north of kelm", "paris is the capital of france",
         "rivers and the towns that lie on their shores"]


class FakeSearcher:
    def __init__(self, scores=(2.0, 1.0, 0.5)) -> None:
        self.hits = [Hit(i, f"d{i}", t, s, 0.0, i + 1) for i, (t, s) in
                     enumerate(zip(TEXTS, scores))]
        self.calls: list[tuple[str, int, str]] = []

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        self.calls.append((query, k, mode))
        return self.hits[:k]


@pytest.fixture(scope="module")
def gen(torch):
    from ragmix.generation import HFGenerator

    tok = minilm_tokenizer()
    return HFGenerator(tiny_llama(torch, tok), tok, name="tiny")


def _exact_posterior(torch, gen, hits, question, answer_tokens, finished, tau):
    prompts = [gen.encode_prompt(build_passage_prompt(question, h)) for h in hits]
    answer = with_end(gen, answer_tokens) if finished else list(answer_tokens)
    with torch.inference_mode():
        s = score_passages(gen, [prompts], [answer])
    prior = rm.doc_logprobs(torch.tensor([h.score for h in hits], dtype=torch.float64), tau)
    return s, prior, rm.sequence_posterior(s.token_lp.double(), s.mask, prior[None])[0].exp()


@pytest.mark.parametrize("mode", ["rag-sequence", "rag-token"])
def test_answers_carry_prior_posterior_and_token_posteriors(torch, gen, mode) -> None:
    searcher = FakeSearcher()
    rag = MarginalRAG(searcher, gen, mode=mode, k=3, retrieval="bm25", tau=2.0,
                      max_new_tokens=5)
    answer = rag.ask("  where is varno? ", explain=True)
    assert searcher.calls == [("where is varno?", 3, "bm25")]
    assert answer.mode == mode and len(answer.hits) == 3
    want_prior = [math.exp(s / 2) for s in (2.0, 1.0, 0.5)]
    assert answer.prior == pytest.approx([p / sum(want_prior) for p in want_prior])
    assert sum(answer.posterior) == pytest.approx(1.0)
    assert len(answer.tokens) == len(answer.token_posteriors) > 0
    assert all(sum(row) == pytest.approx(1.0) for row in answer.token_posteriors)
    assert answer.sources[0] is answer.hits[max(range(3), key=lambda i: answer.posterior[i])]


def test_rag_sequence_posterior_is_bayes_rule_on_teacher_forced_scores(torch, gen) -> None:
    searcher = FakeSearcher()
    rag = MarginalRAG(searcher, gen, mode="rag-sequence", k=3, max_new_tokens=4, beams=2,
                      tau=1.0)
    answer = rag.ask("where is varno?", explain=True)
    tokens = gen.encode_answer(answer.text)  # re-encodes to the decoded ids (WordPiece)
    # Beam search ends a hypothesis with the end token at step len(tokens) < max_new_tokens
    # and cuts the live ones off at exactly max_new_tokens tokens, so the length says which
    # this answer is, and so whether its score includes the end token.
    finished = len(tokens) < rag.max_new_tokens
    s, prior, post = _exact_posterior(torch, gen, searcher.hits, "where is varno?", tokens,
                                      finished, 1.0)
    # The posterior is nearly one-hot (the tiny LM's logits are peaked): compare logs, so
    # the small entries count and scoring with or without the end token tells apart.
    assert [math.log(p) for p in answer.posterior] == pytest.approx(post.log().tolist(),
                                                                    abs=1e-3)
    forced = s.token_lp.double()[0].sum(-1)  # (K,) log p(y | x, z), padding scores 0
    assert answer.logprob == pytest.approx(float((prior + forced).logsumexp(-1)), abs=1e-3)
    # the running posterior after the last answer token (before any end token)
    running = _exact_posterior(torch, gen, searcher.hits, "where is varno?", tokens, False,
                               1.0)[2]
    assert [math.log(p) for p in answer.token_posteriors[-1]] == pytest.approx(
        running.log().tolist(), abs=1e-3)


def test_no_hits_gives_an_empty_answer_and_bad_settings_are_refused(gen) -> None:
    empty = MarginalRAG(FakeSearcher(), gen, k=1)
    empty.retriever.hits = []
    assert empty.ask("anything?").text == ""
    with pytest.raises(BadInputError, match="mode must be one of"):
        MarginalRAG(FakeSearcher(), gen, mode="stuff")
    with pytest.raises(BadInputError, match="tau must be > 0"):
        MarginalRAG(FakeSearcher(), gen, tau=0)
    with pytest.raises(BadInputError, match="beams must be an integer"):
        MarginalRAG(FakeSearcher(), gen, beams=0)
    with pytest.raises(BadInputError, match="needs a local Hugging Face generator"):
        MarginalRAG(FakeSearcher(), object())
    with pytest.raises(BadInputError, match="non-empty string"):
        MarginalRAG(FakeSearcher(), gen).ask("  ")


def test_default_prior_temperature_follows_the_retrieval_mode(gen) -> None:
    taus = {mode: MarginalRAG(FakeSearcher(), gen, retrieval=mode).tau
            for mode in ("dense", "bm25", "hybrid")}
    assert taus == {"dense": 0.05, "bm25": 1.0, "hybrid": 0.1}
    assert MarginalRAG(FakeSearcher(), gen, retrieval="dense", tau=0.5).tau == 0.5
