"""The contrastive loss of DPR (Karpukhin et al., 2020): InfoNCE over a shared pool of passages.

Every query in a batch scores every passage in the pool: its own positive,
the other queries' positives (in-batch negatives) and every mined hard
negative. Passages that are also positives of the query (the same document
mined twice, or a second relevant document in the batch) are masked out, so
a relevant passage is never pushed away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def info_nce(queries: Tensor, passages: Tensor, targets: Tensor, *, temperature: Tensor | float,
             excluded: Tensor | None = None) -> Tensor:
    """Mean over queries of -log softmax(q . p / temperature)[target].

    queries (B, D) and passages (N, D) are embeddings (normalised for cosine);
    targets (B,) the pool index of each query's positive; excluded (B, N) bool,
    True where a passage must not count as a negative of that query (never the
    target itself). Returns a scalar.

    >>> import torch
    >>> q = torch.eye(2); p = torch.eye(2)
    >>> round(float(info_nce(q, p, torch.tensor([0, 1]), temperature=1.0)), 4)
    0.3133
    """
    logits = queries @ passages.T / temperature  # (B, N)
    if excluded is not None:
        keep = excluded.clone()
        keep[range(len(targets)), targets] = False  # the positive always counts
        logits = logits.masked_fill(keep, float("-inf"))
    return (logits.logsumexp(-1) - logits.gather(-1, targets[:, None]).squeeze(-1)).mean()


def pool_exclusions(query_positives: list[frozenset[str]], pool_ids: list[str]) -> list[list[bool]]:
    """(B, N) rows: True where pool passage n is a positive of query b (mask it as a negative).

    >>> pool_exclusions([frozenset({"a"}), frozenset({"b", "c"})], ["a", "b", "c"])
    [[True, False, False], [False, True, True]]
    """
    return [[pid in positives for pid in pool_ids] for positives in query_positives]
