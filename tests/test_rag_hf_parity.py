"""Parity with Hugging Face transformers' own RAG (``RagSequenceForGeneration``,
``RagTokenForGeneration``) on a tiny random BART generator.

Both sides get the same generator weights (the very same module), the same
passage prompts and the same retriever scores; no retriever object is needed,
since HF's RAG accepts ``context_input_ids``/``context_attention_mask``/
``doc_scores`` directly.

Hugging Face's conventions, and how ragmix reproduces them:

- Teacher forcing. HF feeds ``labels`` unshifted as the decoder input and
  scores ``labels`` shifted left (a pad appended), so ``labels[0]`` is the
  decoder start and never scored. In ragmix terms that is
  ``decoder_prefix=[labels[0]]`` and the answer ``labels[1:]``, padding removed.
  HF masks every target equal to the pad id, so no real target may be the pad id.
- Prior. Both use log_softmax(doc_scores) over the K passages (tau = 1).
- RAG-Sequence. HF adds log p(z|x) to the *second* scored token rather than
  once per passage; after the sum over tokens that is the same thing, as long
  as that token is not padding. For a target with a single scored token HF
  therefore drops the prior altogether (see the last test); ragmix always
  counts it.
- ``exclude_bos_score`` (RAG-Sequence only, and only when every row's first
  scored token is BOS): HF leaves out the BOS score, which is ragmix with BOS
  moved into the decoder prefix, ``decoder_prefix=[labels[0], labels[1]]``.
- Label smoothing is off (``RagConfig.label_smoothing=0``): HF's smoothing
  term differs from ragmix's by design (see ``rag_sequence_nll``).
- Greedy RAG-Token decoding. HF starts from ``decoder_start_token_id`` and
  applies the generation config's processors; ragmix applies none, so BART's
  default ``forced_eos_token_id`` (and min length, n-gram blocking, repetition
  penalty) are switched off in the ``generate`` call, and both stop on the
  same EOS id.
"""

from __future__ import annotations

import pytest

from ragmix.marginal import math as rm
from ragmix.marginal.rag_token import rag_token_decode
from ragmix.marginal.scoring import score_passages

QUESTIONS = ["where is lake varno?", "who wrote the old book about rivers?"]
PASSAGES = [
    ["the lake varno lies north of kelm", "paris is the capital of france",
     "a much longer passage about rivers and the towns that lie on their shores"],
    ["the book was written by a sailor long ago", "hi", "rivers run to the sea past old towns"],
]
ANSWERS = ["north of kelm", "a sailor from the coast of the sea"]  # different lengths: padding
K = 3
TOL = 1e-4


@pytest.fixture(scope="module")
def models(torch, tokenizer):
    """(ragmix HFGenerator, HF RAG-Sequence, HF RAG-Token), all over one BART module."""
    from transformers import (
        DPRConfig,
        DPRQuestionEncoder,
        RagConfig,
        RagSequenceForGeneration,
        RagTokenForGeneration,
    )

    from ragmix.generation import HFGenerator

    bart = _tiny_bart(torch, tokenizer)
    torch.manual_seed(1)
    question_encoder = DPRQuestionEncoder(DPRConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )).eval()
    config = RagConfig.from_question_encoder_generator_configs(
        question_encoder.config, bart.config, n_docs=K, label_smoothing=0.0,
        reduce_loss=False, exclude_bos_score=False,
    )
    before = {k: v.clone() for k, v in bart.state_dict().items()}
    seq = RagSequenceForGeneration(config, question_encoder=question_encoder,
                                   generator=bart).eval()
    tok = RagTokenForGeneration(config, question_encoder=question_encoder,
                                generator=bart).eval()
    assert seq.generator is bart and tok.generator is bart
    # wrapping must not re-initialise the generator
    assert all(torch.equal(before[k], v) for k, v in bart.state_dict().items())
    gen = HFGenerator(bart, tokenizer, name="tiny-bart")
    return gen, seq, tok


def _tiny_bart(torch, tokenizer):
    """A random BART whose greedy RAG-Token answers vary and sometimes end.

    Unlike ``tiny_models.tiny_bart`` (tied embeddings, large weights: it repeats
    one token forever), untied output embeddings and init_std 0.15 give varied
    tokens with clear argmax margins (> 0.01 in log-prob, far above float
    error), and a bias on EOS makes some answers stop early and some not.
    BART's default ``forced_eos_token_id`` is kept, so the generate call has to
    switch it off.
    """
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=128, init_std=0.15,
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id,
    )
    assert config.forced_eos_token_id is not None
    model = BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, tokenizer.sep_token_id] = 3.75
    return model


