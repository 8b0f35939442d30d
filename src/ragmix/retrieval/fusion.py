"""Pure functions that merge rankings (RRF, weighted scores) and turn scores into p(z|x)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ragmix.errors import BadInputError
from ragmix.types import ScoredId

NORMALISATIONS = ("minmax", "none")


def _check_weights(weights: Sequence[float] | None, n_rankings: int) -> list[float]:
    if weights is None:
        return [1.0] * n_rankings
    weights = [float(w) for w in weights]
    if len(weights) != n_rankings:
        raise BadInputError(
            f"need one weight per ranking ({n_rankings}), got {len(weights)} weights"
        )
    bad = [w for w in weights if not (math.isfinite(w) and w >= 0)]
    if bad:
        raise BadInputError(f"weights must be finite and >= 0, got {bad[0]}")
    return weights


def _check_ranking(ranking: Sequence[ScoredId], r: int, *, finite: bool) -> None:
    seen: set[int] = set()
    for hit in ranking:
        if hit.chunk_id in seen:
            raise BadInputError(f"chunk id {hit.chunk_id} appears twice in ranking {r}")
        seen.add(hit.chunk_id)
        if math.isnan(hit.score) or (finite and math.isinf(hit.score)):
            raise BadInputError(f"ranking {r} has score {hit.score} for chunk id {hit.chunk_id}")


def _by_score(ranking: Sequence[ScoredId]) -> list[ScoredId]:
    """Best first; equal scores by chunk id, so the input order of ties never matters."""
    return sorted(ranking, key=lambda h: (-h.score, h.chunk_id))


def _finish(contributions: dict[int, list[float]]) -> list[ScoredId]:
    # fsum is exactly rounded, so the fused score does not depend on the order of rankings.
    fused = [ScoredId(cid, math.fsum(parts)) for cid, parts in contributions.items()]
    return _by_score(fused)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[ScoredId]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[ScoredId]:
    """Merge rankings by Reciprocal Rank Fusion (Cormack et al., SIGIR 2009).

    ``score(d) = sum_r weights[r] / (k + rank_r(d))``, with ``rank_r`` 1-based
    after sorting ranking r by score (ties by chunk id); a ranking without d adds
    nothing. The result is sorted by fused score, ties by chunk id.

    >>> a = [ScoredId(1, 0.9), ScoredId(2, 0.5)]
    >>> b = [ScoredId(2, 12.0), ScoredId(3, 7.0)]
    >>> [(h.chunk_id, round(h.score, 4)) for h in reciprocal_rank_fusion([a, b], k=1)]
    [(2, 0.8333), (1, 0.5), (3, 0.3333)]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise BadInputError(f"k must be an integer > 0, got {k!r}")
    weights = _check_weights(weights, len(rankings))
    contributions: dict[int, list[float]] = {}
    for r, (ranking, weight) in enumerate(zip(rankings, weights)):
        _check_ranking(ranking, r, finite=False)
        for rank, hit in enumerate(_by_score(ranking), start=1):
            contributions.setdefault(hit.chunk_id, []).append(weight / (k + rank))
    return _finish(contributions)


def weighted_fusion(
    rankings: Sequence[Sequence[ScoredId]],
    *,
    weights: Sequence[float] | None = None,
    normalise: str = "minmax",
) -> list[ScoredId]:
    """Merge rankings by a weighted mean of their (min-max normalised) scores.

    With ``normalise="minmax"`` each ranking's scores map to [0, 1] (a ranking
    whose scores are all equal maps to 1.0); ``"none"`` uses raw scores. A
    ranking without d contributes 0. The fused score is
    ``sum_r weights[r] * s_r(d) / sum_r weights[r]`` (default: equal weights), so
    with min-max it lies in [0, 1]. Sorted by fused score, ties by chunk id.

    >>> a = [ScoredId(1, 0.9), ScoredId(2, 0.5)]
    >>> b = [ScoredId(2, 12.0), ScoredId(3, 7.0)]
    >>> [(h.chunk_id, h.score) for h in weighted_fusion([a, b], weights=[1, 3])]
    [(2, 0.75), (1, 0.25), (3, 0.0)]
    """
    if normalise not in NORMALISATIONS:
        raise BadInputError(
            f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}"
        )
    weights = _check_weights(weights, len(rankings))
    total = math.fsum(weights)
    if rankings and total == 0:
        raise BadInputError("weights must not all be 0")
    contributions: dict[int, list[float]] = {}
    for r, (ranking, weight) in enumerate(zip(rankings, weights)):
        _check_ranking(ranking, r, finite=True)
        if not ranking:
            continue
        low = min(h.score for h in ranking)
        span = max(h.score for h in ranking) - low
        for hit in ranking:
            if normalise == "none":
                score = hit.score
            else:
                score = (hit.score - low) / span if span > 0 else 1.0
            contributions.setdefault(hit.chunk_id, []).append(weight * score / total)
    return _finish(contributions)


def softmax_probs(scores: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """The retriever distribution p(z|x): softmax of scores / temperature over the last axis.

    Shape in = shape out, e.g. (k,) or (q, k); float64. The row maximum is
    subtracted first, so scores like 1e4 do not overflow. ``-inf`` scores get
    probability 0; a row must have at least one finite score.

    >>> softmax_probs(np.array([1e4, 1e4, 1e4 - np.log(2)])).round(3).tolist()
    [0.4, 0.4, 0.2]
    """
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise BadInputError(f"temperature must be a finite number > 0, got {temperature!r}")
    scores = np.asarray(scores, dtype=np.float64)  # (..., k)
    if scores.ndim == 0:
        raise BadInputError("scores must have at least one axis, e.g. shape (k,)")
    if scores.shape[-1] == 0:
        return scores.copy()
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise BadInputError("scores contain NaN or +inf")
    top = scores.max(axis=-1, keepdims=True)  # (..., 1)
    if not np.isfinite(top).all():
        raise BadInputError("every row of scores needs at least one finite score")
    z = np.exp((scores - top) / temperature)  # (..., k), max 1
    return z / z.sum(axis=-1, keepdims=True)  # (..., k)
