"""Scaling: synthetic collections of 10k, 100k and 1M passages, exact (flat) and HNSW.

    .venv/bin/python bench/bench_scaling.py [--sizes 10000,100000,1000000] [--queries 200]

For each size a synthetic corpus of 100-word passages (Zipf-distributed words
from a 30,000-word vocabulary, fixed seed) is written once to bench/.work/scaling/
as BEIR JSONL. Each (size, index kind) is then built by a fresh child process
through the whole ragmix pipeline: load, chunk, embed (the hashing encoder at
dim 384, MiniLM's width: MiniLM itself would need ~14 hours for 1M passages
on 2 cores), SQLite, FAISS and BM25. The child reports:

- build time (``Collection.add``, everything included), peak resident memory
  (the child's ru_maxrss), on-disk size of the collection;
- query latency (p50/p95) of dense search through ``Collection.search`` (hits
  with their text) and of BM25, for queries that are 12-word windows of
  random passages;
- for HNSW, recall@10 against the flat (exact) run's results on the same queries,
  and for every run how often the query's own passage ranks first ("source@1").
  Random text has no topical structure, so after the source passage the
  top-10 are near-ties: the hardest case for HNSW's recall@10.

Writes bench/results/scaling.json and bench/results/scaling.png (log-log).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import RESULTS, ROOT, percentile, write_result  # noqa: E402

WORK = ROOT / "bench" / ".work" / "scaling"
VOCAB, WORDS, DIM, K = 30_000, 100, 384, 10
KINDS = ("flat", "hnsw")


# -- the synthetic corpus ---------------------------------------------------------
def vocabulary(rng: np.random.Generator) -> np.ndarray:
    """VOCAB distinct lower-case pseudo-words, 3 to 10 letters."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < VOCAB:
        n = int(rng.integers(3, 11))
        words.add("".join(rng.choice(letters, n)))
    return np.array(sorted(words))


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` passages of WORDS Zipf-distributed words as BEIR JSONL (written once)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    weights = 1.0 / np.arange(1, VOCAB + 1) ** 1.07  # Zipf's law, as in English text
    weights /= weights.sum()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for start in range(0, n, 10_000):
            rows = min(10_000, n - start)
            ids = rng.choice(VOCAB, size=(rows, WORDS), p=weights)  # (rows, WORDS)
            for i, row in enumerate(vocab[ids]):
                fh.write(json.dumps({"_id": f"p{start + i}", "title": "",
                                     "text": " ".join(row)}) + "\n")
    tmp.rename(path)
    return path


def sample_queries(path: Path, n_passages: int, n: int, seed: int = 1) -> list[tuple[str, str]]:
    """(passage id, a 12-word window of it) for ``n`` random passages of the corpus."""
    rng = np.random.default_rng(seed)
    wanted = set(rng.choice(n_passages, size=min(n, n_passages), replace=False).tolist())
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i in wanted:
                words = json.loads(line)["text"].split()
                start = int(rng.integers(0, WORDS - 12))
                out.append((f"p{i}", " ".join(words[start : start + 12])))
    return out


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -- one build, in a child process ------------------------------------------------
def child(corpus: Path, size: int, kind: str, queries: int, exact_file: Path,
          ef_construction: int | None = None) -> dict:
    from ragmix.chunking import make_chunker
    from ragmix.store import Collection

    folder = WORK / f"col-{size}-{kind}"
    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    params = ({"ef_construction": ef_construction}
              if kind == "hnsw" and ef_construction is not None else None)
    col = Collection.create(folder, encoder=f"hashing-{DIM}", index=kind, index_params=params,
                            chunker=make_chunker("words", size=WORDS))
    report = col.add([corpus])
    build_s = time.perf_counter() - began
    ingest_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before search
    assert report.chunks == size, (report.chunks, size)
    sampled = sample_queries(corpus, size, queries)
    texts = [q for _, q in sampled]
    col.search(texts[0], K, mode="dense")  # warm: loads the views
    col.search(texts[0], K, mode="bm25")
    timings: dict[str, list[float]] = {"dense": [], "bm25": []}
    results = []
    source_first = {"dense": 0, "bm25": 0}  # the query's own passage ranked first
    for source, q in sampled:
        for mode in ("dense", "bm25"):
            t = time.perf_counter()
            hits = col.search(q, K, mode=mode)
            timings[mode].append((time.perf_counter() - t) * 1000)
            source_first[mode] += bool(hits) and hits[0].doc_id == source
            if mode == "dense":
                results.append([h.chunk_id for h in hits])
    col.close()
    out = {
        "size": size, "kind": kind, "build_s": round(build_s, 2),
        "index_params": col.manifest.index,
        "passages_per_s": round(size / build_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ingest_peak_rss_mb": round(ingest_peak_mb, 1),
        "disk_mb": round(disk_bytes(folder) / 2**20, 1),
        "index_mb": round((folder / "dense.faiss").stat().st_size / 2**20, 1),
        "dense_ms_p50": round(percentile(timings["dense"], 50), 3),
        "dense_ms_p95": round(percentile(timings["dense"], 95), 3),
        "bm25_ms_p50": round(percentile(timings["bm25"], 50), 3),
        "bm25_ms_p95": round(percentile(timings["bm25"], 95), 3),
        "queries": len(texts),
        "dense_source_at_1": round(source_first["dense"] / len(texts), 4),
        "bm25_source_at_1": round(source_first["bm25"] / len(texts), 4),
    }
    if kind == "flat":
        exact_file.write_text(json.dumps(results))
    elif exact_file.exists():
        exact = json.loads(exact_file.read_text())
        out["recall@10_vs_exact"] = round(float(np.mean(
            [len(set(a) & set(e)) / len(e) for a, e in zip(results, exact) if e])), 4)
    shutil.rmtree(folder, ignore_errors=True)  # 1M passages take GBs; the figures are kept
    return out


# -- the driver ---------------------------------------------------------------------
def plot(rows: list[dict], path: Path) -> None:
    from ragmix.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels = [("build_s", "build time (s)"), ("peak_rss_mb", "peak memory (MB)"),
              ("disk_mb", "on-disk size (MB)"), ("dense_ms_p50", "query p50 (ms)")]
    for ax, (key, label) in zip(axes, panels):
        for kind in KINDS:
            pts = sorted((r["size"], r[key]) for r in rows if r["kind"] == kind)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=kind)
        if key == "dense_ms_p50":
            pts = sorted((r["size"], r["bm25_ms_p50"]) for r in rows if r["kind"] == "flat")
            if pts:
                ax.plot(*zip(*pts), marker="s", linestyle="--", label="bm25")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("passages")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("ragmix scaling (synthetic 100-word passages, dim 384, 2 CPU cores)", y=1.04)
    _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-construction", type=int, default=None,
                        help="HNSW efConstruction (default: ragmix's, 200)")
    parser.add_argument("--child", nargs=3, metavar=("CORPUS", "SIZE", "KIND"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        corpus, size, kind = Path(args.child[0]), int(args.child[1]), args.child[2]
        exact = WORK / f"exact-{size}.json"
        print(json.dumps(child(corpus, size, kind, args.queries, exact, args.ef_construction)))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        corpus = write_corpus(WORK / f"corpus-{size}.jsonl", size)
        print(f"corpus of {size:,} passages ready ({time.perf_counter() - t:.0f} s)", flush=True)
        for kind in args.kinds.split(","):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(corpus), str(size), kind,
                 "--queries", str(args.queries),
                 *(["--ef-construction", str(args.ef_construction)]
                   if args.ef_construction else [])],
                capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{size} {kind} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    previous = RESULTS / "scaling.json"  # rows of other sizes/kinds are kept
    if previous.exists():
        done = {(r["size"], r["kind"]) for r in rows}
        rows = [r for r in json.loads(previous.read_text()).get("rows", [])
                if (r["size"], r["kind"]) not in done] + rows
        rows.sort(key=lambda r: (r["size"], r["kind"]))
    flat_1m = next((r for r in rows if (r["size"], r["kind"]) == (1_000_000, "flat")
                    and "ingest_peak_rss_mb" in r), None)
    streaming = ({"ingest_peak_mb_1M": flat_1m["ingest_peak_rss_mb"],
                  "index_mb_1M": flat_1m["index_mb"],
                  "streaming_target_met":
                      flat_1m["ingest_peak_rss_mb"] <= flat_1m["index_mb"] + 1024}
                 if flat_1m else {})
    path = write_result("scaling.json", {
        **streaming, "rows": rows, "encoder": f"hashing-{DIM}", "words_per_passage": WORDS,
        "vocabulary": VOCAB, "k": K,
        "notes": "Build = Collection.add from JSONL: load, chunk, embed (hashing encoder), "
                 "SQLite, FAISS, BM25. Latency through Collection.search (hits with text). "
                 "recall@10_vs_exact: HNSW (M=32, efConstruction=200, efSearch=128) "
                 "against the flat index on the same queries."})
    plot(rows, RESULTS / "scaling.png")
    print(f"{'size':>9} {'kind':>5} {'build s':>8} {'peak MB':>8} {'disk MB':>8} "
          f"{'dense p50':>9} {'bm25 p50':>9} {'R@10':>6}")
    for r in rows:
        print(f"{r['size']:>9,} {r['kind']:>5} {r['build_s']:>8.1f} {r['peak_rss_mb']:>8.0f} "
              f"{r['disk_mb']:>8.0f} {r['dense_ms_p50']:>9.2f} {r['bm25_ms_p50']:>9.2f} "
              f"{r.get('recall@10_vs_exact', '-')!s:>6}")
    print(f"wrote {path} and {RESULTS / 'scaling.png'}")


if __name__ == "__main__":
    main()
