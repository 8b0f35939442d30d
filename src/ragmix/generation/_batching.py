"""Tensor helpers for teacher-forced scoring: padding and picking log-probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from ragmix._extras import require


def pad(
    seqs: list[list[int]], pad_id: int, *, left: bool
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pad id lists into (B, L) ids and attention mask; also each row's start offset.

    >>> ids, mask, offsets = pad([[5, 6], [7]], 0, left=True)
    >>> ids.tolist(), mask.tolist(), offsets
    ([[5, 6], [0, 7]], [[1, 1], [0, 1]], [0, 1])
    """
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)  # (B, L)
    mask = np.zeros((len(seqs), width), dtype=np.int64)  # (B, L)
    offsets = []
    for row, seq in enumerate(seqs):
        start = width - len(seq) if left else 0
        ids[row, start : start + len(seq)] = seq
        mask[row, start : start + len(seq)] = 1
        offsets.append(start)
    return ids, mask, offsets


def gather_logprobs(logits: Any, targets: list[int]) -> np.ndarray:
    """log_softmax(logits)[i, targets[i]] for each row, as float64: (T, V), (T,) -> (T,)."""
    torch = require("torch", "models")
    logprobs = logits.float().log_softmax(-1)  # (T, V)
    picked = logprobs.gather(-1, torch.tensor(targets)[:, None]).squeeze(-1)  # (T,)
    return picked.numpy().astype(np.float64)
