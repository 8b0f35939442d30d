"""Ranking metrics over a run and relevance judgements, as trec_eval computes them.

A *run* maps each query id to the scores of the documents retrieved for it,
``{qid: {doc_id: score}}``; *qrels* map each query id to graded judgements,
``{qid: {doc_id: relevance}}``. These are the shapes ``pytrec_eval`` (and so
BEIR) take, and every number here matches trec_eval's on the same input
(``tests/test_eval_metrics.py`` checks it against ``pytrec_eval``):

- Order: score descending, ties broken by document id descending (trec_eval
  sorts ``strcmp`` order on docno). trec_eval keeps scores as C ``float``, so
  scores are compared at float32 precision: two scores that differ only past
  float32's ~7 significant digits are a tie.
- A document is relevant when its judgement is >= 1; unjudged documents are
  not relevant. nDCG uses the judgement itself as the gain (negative
  judgements gain 0), discounted by log2(rank + 1), over the ideal ordering
  of the judged documents (Jarvelin & Kekalainen, 2002; BEIR, Thakur et al. 2021).
- Every query in ``qrels`` is scored; one with no entry in the run scores 0
  (trec_eval's ``-c``), and so does one with no relevant documents. Queries
  in the run but not in qrels are ignored. pytrec_eval itself leaves unrun
  queries out of its output, so BEIR's means are over the run queries only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ragmix.errors import BadInputError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

DEFAULT_KS = (1, 5, 10, 20, 100)
RELEVANT = 1  # trec_eval's default relevance_level


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval order: float32 score descending, then id descending.

    >>> rank_documents({"d1": 0.5, "d3": 0.9, "d2": 0.5})
    ['d3', 'd2', 'd1']
    >>> rank_documents({"a": 1.0, "b": 1.0 + 1e-9})  # equal in float32: a tie
    ['b', 'a']
    """
    for doc_id, score in scores.items():
        if not isinstance(score, (int, float, np.floating, np.integer)) or math.isnan(score):
            raise BadInputError(f"score of document {doc_id!r} must be a number, got {score!r}")
    return sorted(scores, key=lambda d: (float(np.float32(scores[d])), d), reverse=True)


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain of gains listed by rank: sum of g_i / log2(i + 1).

    >>> round(dcg([2, 0, 1]), 4)  # 2/log2(2) + 0/log2(3) + 1/log2(4) = 2 + 0 + 0.5
    2.5
    """
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def query_ndcg(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranked list: DCG of its top k over DCG of the ideal top k.

    DCG = 0/log2(2) + 1/log2(3) + 2/log2(4) = 1.6309; ideal = 2/log2(2) + 1/log2(3) = 2.6309.

    >>> round(query_ndcg(["x", "b", "a"], {"a": 2, "b": 1}, k=10), 4)
    0.6199
    """
    gains = [max(judged.get(d, 0), 0) for d in ranking[:k]]
    ideal = dcg(sorted((max(r, 0) for r in judged.values()), reverse=True)[:k])
    return dcg(gains) / ideal if ideal > 0 else 0.0


