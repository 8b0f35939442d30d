"""Padding id lists into batches for teacher-forced scoring."""

from __future__ import annotations

import numpy as np


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
