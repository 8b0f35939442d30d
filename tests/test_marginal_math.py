"""The RAG-Sequence / RAG-Token marginals against brute-force loops, and their invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from ragmix.marginal import math as rm  # noqa: E402


def _case(seed: int, b: int, k: int, t: int, v: int = 7):
    """Random normalised token log-probs (B, K, T, V), picked targets, mask, prior."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(b, k, t, v, generator=g, dtype=torch.float64).log_softmax(-1)
    targets = torch.randint(0, v, (b, t), generator=g)
    token_lp = full.gather(-1, targets[:, None, :, None].expand(b, k, t, 1)).squeeze(-1)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()  # (B, T) right-padded
    doc_lp = rm.doc_logprobs(torch.randn(b, k, generator=g, dtype=torch.float64), tau=0.7)
    return full, targets, token_lp, mask, doc_lp


shapes = st.tuples(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 5),
                   st.integers(1, 6))


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_marginals_equal_brute_force_loops(shape) -> None:
    seed, b, k, t = shape
    _, _, token_lp, mask, doc_lp = _case(seed, b, k, t)
    seq, tok = rm.rag_sequence_logprob(token_lp, mask, doc_lp), rm.rag_token_logprob(
        token_lp, mask, doc_lp)
    for i in range(b):
        n = int(mask[i].sum())
        # RAG-Sequence: a sum over passages of p(z|x) * prod_i p(y_i | z)
        p_seq = sum(math.exp(doc_lp[i, z]) * math.prod(math.exp(token_lp[i, z, j])
                                                         for j in range(n)) for z in range(k))
        # RAG-Token: a product over tokens of sum over passages
        p_tok = math.prod(sum(math.exp(doc_lp[i, z] + token_lp[i, z, j]) for z in range(k))
                          for j in range(n))
        assert seq[i].item() == pytest.approx(math.log(p_seq), abs=1e-9)
        assert tok[i].item() == pytest.approx(math.log(p_tok), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_one_passage_gives_the_generators_own_likelihood(shape) -> None:
    seed, b, _, t = shape
    _, _, token_lp, mask, _ = _case(seed, b, 1, t)
    doc_lp = rm.doc_logprobs(torch.randn(b, 1, dtype=torch.float64))
    own = (token_lp[:, 0] * mask).sum(-1)
    torch.testing.assert_close(rm.rag_sequence_logprob(token_lp, mask, doc_lp), own)
    torch.testing.assert_close(rm.rag_token_logprob(token_lp, mask, doc_lp), own)


@settings(max_examples=30, deadline=None)
@given(shapes, st.randoms(use_true_random=False))
def test_permuting_passages_changes_nothing(shape, rnd) -> None:
    seed, b, k, t = shape
    _, _, token_lp, mask, doc_lp = _case(seed, b, k, t)
    perm = list(range(k))
    rnd.shuffle(perm)
    for fn in (rm.rag_sequence_logprob, rm.rag_token_logprob):
        torch.testing.assert_close(fn(token_lp[:, perm], mask, doc_lp[:, perm]),
                                   fn(token_lp, mask, doc_lp))
    torch.testing.assert_close(rm.sequence_posterior(token_lp[:, perm], mask, doc_lp[:, perm]),
                               rm.sequence_posterior(token_lp, mask, doc_lp)[:, perm])


def test_padding_is_ignored_whatever_it_holds() -> None:
    _, _, token_lp, mask, doc_lp = _case(3, 2, 3, 5)
    garbage = token_lp.masked_fill(~mask[:, None, :].bool(), -123.0)
    for fn in (rm.rag_sequence_logprob, rm.rag_token_logprob):
        torch.testing.assert_close(fn(garbage, mask, doc_lp), fn(token_lp, mask, doc_lp))


def test_next_token_mixture_is_a_distribution_and_matches_token_marginal() -> None:
    full, targets, token_lp, mask, doc_lp = _case(5, 2, 4, 3)
    nxt = rm.rag_token_next_logprobs(full[:, :, 0], doc_lp)  # (B, V)
    torch.testing.assert_close(nxt.exp().sum(-1), torch.ones(2, dtype=torch.float64))
    first = nxt.gather(-1, targets[:, :1]).squeeze(-1)
    torch.testing.assert_close(first, rm.rag_token_token_logprobs(token_lp, mask, doc_lp)[:, 0])


def test_posteriors_follow_bayes_rule() -> None:
    _, _, token_lp, mask, doc_lp = _case(7, 2, 3, 4)
    post = rm.sequence_posterior(token_lp, mask, doc_lp).exp()  # (B, K)
    torch.testing.assert_close(post.sum(-1), torch.ones(2, dtype=torch.float64))
    joint = doc_lp + (token_lp * mask[:, None]).sum(-1)
    torch.testing.assert_close(post, (joint - rm.rag_sequence_logprob(token_lp, mask, doc_lp)[:, None]).exp())
    per_token = rm.token_posteriors(token_lp, doc_lp).exp()  # (B, T, K)
    assert per_token.shape == (2, 4, 3)
    b, i, z = 1, 2, 0
    expected = math.exp(doc_lp[b, z] + token_lp[b, z, i]) / sum(
        math.exp(doc_lp[b, zz] + token_lp[b, zz, i]) for zz in range(3))
    assert per_token[b, i, z].item() == pytest.approx(expected)


def test_prior_temperature_and_invalid_passages() -> None:
    scores = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    sharp, flat = rm.doc_logprobs(scores, tau=0.1).exp(), rm.doc_logprobs(scores, tau=10).exp()
    assert sharp[0, 0] > 0.99 and float(flat.max() - flat.min()) < 0.1
    valid = torch.tensor([[True, True, False]])
    prior = rm.doc_logprobs(scores, valid=valid).exp()
    assert prior[0, 2] < 1e-12 and prior[0, :2].sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        rm.doc_logprobs(scores, tau=0)


def test_label_smoothing_blends_towards_the_uniform_target() -> None:
    full, _, token_lp, mask, doc_lp = _case(11, 2, 3, 4)
    for nll in (rm.rag_sequence_nll, rm.rag_token_nll):
        plain = nll(token_lp, mask, doc_lp)
        same = nll(token_lp, mask, doc_lp, label_smoothing=0.0, full_lp=full)
        torch.testing.assert_close(plain, same)
        smooth = nll(token_lp, mask, doc_lp, label_smoothing=0.1, full_lp=full)
        assert torch.isfinite(smooth).all() and not torch.allclose(smooth, plain)
        with pytest.raises(ValueError, match="needs full_lp"):
            nll(token_lp, mask, doc_lp, label_smoothing=0.1)
    # one passage: the smoothing term is the mean log-probability over the vocabulary
    f1, _, t1, m1, d1 = _case(12, 1, 1, 3)
    d1 = torch.zeros(1, 1, dtype=torch.float64)
    expected = 0.9 * -(t1[0, 0] * m1[0]).sum() - 0.1 * (f1[0, 0].mean(-1) * m1[0]).sum()
    assert rm.rag_sequence_nll(t1, m1, d1, label_smoothing=0.1, full_lp=f1).item() == \
        pytest.approx(expected.item())


def test_gradients_flow_to_the_prior_and_the_token_scores() -> None:
    _, _, token_lp, mask, _ = _case(13, 2, 3, 4)
    scores = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    token_lp = token_lp.clone().requires_grad_(True)
    for nll in (rm.rag_sequence_nll, rm.rag_token_nll):
        loss = nll(token_lp, mask, rm.doc_logprobs(scores)).sum()
        gs, gt = torch.autograd.grad(loss, (scores, token_lp))
        assert gs.abs().sum() > 0 and gt.abs().sum() > 0
        assert np.allclose(gt.masked_select(~mask[:, None, :].bool().expand_as(gt)).numpy(), 0)
