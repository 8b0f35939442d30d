"""Which tuning queries make ``ragmix tune`` hold on real questions (issue 16).

    nice -n 10 .venv/bin/python bench/bench_tune.py [--m 8] [--ef-construction 40]

SQuAD-open's 20,963 paragraphs, embedded with MiniLM by bench_retrieval.py (the
same collection under bench/.work/, built here if missing), are copied (vectors
and all, ``ragmix copy``) into an HNSW collection with a deliberately small
graph (M=8, ef_construction=40 by default), so a low ef_search loses neighbours
and the tuning queries matter. 1,000 seeded SQuAD-open dev questions are held
out. ``ragmix tune``'s search (``tune_search``, target recall@10 0.95, 1,000
tuning + 1,000 held-out queries) then runs on three samples:

- ``passage_vectors``: stored passage vectors (``--passage-vectors``);
- ``windows``: 6-12 word windows of passages embedded as queries (the CLI's default);
- ``questions``: 500 of the dev questions (``--queries``), the other 500 held out.

For each: the chosen ef_search, its recall on its own held-out sample, and the
recall@10 of all 1,000 questions at that value against exact search.

Writes bench/results/tune.json::

    {"collection": {..}, "index": {"M", "ef_construction"}, "target": 0.95,
     "samples": {"passage_vectors"|"windows"|"questions":
                 {"ef_search", "tune_recall@10", "holdout_recall@10",
                  "questions_recall@10", "reached_on_questions", "curve"}}}
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402

WORK = ROOT / "bench" / ".work"
TARGET, K, QUESTIONS = 0.95, 10, 1000


def questions_recall(backend, queries: np.ndarray, ef_search: int) -> float:
    """recall@K of ``queries`` at ``ef_search`` against the exact top-K (ties count)."""
    from ragmix.store.tune import exact_top_k, query_recalls

    scores, ids = backend.vector_search(queries, K, ef_search=ef_search)
    true_scores, true_ids = exact_top_k(backend, queries, K)
    return round(float(query_recalls(scores, ids, true_scores, true_ids).mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--dry-run", action="store_true", help="write no results file")
    args = parser.parse_args()

    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.store import Collection
    from ragmix.store.copy import copy_collection
    from ragmix.store.tune import tune_search
    from ragmix.store.tune_queries import window_queries

    folder = require_data(args.data)
    source = WORK / f"retrieval-squad-{canonical_name('minilm')}"
    index_corpus(source, folder / "paragraphs.jsonl", encoder="minilm")[0].close()
    target = WORK / f"tune-squad-hnsw-m{args.m}-efc{args.ef_construction}"
    if not (target / "manifest.json").exists():
        began = time.perf_counter()
        copy_collection(source, target, index="hnsw",
                        index_params={"M": args.m, "ef_construction": args.ef_construction})
        print(f"copied into HNSW in {time.perf_counter() - began:.0f} s", flush=True)
    lines = (folder / "dev-questions.jsonl").read_text().splitlines()
    texts = [json.loads(line)["question"] for line in lines]
    random.Random(0).shuffle(texts)
    with Collection.open(target) as col:
        backend, encoder = col.backend, col.encoder
        held_out = encoder.encode_queries(texts[:QUESTIONS])  # (1000, dim)
        windows = encoder.encode_queries(window_queries(backend, 2 * QUESTIONS, seed=0))
        samples = {"passage_vectors": {},
                   "windows": {"queries": windows},
                   "questions": {"queries": held_out, "sample": QUESTIONS // 2,
                                 "holdout": QUESTIONS // 2}}
        rows = {}
        for name, options in samples.items():
            result = tune_search(backend, recall=TARGET, k=K, **options)
            on_questions = questions_recall(backend, held_out, result.value)
            rows[name] = {"ef_search": result.value, "tune_recall@10": round(result.recall, 4),
                          "holdout_recall@10": result.holdout_recall,
                          "n_tune": result.n_tune, "n_holdout": result.n_holdout,
                          "questions_recall@10": on_questions,
                          "reached_on_questions": on_questions >= TARGET,
                          "curve": [{"ef_search": p.value, "recall@10": round(p.recall, 4)}
                                    for p in result.curve]}
            print(f"{name:<16} ef_search {result.value:>4}  tuning {result.recall:.4f}  "
                  f"held-out {result.holdout_recall}  questions {on_questions:.4f}", flush=True)
        chunks = backend.count_chunks()
    if args.dry_run:
        return
    path = write_result("tune.json", {
        "collection": {"corpus": "squad-open paragraphs", "chunks": chunks,
                       "encoder": canonical_name("minilm")},
        "index": {"kind": "hnsw", "M": args.m, "ef_construction": args.ef_construction},
        "target": TARGET, "k": K, "questions": {"split": "dev", "n": QUESTIONS, "seed": 0},
        "samples": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
