"""Ray on this machine: ingest passages/s with 1 and 2 embedding actors, and sharded search.

Full run (the lead's; about 5 minutes on 2 quiet cores):

    nice -n 10 .venv/bin/python bench/bench_ray.py

Smoke test (no results file): ``bench/bench_ray.py --docs 40 --queries 10 --dry-run``.

Ingest: the first ``--docs`` SciFact documents, cut into the paper's 100-word
passages, embedded by the packaged all-MiniLM-L6-v2 (float32), each run into a
fresh embedded collection (FAISS flat):

- ``local``: :meth:`Collection.add_documents`, no Ray: one process whose encoder
  uses both cores (torch's own threads), the baseline;
- ``ray-1`` and ``ray-2``: :func:`ragmix.distributed.ingest_documents_with_ray` with
  1 and 2 actors of one CPU each, on a local Ray cluster of 2 CPUs started once
  (its start is timed apart, ``ray_start_s``). A run's seconds include starting
  its actors and loading the model in each, as a user's ``ragmix index --ray`` would.

``ingest_per_s`` is passages (chunks) per second of the whole run. Every Ray run
must store the chunk ids and vectors the local run stores (``same_as_local``).

Sharded search: the ``ray-2`` collection's vectors written as 2 shards
(:func:`ragmix.distributed.shard_backend`), searched by 2 actors
(:class:`ragmix.distributed.ShardedSearcher`, each shard memory-mapped in its
actor), against the collection's own exact index, for ``--queries`` SciFact test
queries embedded by MiniLM, k=10: ``sharded_equal`` is true when the ids and the
float32 scores are identical for every query. Latency (one query per call, after
an untimed pass): p50 of each.

Writes bench/results/ray.json; its ``summary`` (``{"ingest_per_s": {"1", "2"},
"sharded_equal"}``) is what bench_scale.py copies into scale.json as ``"ray"``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, ROOT, percentile, require_data, write_result  # noqa: E402

WORK = ROOT / "bench" / ".work" / "ray"
K = 10
RUNS = {"local": 0, "ray-1": 1, "ray-2": 2}  # name -> actors (0: no Ray)


def documents(corpus: Path, n: int):
    from ragmix.documents import load_paths

    return itertools.islice(load_paths([corpus]), n)


def ingest_run(name: str, actors: int, corpus: Path, n_docs: int) -> tuple[dict, Path]:
    """Index the first ``n_docs`` documents into a fresh collection; what it took."""
    from ragmix.chunking import make_chunker
    from ragmix.distributed import ingest_documents_with_ray
    from ragmix.store import Collection

    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    col = Collection.create(folder, encoder="minilm", index="flat",
                            chunker=make_chunker("words", size=100))
    try:
        began = time.perf_counter()
        if actors:
            report = ingest_documents_with_ray(col, documents(corpus, n_docs),
                                               concurrency=actors, num_cpus=1.0)
        else:
            report = col.add_documents(documents(corpus, n_docs))
        seconds = time.perf_counter() - began
    finally:
        col.close()
    return {"actors": actors, "documents": report.added, "passages": report.chunks,
            "seconds": round(seconds, 2),
            "ingest_per_s": round(report.chunks / seconds, 1)}, folder


def stored(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from ragmix.store import Collection

    with Collection.open(folder) as col:
        ids = np.asarray(col.backend.chunk_ids(), dtype=np.int64)
        return ids, col.backend.embeddings(ids.tolist())


def sharded_search(folder: Path, queries: list[str]) -> dict:
    """2 shards on 2 actors against the collection's exact index, query by query."""
    from ragmix.distributed import ShardedSearcher, shard_backend
    from ragmix.store import Collection

    with Collection.open(folder) as col:
        vectors = col.encoder.encode_queries(queries)  # (q, dim)
        shard_dir = WORK / "shards"
        shutil.rmtree(shard_dir, ignore_errors=True)
        shard_backend(col.backend, shard_dir, 2)
        want = col.backend.vector_search(vectors, K)  # (scores, ids), each (q, K)
        one_ms = _per_query_ms(lambda v: col.backend.vector_search(v, K), vectors)
        with ShardedSearcher.open(shard_dir, num_cpus=0.5) as searcher:
            got = searcher.search(vectors, K)
            sharded_ms = _per_query_ms(lambda v: searcher.search(v, K), vectors)
    ids_equal = bool(np.array_equal(got[1], want[1]))
    scores_equal = bool(np.array_equal(got[0], want[0]))
    return {"shards": 2, "queries": len(queries), "k": K, "ids_equal": ids_equal,
            "scores_equal": scores_equal,
            "max_abs_score_diff": float(np.max(np.abs(got[0] - want[0]))),
            "sharded_equal": ids_equal and scores_equal,
            "one_index_p50_ms": round(percentile(one_ms, 50), 3),
            "sharded_p50_ms": round(percentile(sharded_ms, 50), 3),
            "sharded_p99_ms": round(percentile(sharded_ms, 99), 3)}


def _per_query_ms(search, vectors: np.ndarray) -> list[float]:
    for v in vectors:  # untimed pass
        search(v[None, :])
    out = []
    for v in vectors:
        began = time.perf_counter()
        search(v[None, :])
        out.append((time.perf_counter() - began) * 1000)
    return out


def test_queries(data: Path, n: int) -> list[str]:
    from ragmix.evaluation.datasets import load_beir

    split = load_beir(data)
    return [split.queries[q] for q in sorted(split.queries)[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact",
                        help="a BEIR folder (default ../shared/data/scifact)")
    parser.add_argument("--docs", type=int, default=1000, help="documents to index per run")
    parser.add_argument("--queries", type=int, default=300, help="test queries to search")
    parser.add_argument("--dry-run", action="store_true", help="print, write no results file")
    args = parser.parse_args()
    if args.docs <= 0 or args.queries <= 0:
        parser.error(f"--docs and --queries must be > 0, got {args.docs} and {args.queries}")
    corpus = require_data(args.data) / "corpus.jsonl"
    from ragmix.distributed import connect, shutdown

    WORK.mkdir(parents=True, exist_ok=True)
    runs, folders = {}, {}
    runs["local"], folders["local"] = ingest_run("local", 0, corpus, args.docs)
    print("local", runs["local"], flush=True)
    began = time.perf_counter()
    connect(num_cpus=2)
    ray_start_s = round(time.perf_counter() - began, 2)
    try:
        want = stored(folders["local"])
        for name in ("ray-1", "ray-2"):
            runs[name], folders[name] = ingest_run(name, RUNS[name], corpus, args.docs)
            got = stored(folders[name])
            runs[name]["same_as_local"] = bool(np.array_equal(got[0], want[0])
                                               and np.allclose(got[1], want[1], atol=1e-5))
            print(name, runs[name], flush=True)
        sharded = sharded_search(folders["ray-2"], test_queries(args.data, args.queries))
    finally:
        shutdown()
    print("sharded", sharded, flush=True)
    summary = {"ingest_per_s": {"1": runs["ray-1"]["ingest_per_s"],
                                "2": runs["ray-2"]["ingest_per_s"]},
               "local_ingest_per_s": runs["local"]["ingest_per_s"],
               "sharded_equal": sharded["sharded_equal"]}
    if args.dry_run:
        print("dry run: no results file written")
        return
    path = write_result("ray.json", {
        "summary": summary, "ingest": runs, "ray_start_s": ray_start_s, "sharded": sharded,
        "corpus": f"first {args.docs} SciFact documents, 100-word passages",
        "encoder": "all-MiniLM-L6-v2 (float32)"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