def query_mrr(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0.

    >>> query_mrr(["x", "y", "a"], {"a": 1}, k=10), query_mrr(["x", "y", "a"], {"a": 1}, k=2)
    (0.3333333333333333, 0.0)
    """
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if judged.get(doc_id, 0) >= RELEVANT:
            return 1.0 / rank
    return 0.0


def query_recall(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k (0 if there are none).

    >>> query_recall(["a", "x", "b"], {"a": 1, "b": 2, "c": 1, "z": 0}, k=2)  # 1 of 3
    0.3333333333333333
    """
    relevant = {d for d, r in judged.items() if r >= RELEVANT}
    if not relevant:
        return 0.0
    return sum(1 for d in ranking[:k] if d in relevant) / len(relevant)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInputError(f"k must be an integer >= 1, got {k!r}")
    return k


def _per_query(metric, run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    _check_k(k)
    return {qid: metric(rank_documents(run.get(qid, {})), judged, k)
            for qid, judged in qrels.items()}


def ndcg_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """nDCG@k of every query in ``qrels`` (trec_eval's ``ndcg_cut.k``).

    >>> ndcg_at_k({"q1": {"a": 1.0, "b": 0.5}}, {"q1": {"b": 1}, "q2": {"c": 1}}, k=10)
    {'q1': 0.6309297535714575, 'q2': 0.0}
    """
    return _per_query(query_ndcg, run, qrels, k)


def mrr_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Reciprocal rank of the first relevant document in the top k, per query in ``qrels``.

    >>> mrr_at_k({"q1": {"a": 1.0, "b": 0.5}}, {"q1": {"b": 1}}, k=10)
    {'q1': 0.5}
    """
    return _per_query(query_mrr, run, qrels, k)


def recall_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Recall@k of every query in ``qrels`` (trec_eval's ``recall.k``).

    >>> recall_at_k({"q1": {"a": 1.0, "b": 0.5}}, {"q1": {"b": 1, "c": 1}}, k=1)
    {'q1': 0.0}
    """
    return _per_query(query_recall, run, qrels, k)


METRICS = {"ndcg": query_ndcg, "mrr": query_mrr, "recall": query_recall}


@dataclass(frozen=True)
class RetrievalReport:
    """Mean and per-query metrics of one run, keyed like ``"ndcg@10"``.

    ``latency_s`` holds each query's search time when the run was timed
    (:func:`ragmix.evaluation.run_retrieval.evaluate_retrieval` does).
    """

    metrics: dict[str, float]  # metric name -> mean over the judged queries
    per_query: dict[str, dict[str, float]]  # qid -> metric name -> value
    missing: tuple[str, ...] = ()  # judged queries with no entry in the run (scored 0)
    latency_s: dict[str, float] = field(default_factory=dict)  # qid -> seconds

    @property
    def n_queries(self) -> int:
        return len(self.per_query)

    def to_dict(self) -> dict:
        """A JSON-ready dict: means, latency summary, per-query values."""
        out: dict = {"n_queries": self.n_queries, "metrics": dict(self.metrics)}
        if self.latency_s:
            out["latency_ms"] = latency_summary(self.latency_s.values())
        out["missing"] = list(self.missing)
        out["per_query"] = {
            qid: {**values, **({"latency_ms": 1000 * self.latency_s[qid]}
                               if qid in self.latency_s else {})}
            for qid, values in self.per_query.items()
        }
        return out


def latency_summary(seconds: Iterable[float]) -> dict[str, float]:
    """Mean, median and 95th percentile of latencies, in milliseconds.

    >>> latency_summary([0.001, 0.002, 0.003])["p50"]
    2.0
    """
    ms = np.asarray(list(seconds), dtype=float) * 1000  # (n,)
    if ms.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95))}


def evaluate_run(
    run: Run, qrels: Qrels, ks: Sequence[int] = DEFAULT_KS,
    *, latency_s: Mapping[str, float] | None = None,
) -> RetrievalReport:
    """nDCG@k, MRR@k and recall@k for every k in ``ks``, per query and averaged.

    >>> report = evaluate_run({"q1": {"a": 2.0, "b": 1.0}}, {"q1": {"b": 1}, "q2": {"c": 1}},
    ...                       ks=(1, 10))
    >>> report.metrics["mrr@10"], report.metrics["recall@1"], report.missing
    (0.25, 0.0, ('q2',))
    """
    if not qrels:
        raise BadInputError("qrels are empty: there are no judged queries to evaluate")
    ks = tuple(sorted({_check_k(k) for k in ks}))
    if not ks:
        raise BadInputError("ks must name at least one cut-off, got ()")
    per_query: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        ranking = rank_documents(run.get(qid, {}))
        per_query[qid] = {f"{name}@{k}": fn(ranking, judged, k)
                          for name, fn in METRICS.items() for k in ks}
    names = list(next(iter(per_query.values())))
    means = {name: float(np.mean([values[name] for values in per_query.values()]))
             for name in names}
    missing = tuple(qid for qid in qrels if qid not in run)
    return RetrievalReport(means, per_query, missing, dict(latency_s or {}))
