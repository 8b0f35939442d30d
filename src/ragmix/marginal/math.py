"""The paper's marginals over retrieved passages, as pure functions in log space.

Lewis et al. (2020) treat the retrieved passage z as a latent variable:

- prior:        log p(z|x) = log_softmax(s(z, x) / tau) over the top-K passages;
- RAG-Sequence: log p(y|x) = logsumexp_z [log p(z|x) + sum_i log p(y_i | x, z, y_<i)];
- RAG-Token:    log p(y|x) = sum_i logsumexp_z [log p(z|x) + log p(y_i | x, z, y_<i)].

Shapes: B questions, K passages, T answer tokens, V vocabulary. ``mask`` marks
real answer tokens (1) against padding (0). Every function is differentiable,
so the training losses are these same functions negated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragmix._extras import require

if TYPE_CHECKING:
    from torch import Tensor

torch = require("torch", "models")

# A stand-in for log 0 that keeps logsumexp finite and gradients defined.
NEG_INF = -1e9


def doc_logprobs(scores: Tensor, tau: float = 1.0, valid: Tensor | None = None) -> Tensor:
    """Retriever prior log p(z|x) = log_softmax(scores / tau): (B, K) -> (B, K).

    ``valid`` (B, K) marks real passages; missing ones get probability 0.
    The paper uses the dense inner product as the score; BM25 and hybrid
    scores work the same way (its BM25 ablation uses BM25 scores as logits).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    logits = scores / tau  # (B, K)
    if valid is not None:
        logits = logits.masked_fill(~valid.bool(), NEG_INF)
    return logits.log_softmax(-1)


def _masked(token_lp: Tensor, mask: Tensor) -> Tensor:
    """token_lp with padded positions set to 0: (B, K, T), mask (B, T) or (B, K, T)."""
    m = mask if mask.dim() == 3 else mask[:, None, :]  # (B, 1|K, T)
    return token_lp.masked_fill(~m.bool(), 0.0)


def sequence_joint(token_lp: Tensor, mask: Tensor, doc_lp: Tensor) -> Tensor:
    """log p(z|x) + log p(y|x,z) per passage: (B, K, T), (B, T), (B, K) -> (B, K)."""
    return doc_lp + _masked(token_lp, mask).sum(-1)


def rag_sequence_logprob(token_lp: Tensor, mask: Tensor, doc_lp: Tensor) -> Tensor:
    """RAG-Sequence log p(y|x): (B, K, T), (B, T), (B, K) -> (B,)."""
    return sequence_joint(token_lp, mask, doc_lp).logsumexp(-1)


def rag_token_token_logprobs(token_lp: Tensor, mask: Tensor, doc_lp: Tensor) -> Tensor:
    """RAG-Token log p(y_i | x, y_<i) per token, 0 at padding: -> (B, T)."""
    mixed = (doc_lp[:, :, None] + token_lp).logsumexp(1)  # (B, T)
    m = mask if mask.dim() == 2 else mask.any(1)  # (B, T)
    return mixed.masked_fill(~m.bool(), 0.0)


def rag_token_logprob(token_lp: Tensor, mask: Tensor, doc_lp: Tensor) -> Tensor:
    """RAG-Token log p(y|x): (B, K, T), (B, T), (B, K) -> (B,)."""
    return rag_token_token_logprobs(token_lp, mask, doc_lp).sum(-1)


def rag_token_next_logprobs(next_lp: Tensor, doc_lp: Tensor) -> Tensor:
    """The mixed next-token distribution of RAG-Token decoding: (B, K, V), (B, K) -> (B, V)."""
    return (doc_lp[:, :, None] + next_lp).logsumexp(1)


def sequence_posterior(token_lp: Tensor, mask: Tensor, doc_lp: Tensor) -> Tensor:
    """log p(z | x, y) ∝ p(z|x) p(y|x,z): (B, K, T), (B, T), (B, K) -> (B, K)."""
    return sequence_joint(token_lp, mask, doc_lp).log_softmax(-1)


def token_posteriors(token_lp: Tensor, doc_lp: Tensor) -> Tensor:
    """Per-token passage posterior log p(z_i | x, y_<=i) ∝ p(z|x) p(y_i | x, z, y_<i).

    The passage each RAG-Token answer token leaned on (the paper's Figure 2):
    (B, K, T), (B, K) -> (B, T, K). Rows at padded positions are meaningless.
    """
    return (doc_lp[:, :, None] + token_lp).log_softmax(1).transpose(1, 2)


def _smoothing_term(full_lp: Tensor, mask: Tensor) -> Tensor:
    """sum_i mean_v log p(v | x, z, y_<i) per passage: (B, K, T, V), (B, T) -> (B, K)."""
    return _masked(full_lp.mean(-1), mask).sum(-1)


def rag_sequence_nll(
    token_lp: Tensor, mask: Tensor, doc_lp: Tensor, *,
    label_smoothing: float = 0.0, full_lp: Tensor | None = None,
) -> Tensor:
    """Negative marginal log-likelihood of RAG-Sequence: -> (B,), one loss per question.

    With ``label_smoothing`` eps > 0, ``full_lp`` (B, K, T, V) holds every
    vocabulary log-probability and the loss is
    (1 - eps) * NLL - eps * logsumexp_z [log p(z|x) + sum_i mean_v log p(v|...)],
    the uniform-target term marginalised over passages like the answer. (Hugging
    Face's RAG adds V * log p(z|x) inside its smoothing term; this adds it once.)
    """
    nll = -rag_sequence_logprob(token_lp, mask, doc_lp)
    if not label_smoothing:
        return nll
    _check_smoothing(label_smoothing, full_lp)
    smooth = (doc_lp + _smoothing_term(full_lp, mask)).logsumexp(-1)  # (B,)
    return (1 - label_smoothing) * nll - label_smoothing * smooth


def rag_token_nll(
    token_lp: Tensor, mask: Tensor, doc_lp: Tensor, *,
    label_smoothing: float = 0.0, full_lp: Tensor | None = None,
) -> Tensor:
    """Negative marginal log-likelihood of RAG-Token: -> (B,); smoothing as in
    :func:`rag_sequence_nll`, on the mixed per-token distribution."""
    nll = -rag_token_logprob(token_lp, mask, doc_lp)
    if not label_smoothing:
        return nll
    _check_smoothing(label_smoothing, full_lp)
    mixed = (doc_lp[:, :, None, None] + full_lp).logsumexp(1)  # (B, T, V)
    m = mask if mask.dim() == 2 else mask.any(1)
    smooth = mixed.mean(-1).masked_fill(~m.bool(), 0.0).sum(-1)  # (B,)
    return (1 - label_smoothing) * nll - label_smoothing * smooth


def _check_smoothing(eps: float, full_lp: Tensor | None) -> None:
    if not 0 <= eps < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {eps}")
    if full_lp is None:
        raise ValueError("label_smoothing needs full_lp, the (B, K, T, V) log-probabilities")
