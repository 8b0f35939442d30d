"""Foundation benchmark on SciFact: indexing throughput and query latency, beside raw peers.

    .venv/bin/python bench/bench_foundation.py [--data ../shared/data/scifact]

Writes bench/results/foundation.json. ragmix and each raw peer (bm25s alone,
FAISS alone) run on the same chunks, same model and same queries, interleaved
query by query in one process, so their ratio is fair on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
from _common import DATA, percentile, require_data, timed, write_result  # noqa: E402

from ragmix.store import Collection  # noqa: E402

K = 10


def load_test_queries(folder: Path) -> list[str]:
    test_ids = {line.split("\t")[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    return [q["text"] for q in queries if q["_id"] in test_ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the test queries")
    args = parser.parse_args()
    folder = require_data(args.data)
    queries = load_test_queries(folder)
    workdir = Path(tempfile.mkdtemp(prefix="ragmix-bench-"))
    try:
        run(folder, queries, workdir, args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(folder: Path, queries: list[str], workdir: Path, rounds: int) -> None:
    import bm25s
    import faiss
    import Stemmer

    col = Collection.create(workdir / "col")  # the defaults: MiniLM, flat, 100-word passages
    encoder = col.encoder  # load the model before the clock starts
    began = time.perf_counter()
    report = col.add([folder / "corpus.jsonl"])
    ingest_s = time.perf_counter() - began
    n_chunks = report.chunks

    # BM25 build alone: rebuild the view from the stored texts.
    col.views._bm25 = None
    (workdir / "col" / "views.json").write_text("{}")
    began = time.perf_counter()
    col.views.bm25(persist=True)
    bm25_build_s = time.perf_counter() - began

    ids, texts = [], []
    for batch_ids, batch_texts in col.store.iter_texts():
        ids.append(batch_ids)
        texts += batch_texts
    vectors = col.store.embeddings(np.concatenate(ids), col.manifest.dim)

    # Raw peers on the same chunks.
    stemmer = Stemmer.Stemmer("english")
    raw_bm25 = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    raw_bm25.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                   show_progress=False)
    raw_faiss = faiss.IndexFlatIP(vectors.shape[1])
    raw_faiss.add(vectors)
    model = encoder.model

    def peer_bm25(q: str):
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        return raw_bm25.retrieve(tokens, k=K, show_progress=False, n_threads=1)

    def peer_faiss(q: str):
        vec = model.encode([q], normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
        return raw_faiss.search(np.asarray(vec, dtype=np.float32), K)

    for mode in ("dense", "bm25", "hybrid"):  # warm-up: views loaded, caches hot
        col.search(queries[0], K, mode=mode)
    peer_bm25(queries[0])
    peer_faiss(queries[0])

    times: dict[str, list[float]] = {k: [] for k in ("dense", "bm25", "hybrid", "bm25s", "faiss")}
    pairs = {"bm25": "bm25s", "dense": "faiss"}
    for r in range(rounds):
        for i, q in enumerate(queries):
            # alternate who goes first so neither side always meets a cold cache
            order = [("ours", "bm25"), ("peer", "bm25s"), ("ours", "dense"), ("peer", "faiss"),
                     ("ours", "hybrid")]
            if (i + r) % 2:
                order = [order[1], order[0], order[3], order[2], order[4]]
            for side, name in order:
                if side == "ours":
                    times[name].append(timed(lambda: col.search(q, K, mode=name)))
                elif name == "bm25s":
                    times[name].append(timed(lambda: peer_bm25(q)))
                else:
                    times[name].append(timed(lambda: peer_faiss(q)))

    p50 = {name: round(percentile(v, 50), 3) for name, v in times.items()}
    p99 = {name: round(percentile(v, 99), 3) for name, v in times.items()}
    result = {
        "dataset": "scifact",
        "documents": report.added,
        "chunks": n_chunks,
        "queries": len(queries) * rounds,
        "k": K,
        "index_chunks_per_s": {
            "embedding_ingest": round(n_chunks / ingest_s, 1),
            "bm25": round(n_chunks / bm25_build_s, 1),
        },
        "index_seconds": {"ingest_total": round(ingest_s, 2), "bm25_build": round(bm25_build_s, 3)},
        "query_ms_p50": {m: p50[m] for m in ("dense", "bm25", "hybrid")},
        "query_ms_p99": {m: p99[m] for m in ("dense", "bm25", "hybrid")},
        "peer_query_ms_p50": {"bm25s": p50["bm25s"], "faiss": p50["faiss"]},
        "peer_query_ms_p99": {"bm25s": p99["bm25s"], "faiss": p99["faiss"]},
        "overhead_ratio_p50": {ours: round(p50[ours] / p50[peer], 3) for ours, peer in pairs.items()},
        "notes": "ragmix returns materialised hits (text, source, offsets, p(z|x)); the peers "
                 "return ids and scores. The dense peer encodes the query with the same "
                 "SentenceTransformer and searches a raw IndexFlatIP.",
    }
    col.close()
    path = write_result("foundation.json", result)
    print(f"{'':<10}{'p50 ms':>10}{'p99 ms':>10}{'peer p50':>10}{'ratio':>8}")
    for ours, peer in (("dense", "faiss"), ("bm25", "bm25s"), ("hybrid", None)):
        ratio = result["overhead_ratio_p50"].get(ours, "")
        print(f"{ours:<10}{p50[ours]:>10.3f}{p99[ours]:>10.3f}"
              f"{(p50[peer] if peer else float('nan')):>10.3f}{ratio!s:>8}")
    print(f"indexing: {result['index_chunks_per_s']} chunks/s; wrote {path}")


if __name__ == "__main__":
    main()