def _contexts(torch, tokenizer, k: int):
    """HF's context tensors (B*k, P), right padded, and ragmix's prompts [B][k] without padding."""
    texts = [f"{p} // {q}" for q, row in zip(QUESTIONS, PASSAGES) for p in row[:k]]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert tokenizer.padding_side == "right" and (mask == 0).any()  # padding is exercised
    flat = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    prompts = [flat[b * k:(b + 1) * k] for b in range(len(QUESTIONS))]
    return ids, mask, prompts


def _doc_scores(torch, k: int):
    g = torch.Generator().manual_seed(7)
    return (2.0 * torch.randn(len(QUESTIONS), K, generator=g))[:, :k]  # (B, k)


def _labels(torch, tokenizer, answers, lead: list[int]):
    """labels (B, T): ``lead`` + answer + [SEP], right padded with the pad id."""
    pad, sep = tokenizer.pad_token_id, tokenizer.sep_token_id
    rows = [lead + tokenizer(a, add_special_tokens=False).input_ids + [sep] for a in answers]
    assert all(pad not in r for r in rows)  # HF masks any target equal to the pad id
    width = max(map(len, rows))
    assert min(map(len, rows)) < width  # label padding is exercised
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows]), rows


def _ragmix_scores(torch, gen, prompts, rows, n_prefix: int):
    """Teacher-forced token log-probs the way HF scores ``labels`` (see the module docstring)."""
    prefixes = {tuple(r[:n_prefix]) for r in rows}
    assert len(prefixes) == 1
    with torch.inference_mode():
        return score_passages(gen, prompts, [r[n_prefix:] for r in rows],
                              decoder_prefix=list(prefixes.pop()))


@pytest.mark.parametrize("k", [K, 1])
@pytest.mark.parametrize("exclude_bos", [False, True])
def test_rag_sequence_nll_matches_hf(torch, tokenizer, models, k, exclude_bos) -> None:
    gen, seq, _ = models
    ids, mask, prompts = _contexts(torch, tokenizer, k)
    scores = _doc_scores(torch, k)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # exclude_bos: [decoder start, BOS, answer, EOS]; HF skips the BOS score
    lead = [sep, cls] if exclude_bos else [cls]
    labels, rows = _labels(torch, tokenizer, ANSWERS, lead)
    with torch.no_grad():
        want = seq(context_input_ids=ids, context_attention_mask=mask, doc_scores=scores,
                   labels=labels, n_docs=k, reduce_loss=False,
                   exclude_bos_score=exclude_bos).loss  # (B,)
    assert want.shape == (len(QUESTIONS),)
    forced = _ragmix_scores(torch, gen, prompts, rows, len(lead))
    got = rm.rag_sequence_nll(forced.token_lp, forced.mask, rm.doc_logprobs(scores))
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    if exclude_bos:  # the BOS score is really left out: it is far from 0 on a random model
        with_bos = _ragmix_scores(torch, gen, prompts, rows, 1)
        assert (with_bos.token_lp[:, :, 0].abs() > 1e-2).all()


@pytest.mark.parametrize("k", [K, 1])
def test_rag_token_nll_matches_hf(torch, tokenizer, models, k) -> None:
    gen, _, tok = models
    ids, mask, prompts = _contexts(torch, tokenizer, k)
    scores = _doc_scores(torch, k)
    labels, rows = _labels(torch, tokenizer, ANSWERS, [tokenizer.cls_token_id])
    with torch.no_grad():
        out = tok(context_input_ids=ids, context_attention_mask=mask, doc_scores=scores,
                  labels=labels, n_docs=k, reduce_loss=False, do_marginalize=True)
    forced = _ragmix_scores(torch, gen, prompts, rows, 1)
    prior = rm.doc_logprobs(scores)
    got = rm.rag_token_nll(forced.token_lp, forced.mask, prior)
    torch.testing.assert_close(got, out.loss, atol=TOL, rtol=0)
    # and the marginalised per-token distribution itself: HF's logits (B, T, V) at
    # position t predict labels[t + 1], ragmix's mixture predicts answer token t
    full = _full(torch, gen, prompts, rows)
    mixed = (prior[:, :, None, None] + full).logsumexp(1)  # (B, T-1, V)
    for b, r in enumerate(rows):
        n = len(r) - 1
        torch.testing.assert_close(mixed[b, :n], out.logits[b, :n], atol=TOL, rtol=0)


