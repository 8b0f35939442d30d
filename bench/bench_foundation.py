"""Foundation benchmark on SciFact: indexing throughput and query latency, beside raw peers.

    .venv/bin/python bench/bench_foundation.py [--data ../shared/data/scifact]

Writes bench/results/foundation.json. ragmix and each raw peer (bm25s alone,
FAISS alone) run on the same chunks, same model and same queries, interleaved
query by query in one process, so their ratio is fair on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, ROOT, percentile, require_data, timed, write_result  # noqa: E402

from ragmix.store import Collection  # noqa: E402
from ragmix.types import ScoredId  # noqa: E402

K = 10


def load_test_queries(folder: Path) -> list[str]:
    test_ids = {line.split("\t")[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    return [q["text"] for q in queries if q["_id"] in test_ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the test queries")
    parser.add_argument("--ingest-docs", type=int, default=500,
                        help="documents in the timed ingest run (MiniLM on CPU is ~20 chunks/s)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work" / "scifact-minilm",
                        help="full collection, kept between runs (embedding it takes ~10 min)")
    args = parser.parse_args()
    folder = require_data(args.data)
    queries = load_test_queries(folder)
    run(folder, queries, args.work, args.rounds, args.ingest_docs)


def timed_ingest(corpus: Path, n_docs: int, encoder) -> tuple[int, float]:
    """Embedding ingest throughput on the first ``n_docs`` documents, in a fresh collection."""
    from ragmix.documents import load_paths

    docs = []
    for item in load_paths([corpus]):
        docs.append(item)
        if len(docs) == n_docs:
            break
    workdir = Path(tempfile.mkdtemp(prefix="ragmix-bench-"))
    try:
        with Collection.create(workdir / "col", encoder=encoder) as col:
            began = time.perf_counter()
            report = col.add_documents(docs)
            return report.chunks, time.perf_counter() - began
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(folder: Path, queries: list[str], work: Path, rounds: int, ingest_docs: int) -> None:
    import bm25s
    import faiss
    import Stemmer

    from ragmix.encoders import load_encoder

    encoder = load_encoder("minilm")  # loaded before any clock starts
    ingest_chunks, ingest_s = timed_ingest(folder / "corpus.jsonl", ingest_docs, encoder)
    print(f"ingest: {ingest_chunks} chunks in {ingest_s:.1f}s")

    col = Collection.open_or_create(work, encoder=encoder)  # defaults: flat, 100-word passages
    from rich.console import Console

    from ragmix.cli.progress import RichProgress

    with RichProgress(Console(stderr=True)) as progress:  # no-op when the cache is complete
        col.add([folder / "corpus.jsonl"], progress=progress)
    n_chunks = col.store.count_chunks()

    # BM25 build alone: rebuild the view from the stored texts.
    began = time.perf_counter()
    col.views.bm25(persist=True, rebuild=True)
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

    # The same dense search with the query already embedded: ragmix's index wrapper and hit
    # materialisation against a bare IndexFlatIP search, to show the overhead the encoder hides.
    dense_index = col.views.dense(persist=False)
    query_vectors = encoder.encode_queries(queries)  # (q, dim)

    def ours_vector(i: int):
        scores, ids = dense_index.search(query_vectors[i : i + 1], K)
        return col.hits([ScoredId(int(c), float(v)) for v, c in zip(scores[0], ids[0]) if c >= 0])

    times: dict[str, list[float]] = {
        k: [] for k in ("dense", "bm25", "hybrid", "bm25s", "faiss", "dense_vec", "faiss_vec")
    }
    for i in range(len(queries)):
        if i % 2:
            times["dense_vec"].append(timed(lambda: ours_vector(i)))
            times["faiss_vec"].append(timed(lambda: raw_faiss.search(query_vectors[i : i + 1], K)))
        else:
            times["faiss_vec"].append(timed(lambda: raw_faiss.search(query_vectors[i : i + 1], K)))
            times["dense_vec"].append(timed(lambda: ours_vector(i)))
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
        "documents": col.store.count_documents(),
        "chunks": n_chunks,
        "queries": len(queries) * rounds,
        "k": K,
        "index_chunks_per_s": {
            "embedding_ingest": round(ingest_chunks / ingest_s, 1),
            "bm25": round(n_chunks / bm25_build_s, 1),
        },
        "index_seconds": {
            f"ingest_{ingest_chunks}_chunks": round(ingest_s, 2),
            f"bm25_build_{n_chunks}_chunks": round(bm25_build_s, 3),
        },
        "query_ms_p50": {m: p50[m] for m in ("dense", "bm25", "hybrid")},
        "query_ms_p99": {m: p99[m] for m in ("dense", "bm25", "hybrid")},
        "peer_query_ms_p50": {"bm25s": p50["bm25s"], "faiss": p50["faiss"]},
        "peer_query_ms_p99": {"bm25s": p99["bm25s"], "faiss": p99["faiss"]},
        "overhead_ratio_p50": {ours: round(p50[ours] / p50[peer], 3) for ours, peer in pairs.items()},
        "search_only_ms_p50": {"ragmix_dense_hits": p50["dense_vec"], "faiss": p50["faiss_vec"],
                               "ratio": round(p50["dense_vec"] / p50["faiss_vec"], 3)},
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
    print(f"dense search given the query vector: ragmix {p50['dense_vec']:.3f} ms (with hits) vs "
          f"raw FAISS {p50['faiss_vec']:.3f} ms")
    print(f"indexing: {result['index_chunks_per_s']} chunks/s; wrote {path}")


if __name__ == "__main__":
    main()
