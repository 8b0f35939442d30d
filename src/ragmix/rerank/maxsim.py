"""Late-interaction relevance (ColBERT, Khattab & Zaharia, 2020): the MaxSim score.

A query and a passage are each a bag of token vectors. Every query token
finds its best-matching passage token (the largest dot product, cosine for
unit vectors), and the passage's score is the sum of those best matches:

    score(q, d) = sum_i max_j  q_i . d_j

Padding (and any token a caller chose to drop) is masked out of the max. A
passage left with no token at all scores 0: an empty max contributes nothing,
rather than -inf, so one empty passage cannot turn a whole ranking non-finite.

:func:`maxsim` is the NumPy form that scoring at query time uses;
:func:`maxsim_batch` is the torch form, differentiable, for a batch of
queries against a shared pool of passages (in-batch training).

>>> q = np.array([[1.0, 0.0], [0.0, 1.0]])  # (Tq=2, D=2)
>>> d = np.array([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [9.0, 9.0]]])  # (N=2, Td=2, D=2)
>>> maxsim(q, d, np.array([[True, True], [True, False]]))
array([1.8, 1. ])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError

if TYPE_CHECKING:
    from torch import Tensor


def maxsim(query_vecs: np.ndarray, doc_vecs: np.ndarray, doc_mask: np.ndarray) -> np.ndarray:
    """MaxSim scores of one query against ``N`` passages, float64 shape (N,).

    query_vecs (Tq, D); doc_vecs (N, Td, D), padded; doc_mask (N, Td) bool,
    True where a token counts. Every query token is used. Dot products are
    taken in the inputs' precision (float32 vectors: float32, 2x faster than
    widening 50 passages' tokens first), the sum in float64.
    """
    dtype = np.result_type(query_vecs, doc_vecs, np.float32)
    query_vecs = np.asarray(query_vecs, dtype=dtype)  # (Tq, D)
    doc_vecs = np.asarray(doc_vecs, dtype=dtype)  # (N, Td, D)
    doc_mask = np.asarray(doc_mask, dtype=bool)  # (N, Td)
    if query_vecs.ndim != 2 or doc_vecs.ndim != 3 or doc_mask.shape != doc_vecs.shape[:2]:
        raise BadInputError(
            "maxsim needs query_vecs (Tq, D), doc_vecs (N, Td, D) and doc_mask (N, Td); got "
            f"{query_vecs.shape}, {doc_vecs.shape} and {doc_mask.shape}")
    if query_vecs.shape[1] != doc_vecs.shape[2]:
        raise BadInputError(f"query and passage vectors differ in width: {query_vecs.shape[1]} "
                            f"against {doc_vecs.shape[2]}")
    sims = doc_vecs @ query_vecs.T  # (N, Td, Tq)
    sims = np.where(doc_mask[:, :, None], sims, -np.inf)  # (N, Td, Tq)
    best = sims.max(axis=1, initial=-np.inf)  # (N, Tq)
    best = np.where(np.isneginf(best), 0.0, best)  # a passage with no token: 0 per query token
    return best.sum(axis=1, dtype=np.float64)  # (N,)


def maxsim_batch(query_vecs: Tensor, query_mask: Tensor, doc_vecs: Tensor,
                 doc_mask: Tensor) -> Tensor:
    """MaxSim of every query against every passage, (B, N); differentiable.

    query_vecs (B, Tq, D) with query_mask (B, Tq); doc_vecs (N, Td, D) with
    doc_mask (N, Td); masks are bool, True where a token counts. Masked query
    tokens add nothing; a passage with no token scores 0 for every query.
    The gradient of each max flows to its best passage token only, as in
    ColBERT.
    """
    torch = require("torch", "models")
    if query_vecs.ndim != 3 or doc_vecs.ndim != 3 or query_vecs.shape[-1] != doc_vecs.shape[-1]:
        raise BadInputError("maxsim_batch needs query_vecs (B, Tq, D) and doc_vecs (N, Td, D) "
                            f"of one width; got {tuple(query_vecs.shape)} and "
                            f"{tuple(doc_vecs.shape)}")
    sims = torch.einsum("bqd,ntd->bnqt", query_vecs, doc_vecs)  # (B, N, Tq, Td)
    lowest = torch.finfo(sims.dtype).min
    sims = sims.masked_fill(~doc_mask[None, :, None, :], lowest)  # (B, N, Tq, Td)
    best = sims.max(dim=-1).values  # (B, N, Tq)
    empty = ~doc_mask.any(dim=-1)  # (N,)
    keep = query_mask[:, None, :] & ~empty[None, :, None]  # (B, N, Tq)
    return torch.where(keep, best, torch.zeros_like(best)).sum(dim=-1)  # (B, N)
