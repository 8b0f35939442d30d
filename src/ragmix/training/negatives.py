"""Hard negatives for contrastive training, mined with BM25 or with the model being trained.

A mined negative is never a positive of its query. For QA data it also never
contains one of the query's answers (it would be an unlabelled positive), and
model-mined candidates scoring close to the positive are dropped as likely
false negatives: a candidate is kept only if its score is below
``max_ratio`` times the positive's (NV-Retriever's "TopK-PercPos", 0.95;
Moreira et al., 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ragmix.evaluation.qa_metrics import normalize_answer
from ragmix.training.pairs import TrainPair

Negatives = dict[str, tuple[str, ...]]  # query id -> passage ids, best-ranked first


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether any answer occurs in ``text`` after SQuAD normalisation (whole words).

    >>> contains_answer("It began in October 1973.", ["october 1973"])
    True
    >>> contains_answer("It began in 1974.", ["1973"])
    False
    """
    padded = f" {normalize_answer(text)} "
    return any(f" {a} " in padded for a in map(normalize_answer, answers) if a)


def keep_candidates(
    pair: TrainPair, ranked: Sequence[tuple[str, float]], corpus: dict[str, str], *,
    count: int, positive_score: float | None = None, max_ratio: float = 0.95,
) -> tuple[str, ...]:
    """The first ``count`` of ``ranked`` (passage id, score) that are safe negatives of ``pair``.

    >>> p = TrainPair("q", "who?", ("a",), ("Ada",))
    >>> keep_candidates(p, [("a", 9.0), ("b", 8.0), ("c", 1.0)],
    ...                 {"a": "", "b": "Ada did", "c": "no"}, count=2)
    ('c',)
    """
    positives = set(pair.positives)
    kept: list[str] = []
    for pid, score in ranked:
        if len(kept) == count:
            break
        if pid in positives:
            continue
        if pair.answers and contains_answer(corpus[pid], pair.answers):
            continue
        if positive_score is not None and score >= (
                max_ratio * positive_score if positive_score > 0 else positive_score):
            continue  # close to (or above) the positive: likely an unlabelled positive
        kept.append(pid)
    return tuple(kept)


def bm25_negatives(pairs: Sequence[TrainPair], corpus: dict[str, str], *, count: int = 10,
                   depth: int = 50) -> Negatives:
    """Up to ``count`` negatives per query from ragmix's BM25 over the corpus (top ``depth``)."""
    from ragmix.retrieval.bm25 import BM25Index

    ids = list(corpus)
    index = BM25Index.build(np.arange(len(ids), dtype=np.int64), [corpus[i] for i in ids])
    out: Negatives = {}
    for pair, hits in zip(pairs, index.search_batch([p.query for p in pairs], depth)):
        ranked = [(ids[h.chunk_id], h.score) for h in hits]
        out[pair.query_id] = keep_candidates(pair, ranked, corpus, count=count)
    return out


def model_negatives(
    pairs: Sequence[TrainPair], corpus: dict[str, str],
    embed_queries: Callable[[list[str]], np.ndarray],
    embed_passages: Callable[[list[str]], np.ndarray], *,
    count: int = 10, depth: int = 50, max_ratio: float = 0.95,
) -> Negatives:
    """Up to ``count`` negatives per query, the current model's top ``depth`` (inner product).

    ``embed_*`` map texts to (n, D) float32 arrays. Candidates scoring at
    least ``max_ratio`` times the query's weakest positive are skipped.
    """
    ids = list(corpus)
    row = {pid: i for i, pid in enumerate(ids)}
    passages = embed_passages([corpus[i] for i in ids])  # (P, D)
    queries = embed_queries([p.query for p in pairs])  # (Q, D)
    out: Negatives = {}
    for start in range(0, len(pairs), 256):
        scores = queries[start : start + 256] @ passages.T  # (q, P)
        top = np.argsort(-scores, axis=1)[:, :depth]  # (q, depth)
        for offset, pair in enumerate(pairs[start : start + 256]):
            s = scores[offset]
            floor = min(float(s[row[p]]) for p in pair.positives)
            ranked = [(ids[j], float(s[j])) for j in top[offset]]
            out[pair.query_id] = keep_candidates(pair, ranked, corpus, count=count,
                                                 positive_score=floor, max_ratio=max_ratio)
    return out