def _full(torch, gen, prompts, rows):
    with torch.inference_mode():
        return score_passages(gen, prompts, [r[1:] for r in rows], full=True,
                              decoder_prefix=[rows[0][0]]).full_lp


@pytest.mark.parametrize("k", [K, 1])
def test_rag_token_greedy_decoding_matches_hf_generate(torch, tokenizer, models, k) -> None:
    gen, _, tok = models
    ids, mask, prompts = _contexts(torch, tokenizer, k)
    scores = _doc_scores(torch, k)
    sep, pad = tokenizer.sep_token_id, tokenizer.pad_token_id
    assert gen.stop_token_ids == {sep} and gen.decoder_prefix == [sep]
    steps = 12
    with torch.no_grad():
        out = tok.generate(
            context_input_ids=ids, context_attention_mask=mask, doc_scores=scores, n_docs=k,
            num_beams=1, do_sample=False,
            # RagTokenForGeneration.generate builds its own decoder start and never
            # turns max_new_tokens into max_length (it would silently decode to the
            # default max_length of 20), so the budget goes in as max_length: the
            # decoder start plus ``steps`` new tokens, EOS included, as in ragmix.
            max_length=steps + 1, min_length=0,
            decoder_start_token_id=sep, eos_token_id=sep, pad_token_id=pad,
            # processors ragmix does not apply
            forced_bos_token_id=None, forced_eos_token_id=None, no_repeat_ngram_size=0,
            repetition_penalty=1.0,
            return_dict_in_generate=True, output_scores=True,
        )
    # HF's scores are the marginalised log p(y_i | x, y_<i) of every step (B, V)
    step_lp = torch.stack(out.scores, 1)  # (B, steps', V)
    prior = rm.doc_logprobs(scores)
    finished = []
    for b in range(len(QUESTIONS)):
        row = out.sequences[b].tolist()
        assert row[0] == sep  # HF's decoder start
        row = row[1:]
        ended = sep in row
        hf_tokens = row[: row.index(sep)] if ended else row
        mine = rag_token_decode(gen, prompts[b], prior[b], max_new_tokens=steps, beams=1)
        assert list(mine.best.tokens) == hf_tokens
        assert mine.best.finished == ended
        scored = hf_tokens + ([sep] if ended else [])
        hf_lp = step_lp[b, torch.arange(len(scored)), torch.tensor(scored)].sum()
        assert mine.best.logprob == pytest.approx(float(hf_lp), abs=TOL)
        finished.append(ended)
    if k == K:  # both endings are exercised: EOS, and running out of budget
        assert finished == [False, True]


def test_hf_rag_sequence_drops_the_prior_for_one_token_targets(torch, tokenizer, models) -> None:
    """HF adds log p(z|x) at the second scored token; with one scored token it is masked.

    A documented convention difference: ragmix counts the prior for any length,
    so HF's loss here equals ragmix's with a flat, unnormalised prior of 0.
    """
    gen, seq, _ = models
    ids, mask, prompts = _contexts(torch, tokenizer, K)
    scores = _doc_scores(torch, K)
    cls = tokenizer.cls_token_id
    rows = [[cls, tokenizer.convert_tokens_to_ids(w)] for w in ("north", "sailor")]
    with torch.no_grad():
        want = seq(context_input_ids=ids, context_attention_mask=mask, doc_scores=scores,
                   labels=torch.tensor(rows), n_docs=K, reduce_loss=False).loss
    forced = _ragmix_scores(torch, gen, prompts, rows, 1)
    no_prior = rm.rag_sequence_nll(forced.token_lp, forced.mask, torch.zeros_like(scores))
    torch.testing.assert_close(no_prior, want, atol=TOL, rtol=0)
    ours = rm.rag_sequence_nll(forced.token_lp, forced.mask, rm.doc_logprobs(scores))
    assert (ours - want).abs().max() > 1e-2
