"""Is SPLADE's inverted index scored as fast as the BM25 path? Search alone, back to back.

    .venv/bin/python bench/bench_rerank.py sparse-speed

The SciFact collection's own two keyword indexes, loaded from its folder as a
search loads them (memory-mapped): ragmix's SPLADE index
(:class:`~ragmix.retrieval.sparse.SparseIndex`, posting lists scored with
scipy) and its BM25 index (:class:`~ragmix.retrieval.bm25.BM25Index`, bm25s).
Each of the 300 test queries is searched for its top 100 by one, then the
other, alternating which goes first, for ``ROUNDS`` rounds; a query's time is
its median over the rounds, and the p50 over queries is reported with the
ratio SPLADE / BM25. SPLADE's query encoding (the model's forward pass) is
timed apart: it is the cost BM25's tokenizer does not have, not the index's.
The postings a query touches (the summed lengths of its terms' posting
lists; medians, and each index's p50 time over its median postings) say why
the two differ: SPLADE expands a query to dozens of weighted terms. Written
to rerank.json under "sparse_speed".
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

ROUNDS, K = 5, 100


def _postings(indptr, terms) -> int:
    """How many (term, document) postings the term ids ``terms`` touch, given a CSC
    index's column pointers ``indptr`` (both indexes keep one per term)."""
    import numpy as np

    terms = np.asarray(terms, dtype=np.int64)
    return int(np.sum(indptr[terms + 1] - indptr[terms])) if len(terms) else 0


def run(collection_dir: Path, data: Path, results_path: Path, write_result) -> dict:
    import json

    from ragmix.encoders.splade import load_splade
    from ragmix.evaluation.datasets import load_beir
    from ragmix.retrieval.bm25 import BM25Index
    from ragmix.retrieval.sparse import SparseIndex
    from ragmix.store.views import BM25_DIR, SPLADE_DIR

    queries = load_beir(data, "test").queries
    texts = [queries[q] for q in sorted(queries)]
    sparse = SparseIndex.load(collection_dir / SPLADE_DIR / "index", mmap=True)
    bm25 = BM25Index.load(str(collection_dir / BM25_DIR))
    encoder = load_splade(dtype="float32")
    began = time.perf_counter()
    vectors = [encoder.encode_queries([t]) for t in texts]  # (1, vocab) each
    encode_ms = 1000 * (time.perf_counter() - began) / len(texts)
    times: dict[str, list[list[float]]] = {"splade": [[] for _ in texts],
                                           "bm25": [[] for _ in texts]}
    for round_ in range(ROUNDS):
        for i, (text, vector) in enumerate(zip(texts, vectors)):
            order = ("splade", "bm25") if (round_ + i) % 2 == 0 else ("bm25", "splade")
            for name in order:
                start = time.perf_counter()
                if name == "splade":
                    sparse.search(vector, K)
                else:
                    bm25.search(text, K)
                times[name][i].append(1000 * (time.perf_counter() - start))
    p50 = {name: statistics.median(statistics.median(t) for t in per_query)
           for name, per_query in times.items()}
    terms = [v.nnz for v in vectors]
    # private reads, for the why: SPLADE's column pointers, bm25s's score matrix's
    splade_postings = statistics.median(_postings(sparse._indptr, v.indices) for v in vectors)
    bm25_postings = statistics.median(_postings(bm25._retriever.scores["indptr"], bm25._terms(t))
                                      for t in texts)
    report = {
        "queries": len(texts), "k": K, "rounds": ROUNDS, "documents": len(sparse),
        "splade_search_ms_p50": round(p50["splade"], 3),
        "bm25_search_ms_p50": round(p50["bm25"], 3),
        "splade_over_bm25": round(p50["splade"] / p50["bm25"], 2),
        "splade_query_encoding_ms_mean": round(encode_ms, 1),
        "splade_query_terms_median": statistics.median(terms),
        "bm25_query_terms_median": statistics.median(len(bm25._terms(t)) for t in texts),
        "splade_postings_touched_median": splade_postings,
        "bm25_postings_touched_median": bm25_postings,
        "splade_ns_per_posting": round(1e6 * p50["splade"] / splade_postings, 1),
        "bm25_ns_per_posting": round(1e6 * p50["bm25"] / bm25_postings, 1),
        "splade_index_postings": sparse.nnz,
    }
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["sparse_speed"] = report
    write_result(results_path.name, results)
    for key, value in report.items():
        print(f"{key:<34} {value}")
    return report
