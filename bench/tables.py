"""Print the Markdown tables of BENCHMARKS.md from bench/results/*.json (no re-measuring).

    .venv/bin/python bench/tables.py [retrieval|qa|speed|scaling|decoding|rerank|tune ...]
"""

from __future__ import annotations

import json
import sys

from _common import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def retrieval() -> None:
    for dataset in ("scifact", "squad"):
        data = _load(f"retrieval_{dataset}.json")
        if not data:
            continue
        int8 = _load(f"retrieval_{dataset}_minilm_int8.json") or {}
        keys = ["ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@20", "recall@100"]
        print(f"\n{dataset} ({data['queries']} queries, {data['encoder']}, {data['measured_at']})\n")
        print(_row(["mode", *keys, "nDCG@10 int8", "p50 ms"]))
        print(_row(["---"] * (len(keys) + 3)))
        for mode, row in data.items():
            if isinstance(row, dict) and "ndcg@10" in row:
                other = int8.get(mode, {}).get("ndcg@10", "")
                print(_row([mode, *(f"{row[k]:.4f}" if k in row else "" for k in keys),
                            f"{other:.4f}" if other != "" else "", row.get("query_ms_p50", "")]))


def qa() -> None:
    data = _load("qa_squad.json")
    if not data:
        return
    keys = ["em", "f1", "contains", "answer_recall@1", "answer_recall@5", "answer_recall@20",
            "s_per_question"]
    print(_row(["mode", "questions", "retrieval", *keys]))
    print(_row(["---"] * (len(keys) + 3)))
    for mode, row in data.items():
        if isinstance(row, dict) and "em" in row:
            print(_row([mode, row["questions"], f"{row['retrieval']} ({row['fusion']})",
                        *(f"{row[k]:.4f}" if k in row else "" for k in keys)]))


def speed() -> None:
    data = _load("speed.json")
    if not data:
        return
    print(json.dumps({k: v for k, v in data.items() if k != "machine"}, indent=1)[:6000])


def scaling() -> None:
    data = _load("scaling.json")
    if not data:
        return
    cols = ["size", "kind", "build_s", "passages_per_s", "peak_rss_mb", "disk_mb",
            "dense_ms_p50", "dense_ms_p95", "bm25_ms_p50", "recall@10_vs_exact"]
    print(_row(cols))
    print(_row(["---"] * len(cols)))
    for r in data["rows"]:
        print(_row([f"{r[c]:,}" if c == "size" else r.get(c, "") for c in cols]))


def decoding() -> None:
    data = _load("rag_decoding.json")
    if not data:
        return
    print(_row(["mode", "s per answer", "x single"]))
    print(_row(["---"] * 3))
    for mode, row in data["smollm2"].items():
        print(_row([mode, row["s_per_answer"], row["x_single"]]))
    for mode, row in data.get("tiny_bart_vs_transformers", {}).items():
        print(_row([mode, row["ragmix_s"], row["transformers_s"], row["speedup"]]))


def rerank() -> None:
    """Two-stage retrieval (bench_rerank.py): held-out train queries beside the test split."""
    data = _load("rerank.json")
    if not data:
        return
    columns = {"scifact": ["ndcg@10", "recall@100", "mrr@10"],
               "squad": ["recall@1", "recall@5", "recall@20"]}
    for dataset, keys in columns.items():
        test, held = data.get(dataset, {}), data.get(f"{dataset}_heldout", {})
        if not (test or held):
            continue
        print(f"\n{dataset}: {data.get(f'{dataset}_queries', '?')} test queries, "
              f"{data.get(f'{dataset}_heldout_queries', '?')} held-out train queries "
              f"(results file last written {data['measured_at']})\n")
        print(_row(["pipeline", *(f"held-out {k}" for k in keys[:1]), *keys, "ms p50",
                    "saw SciFact training data" if dataset == "scifact" else "depth"]))
        print(_row(["---"] * (len(keys) + 4)))
        for name in dict.fromkeys([*held, *test]):
            t, h = test.get(name, {}), held.get(name, {})
            row = t or h
            last = (("yes" if row.get("trained_on_scifact") else "no") if dataset == "scifact"
                    else row.get("depth") or "-")
            ms = t.get("ms_p50")
            print(_row([name, h.get(keys[0], "-"), *(t.get(k, "-") for k in keys),
                        "-" if ms is None else f"{ms:.0f}", last]))
    ce_latency(data.get("ce_latency"))
    sparse_speed(data.get("sparse_speed"))


def sparse_speed(data: dict | None) -> None:
    """SPLADE's inverted index against BM25's, search alone (bench_rerank.py sparse-speed)."""
    if not data:
        return
    print(f"\nkeyword indexes, search alone: {data['queries']} SciFact test queries, top "
          f"{data['k']} of {data['documents']} documents, median of {data['rounds']} rounds\n")
    print(_row(["index", "ms p50", "query terms", "postings touched", "ns a posting"]))
    print(_row(["---"] * 5))
    for name in ("splade", "bm25"):
        print(_row([name, data[f"{name}_search_ms_p50"], data[f"{name}_query_terms_median"],
                    data[f"{name}_postings_touched_median"], data[f"{name}_ns_per_posting"]]))


def ce_latency(data: dict | None) -> None:
    """The cross-encoder's time over a query's top 50 per precision (bench_rerank.py ce-latency)."""
    if not data:
        return
    first = next(iter(data["variants"].values()))
    print(f"\ncross-encoder {data['model']}: {first['queries']} SciFact test queries, their "
          f"hybrid top {first['depth']}\n")
    print(_row(["precision", "tokens a pair", "ms p50 (scoring only)", "correlation with float32"]))
    print(_row(["---"] * 4))
    for name, row in data["variants"].items():
        print(_row([name, row["max_length"], f"{row['ms_p50']:.0f}", row["corr_with_float32"]]))


