"""RAG-Token and RAG-Sequence decoding on tiny random models, checked by teacher forcing."""

from __future__ import annotations

import math

import pytest
from tiny_models import tiny_bart, tiny_llama

from ragmix.marginal import math as rm
from ragmix.marginal.rag_sequence import rag_sequence_decode
from ragmix.marginal.rag_token import rag_token_decode
from ragmix.marginal.scoring import score_passages, with_end
from ragmix.generation.decode_state import DecodeState

PASSAGES = ["the lake varno lies north of kelm", "paris is the capital of france",
            "a much longer passage about rivers and the towns that lie on their shores",
            "hi"]
QUESTION = "where is lake varno?"


@pytest.fixture(scope="module", params=["llama", "bart"])
def gen(request, torch, tokenizer):
    from ragmix.generation import HFGenerator

    model = (tiny_llama if request.param == "llama" else tiny_bart)(torch, tokenizer)
    return HFGenerator(model, tokenizer, name=request.param)


def _prompts(gen, k: int = 4) -> list[list[int]]:
    return [gen.encode_prompt(f"{p} [SEP] {QUESTION}") for p in PASSAGES[:k]]


def _prior(torch, k: int = 4):
    return rm.doc_logprobs(torch.tensor([1.0, 0.4, -0.3, 0.2][:k], dtype=torch.float64))


def _forced(gen, prompts, tokens, finished):
    """Teacher-forced log p(y_t | x, z, y_<t) under every passage: (1, K, T)."""
    answer = with_end(gen, tokens) if finished else list(tokens)
    with __import__("torch").inference_mode():
        return score_passages(gen, [prompts], [answer], full=True)


def test_score_passages_matches_scoring_each_pair_alone(torch, gen) -> None:
    prompts = _prompts(gen)
    answers = [gen.encode_answer("kelm lake"), gen.encode_answer("north")]
    rows = [prompts, prompts[::-1]]
    with torch.inference_mode():
        scores = score_passages(gen, rows, answers)
        width = max(map(len, answers))
        assert scores.token_lp.shape == (2, 4, width)
        assert scores.mask.sum(-1).tolist() == [len(a) for a in answers]
        for b, answer in enumerate(answers):
            for z, prompt in enumerate(rows[b]):
                alone = gen.score_ids([prompt], [answer]).token_lp[0]
                torch.testing.assert_close(scores.token_lp[b, z, : len(answer)], alone,
                                           atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("left", [True, False])
def test_padding_side_does_not_change_scores(torch, gen, left) -> None:
    prompts = _prompts(gen)
    answer = gen.encode_answer("the lake")
    with torch.inference_mode():
        a = score_passages(gen, [prompts], [answer], left=left).token_lp
        b = score_passages(gen, [prompts], [answer], left=not left).token_lp
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cached_prompt_extension_equals_full_forward(torch, gen) -> None:
    prompts = _prompts(gen)
    conts = [gen.encode_answer(t) for t in ("kelm", "the lake of kelm", "north", "x y")]
    with torch.inference_mode():
        state = DecodeState(gen, prompts)
        got = state.fork(torch.tensor([2, 0, 1, 0])).extend(conts)
        want = gen.score_ids([prompts[i] for i in (2, 0, 1, 0)], conts).token_lp
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rag_token_greedy_follows_the_mixture_argmax(torch, gen) -> None:
    prompts, prior = _prompts(gen), _prior(torch)
    out = rag_token_decode(gen, prompts, prior, max_new_tokens=8)
    tokens = list(out.best.tokens)
    forced = _forced(gen, prompts, tokens, out.best.finished)
    full = forced.full_lp[0]  # (K, T, V)
    mixed = (prior[:, None, None] + full).logsumexp(0)  # (T, V)
    assert mixed.argmax(-1).tolist() == (with_end(gen, tokens) if out.best.finished else tokens)
    want = rm.rag_token_logprob(forced.token_lp, forced.mask, prior[None])[0]
    assert out.best.logprob == pytest.approx(float(want), abs=1e-4)
    # the per-token joint scores are the teacher-forced ones
    torch.testing.assert_close(out.joint.double(), (prior[:, None] + forced.token_lp[0])
                               .T[: len(tokens)].double(), atol=1e-4, rtol=1e-5)


def test_one_passage_rag_token_is_plain_greedy(torch, gen) -> None:
    prompts = _prompts(gen, 1)
    out = rag_token_decode(gen, prompts, _prior(torch, 1), max_new_tokens=6)
    text = gen.generate(f"{PASSAGES[0]} [SEP] {QUESTION}", max_new_tokens=6)
    assert gen.decode(out.best.tokens).strip() == text


def test_rag_token_beam_search_is_consistent(torch, gen) -> None:
    prompts, prior = _prompts(gen), _prior(torch)
    greedy = rag_token_decode(gen, prompts, prior, max_new_tokens=6)
    one = rag_token_decode(gen, prompts, prior, max_new_tokens=6, beams=1)
    assert one.best == greedy.best
    beam = rag_token_decode(gen, prompts, prior, max_new_tokens=6, beams=3)
    scores = [h.score for h in beam.hypotheses]
    assert scores == sorted(scores, reverse=True) and len(beam.hypotheses) <= 3
    forced = _forced(gen, prompts, beam.best.tokens, beam.best.finished)
    want = rm.rag_token_logprob(forced.token_lp, forced.mask, prior[None])[0]
    assert beam.best.logprob == pytest.approx(float(want), abs=1e-4)


@pytest.mark.parametrize("decoding", ["thorough", "fast"])
def test_rag_sequence_scores_are_teacher_forced_marginals(torch, gen, decoding) -> None:
    prompts, prior = _prompts(gen), _prior(torch)
    out = rag_sequence_decode(gen, prompts, prior, max_new_tokens=5, beams=2,
                              decoding=decoding)
    for hyp in out.candidates[:4]:
        forced = _forced(gen, prompts, hyp.tokens, hyp.finished)
        if decoding == "thorough":
            want = rm.rag_sequence_logprob(forced.token_lp, forced.mask, prior[None])[0]
            assert hyp.logprob == pytest.approx(float(want), abs=1e-4)
    got = out.per_passage
    forced = _forced(gen, prompts, out.best.tokens, out.best.finished)
    exact = forced.token_lp[0].sum(-1).double()
    known = got > -math.inf
    assert known.any()
    torch.testing.assert_close(got[known], exact[known], atol=1e-4, rtol=1e-5)
    if decoding == "thorough":
        assert known.all()
    else:  # fast: the marginal counts only the passages whose beams proposed the answer
        want = (prior.double()[known] + exact[known]).logsumexp(0)
        assert out.best.logprob == pytest.approx(float(want), abs=1e-4)
    marginals = [h.logprob for h in out.candidates]
    assert marginals == sorted(marginals, reverse=True)


def test_one_passage_greedy_rag_sequence_is_plain_greedy(torch, gen) -> None:
    prompts = _prompts(gen, 1)
    out = rag_sequence_decode(gen, prompts, _prior(torch, 1), max_new_tokens=6, beams=1)
    text = gen.generate(f"{PASSAGES[0]} [SEP] {QUESTION}", max_new_tokens=6)
    assert gen.decode(out.best.tokens).strip() == text
