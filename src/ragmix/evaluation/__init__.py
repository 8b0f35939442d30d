"""Evaluation: retrieval metrics as trec_eval computes them, SQuAD answer metrics, loaders.

Importing this package loads no model, FAISS or BM25; the functions that run a
collection import it when called.

>>> from ragmix.evaluation import evaluate_run, f1
>>> evaluate_run({"q1": {"d1": 0.9, "d2": 0.5}}, {"q1": {"d2": 1}}).metrics["mrr@10"]
0.5
>>> f1("the Denver Broncos", ["Denver Broncos"])
1.0
"""

from __future__ import annotations

from ragmix.evaluation.datasets import (
    BeirSplit, QAExample, load_beir, load_qa, load_qrels, load_queries, qa_retrieval_split,
)
from ragmix.evaluation.qa_metrics import (
    answer_in_passages, contains, exact_match, f1, normalize_answer, regex_match,
)
from ragmix.evaluation.retrieval_metrics import (
    RetrievalReport, evaluate_run, mrr_at_k, ndcg_at_k, rank_documents, recall_at_k,
)
from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus, pool_documents

__all__ = [
    "BeirSplit",
    "QAExample",
    "RetrievalReport",
    "answer_in_passages",
    "contains",
    "evaluate_retrieval",
    "evaluate_run",
    "exact_match",
    "f1",
    "index_corpus",
    "load_beir",
    "load_qa",
    "load_qrels",
    "load_queries",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "pool_documents",
    "qa_retrieval_split",
    "rank_documents",
    "recall_at_k",
    "regex_match",
]