def tune() -> None:
    """ragmix tune's tuning queries (bench_tune.py): the ef_search each chose, and the
    recall@10 of held-out real questions at it."""
    data = _load("tune.json")
    if not data:
        return
    index = data["index"]
    print(f"\n{data['collection']['chunks']} SQuAD-open paragraphs, HNSW M={index['M']} "
          f"ef_construction={index['ef_construction']}, target recall@{data['k']} "
          f"{data['target']}, {data['questions']['n']} dev questions ({data['measured_at']})\n")
    print(_row(["tuning queries", "ef_search chosen", "tuning recall", "own held-out recall",
                "dev questions' recall", "reaches target on questions"]))
    print(_row(["---"] * 6))
    for name, row in data["samples"].items():
        print(_row([name.replace("_", " "), row["ef_search"], f"{row['tune_recall@10']:.4f}",
                    f"{row['holdout_recall@10']:.4f}", f"{row['questions_recall@10']:.4f}",
                    "yes" if row["reached_on_questions"] else "**no**"]))


def pg() -> None:
    """SciFact through PostgreSQL + pgvector beside the embedded backend (bench_pg.py)."""
    data = _load("pg.json")
    if not data:
        return
    print(f"\n{data['queries']} SciFact test queries, {data['documents']} documents, "
          f"{data['encoder']}; {data['postgres']} ({data['measured_at']})\n")
    print(_row(["search", "backend", "nDCG@10", "p50 ms (Collection.search)",
                "vector search p50 ms (k=10)"]))
    print(_row(["---"] * 5))
    for section in ("keyword", "dense", "hybrid"):
        for name, row in data[section].items():
            if isinstance(row, dict) and "ndcg@10" in row:
                vec = row.get("vector_p50_ms")
                print(_row([section, name, f"{row['ndcg@10']:.4f}", f"{row['p50_ms']:.1f}",
                            "-" if vec is None else f"{vec:.2f}"]))


def scale() -> None:
    """Embedded against pgvector on 100k and 1M structured vectors (bench_scale.py)."""
    data = _load("scale.json")
    if not data:
        return
    print(_row(["backend", "vectors", "build (s)", "peak memory (MB)", "disk (MB)",
                "ef_search", "recall@10", "p50 ms", "p99 ms", "recall@10 by ef_search"]))
    print(_row(["---"] * 10))
    for backend in ("embedded", "pgvector", "pgvector-halfvec", "pgvector-m16"):
        for size, c in data.get(backend, {}).items():
            curve = ", ".join(f"{p['ef_search']}: {p['recall@10']:.3f}"
                              + ("" if p.get("index_scan", True) else " (exact scan)")
                              for p in c["curve"])
            ef = f"{c['ef_search']}" + ("" if c["reaches_0.95"] else " (best; none reached 0.95)")
            print(_row([backend, size, f"{c['build_s']:.0f}", f"{c['peak_mb']:,.0f}",
                        f"{c['disk_mb']:,.0f}", ef, f"{c['recall@10']:.3f}",
                        f"{c['p50_ms']:.2f}", f"{c['p99_ms']:.2f}", curve]))


def ray() -> None:
    """Ray ingest with 1 and 2 actors, and sharded search (bench_ray.py)."""
    data = _load("ray.json")
    if not data:
        return
    print(f"\n{data['corpus']}, {data['encoder']}; local Ray cluster of 2 CPUs, started in "
          f"{data['ray_start_s']} s ({data['measured_at']})\n")
    print(_row(["ingest", "actors", "passages", "seconds", "passages/s", "stores what local does"]))
    print(_row(["---"] * 6))
    for name, run in data["ingest"].items():
        same = run.get("same_as_local")
        print(_row([name, run["actors"] or "- (no Ray)", run["passages"], run["seconds"],
                    run["ingest_per_s"], "-" if same is None else "yes" if same else "**no**"]))
    s = data["sharded"]
    print(f"\nsharded search, {s['shards']} shards on {s['shards']} actors, {s['queries']} "
          f"queries, k={s['k']}: ids identical {s['ids_equal']}, scores identical "
          f"{s['scores_equal']}; p50 {s['sharded_p50_ms']} ms against "
          f"{s['one_index_p50_ms']} ms for one index in-process")


def streaming() -> None:
    """Streaming ingest at 1M passages (bench_scaling.py's 1M flat row)."""
    data = _load("scaling.json")
    row = next((r for r in (data or {}).get("rows", [])
                if (r["size"], r["kind"]) == (1_000_000, "flat") and "ingest_peak_rss_mb" in r),
               None)
    if row is None:
        return
    print(_row(["passages", "build (s)", "ingest peak (MB)", "FAISS index (MB)",
                "peak after searching (MB)", "ingest peak <= index + 1 GB"]))
    print(_row(["---"] * 6))
    print(_row([f"{row['size']:,}", f"{row['build_s']:.0f}", f"{row['ingest_peak_rss_mb']:,.0f}",
                f"{row['index_mb']:,.0f}", f"{row['peak_rss_mb']:,.0f}",
                "yes" if data["streaming_target_met"] else "**no**"]))


if __name__ == "__main__":
    for name in sys.argv[1:] or ["retrieval", "qa", "speed", "scaling", "decoding", "rerank"]:
        print(f"\n## {name}")
        globals()[name]()
