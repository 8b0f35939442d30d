"""Embedded (FAISS HNSW) beside PostgreSQL + pgvector (HNSW) on 100k and 1M structured vectors.

Full run (the lead's; about 1.5 hours on 2 quiet cores, most of it the two 1M builds,
and resumable cell by cell, see below):

    nice -n 10 .venv/bin/python bench/bench_scale.py

which is ``--sizes 100000,1000000 --backends embedded,pgvector --queries 500
--ef 16,32,64,128,256``. Smoke test (embeds 200 documents of each corpus, writes no
results file): ``bench/bench_scale.py --sizes 5000 --queries 50 --real-limit 200 --dry-run``.

The vectors (issue 16: random vectors are the worst case for ANN and say little):

- real: the stored all-MiniLM-L6-v2 embeddings of every SciFact document and every
  SQuAD-open paragraph (26k chunks; documents whole up to 512 words), read from
  bench_retrieval.py's collections under bench/.work/ (built or brought up to
  date here with ``index_corpus``, so nothing is embedded twice);
- the rest of a set of N: vectors drawn around real ones. Each picks a seeded
  random real embedding as its anchor, adds isotropic Gaussian noise of std
  sigma per coordinate and is L2-normalised; sigma = sqrt(1/c^2 - 1) / sqrt(384)
  puts it at cosine c to its anchor (``--anchor-cosine``, default 0.8). Why 0.8:
  among real MiniLM passages the cosine to the nearest other one has median
  ~0.69 and 90th percentile ~0.80 (11k SQuAD paragraphs; every run measures it
  again on its real set, as ``real_nn_cosine``), so a drawn vector is as close
  to its anchor as the closest real neighbours are (paragraphs of one article,
  near-duplicates), and its siblings sit at ~c^2 = 0.64 to one another, near
  the median. The set keeps the real embeddings' topics, with ~37 (1M) or ~3
  (100k) variants per real passage: near-ties inside each topic, the hard part
  for an ANN index on real data, without the no-structure worst case of random
  vectors.
- queries: MiniLM embeddings of held-out questions, never passages: half SciFact
  test queries, half SQuAD-open dev questions (a seeded sample of ``--queries``).
- ground truth: the exact top-10 by inner product over the whole set (blocked numpy).

All of it lives under bench/.work/scale/, written once and reused: the real
embeddings, ``vectors-N-TAG.npy`` (the set), the query vectors, the exact top-10,
and ``embedded-N-TAG/``, the embedded collection, which the PostgreSQL cell copies.

Each (size, backend) cell runs in a fresh child process:

- ``embedded``: an embedded collection of kind hnsw with ragmix's defaults
  (M=32, ef_construction=200), written through the backend's batch API as
  ingest writes (one document "passage N" per vector, 512 chunks per commit)
  with the vectors given (no encoder runs), then its FAISS and BM25 views
  built, as after ``Collection.add``. Peak memory: the child's VmHWM.
- ``pgvector`` (and ``pgvector-halfvec``, not run by default): ``ragmix copy``
  of that collection into a fresh local PostgreSQL 18 + pgvector 0.8 server
  (binary COPY, then the HNSW build with the backend's defaults, the embedded
  backend's graph, M=32, ef_construction=200, then its BM25 view), on a server with room for the build
  (``_scale_cells.BENCH_SERVER``: maintenance_work_mem 4GB, shared_buffers 4GB,
  one parallel maintenance worker; fsync off). Peak memory: the largest sum of
  PSS over the server's processes, sampled each second while building and
  searching; the client's VmHWM beside it (``client_peak_mb``). ``halfvec``
  asks the index for 4 x k = 40 rows, so its ef_search is never below 40.
- ``pgvector-m16`` (not run by default): the same with pgvector's own defaults (M=16,
  ef_construction=64, ef_search=40), which the backend had until this bench showed them
  reaching recall@10 0.765 at 1M and ef_search 256, where the embedded graph had 0.989.

Then, on the bare vector search, the call each backend's ``vector_search`` makes
(the FAISS view's ``search``; ``ragmix.store.pg.vector_search``), one query at a
time, k=10, precomputed query vectors, after one untimed pass: p50/p99 latency
and recall@10 against the exact top-10 at each ``--ef`` value. A cell's headline is the smallest
ef_search reaching recall@10 0.95 (``reaches_0.95`` false: none did, and the
headline is the best one); PostgreSQL's exact scan is checked to score 1.0 on a
few queries (``exact_scan_recall@10``: the ground truth and the id mapping are right),
and each PostgreSQL curve point says whether the planner used the index
(``index_scan``: on small tables it prefers an exact scan at a high ef_search).
``select1_p50_ms`` is the round trip under each PostgreSQL search, which makes four
(BEGIN, set_config of ef_search, the query, COMMIT): on a busy machine it, not the
index, sets the latency.

Writes bench/results/scale.json (and the curves, scale.png), each cell as soon as it completes (a rerun skips
cells already there with the same vectors, queries and ef values, unless ``--force``)::

    {"embedded"|"pgvector": {"100k"|"1M": {"ef_search", "recall@10", "p50_ms", "p99_ms",
        "reaches_0.95", "build_s", "build_parts", "peak_mb", "disk_mb", "index_mb",
        "index", "curve": [{"ef_search", "recall@10", "p50_ms", "p99_ms"}], ...}},
     "vectors": {"100k"|"1M": {"n", "real", "generated", "anchor_cosine", "noise_sigma", ..}},
     "queries": {..}, "real_nn_cosine": {..}, "target": {"text", "met"}, ...,
     "ray": {"ingest_per_s": {"1", "2"}, "sharded_equal"}, "ingest_peak_mb_1M", "index_mb_1M",
     "scifact_pgvector": {"dense", "hybrid"}}

The last four are measured by other benches and copied from their results files at each
save (bench_ray.py's ray.json, bench_scaling.py's 1M flat build in scaling.json,
bench_pg.py's pg.json); ``--collect-only`` copies them without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, RESULTS, ROOT, write_result  # noqa: E402
from _scale_cells import K, Job, embedded_cell, pg_cell  # noqa: E402
from _scale_data import (  # noqa: E402
    DIM,
    REAL_SOURCES,
    WORK,
    anchor_cosines,
    exact_top_k,
    noise_sigma,
    query_file,
    real_collection,
    real_neighbour_cosines,
    real_vectors,
    structured_set,
)

BACKENDS = ("embedded", "pgvector", "pgvector-halfvec", "pgvector-m16")
RESULT_FILE = "scale.json"
RECALL_FLOOR = 0.95
TARGET = "pgvector HNSW recall@10 >= 0.95 at query p50 <= 10 ms on the 1M structured set"


def label(n: int) -> str:
    """A set size as the results name it.

    >>> label(1_000_000), label(100_000), label(1500)
    ('1M', '100k', '1500')
    """
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def headline(curve: list[dict]) -> dict:
    """The curve's point with the smallest ef_search reaching RECALL_FLOOR, or its best one.

    >>> headline([{"ef_search": 16, "recall@10": 0.9}, {"ef_search": 32, "recall@10": 0.96}])
    {'ef_search': 32, 'recall@10': 0.96, 'reaches_0.95': True}
    """
    reached = [p for p in curve if p["recall@10"] >= RECALL_FLOOR]
    best = (min(reached, key=lambda p: p["ef_search"]) if reached
            else max(curve, key=lambda p: p["recall@10"]))
    return {**best, "reaches_0.95": bool(reached)}


def target_met(results: dict) -> bool | None:
    """Whether some pgvector HNSW cell at 1M (any index options) reaches the target."""
    cells = [results[b]["1M"] for b in BACKENDS
             if b.startswith("pgvector") and "1M" in results.get(b, {})]
    if not cells:
        return None
    return any(p["recall@10"] >= RECALL_FLOOR and p["p50_ms"] <= 10
               for cell in cells for p in cell["curve"])


# -- the cells --------------------------------------------------------------------------
def run_cell(job: Job) -> dict:
    """Measure ``job`` in a fresh child process (its output shown as it runs)."""
    WORK.mkdir(parents=True, exist_ok=True)
    job_file = WORK / f"job-{job.backend}-{job.size}.json"
    out_file = job_file.with_name(f"result-{job.backend}-{job.size}.json")
    job_file.write_text(json.dumps(asdict(job)))
    out_file.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child", str(job_file)], check=False)
    if done.returncode or not out_file.exists():
        raise SystemExit(f"{job.backend} at {job.size:,} failed ({done.returncode}); "
                         "its output is above")
    return json.loads(out_file.read_text())


def child(job_file: Path) -> None:
    fields = json.loads(job_file.read_text())
    job = Job(**{**fields, "ef": tuple(fields["ef"])})
    queries = np.load(job.queries)  # (q, DIM)
    exact = np.load(job.exact)["rows"]  # (q, K)
    cell = embedded_cell if job.backend == "embedded" else pg_cell
    result = cell(job, queries, exact)
    job_file.with_name(f"result-{job.backend}-{job.size}.json").write_text(json.dumps(result))


def built_marker(collection: Path) -> Path:
    """Written once the embedded cell has built ``collection`` whole (pg copies it)."""
    return collection.with_name(collection.name + ".built")


def measure_size(args: argparse.Namespace, results: dict, base: dict) -> None:
    """Every requested cell of one size, each stored (and written) as it completes."""
    n, name = base["size"], label(base["size"])
    collection = WORK / f"embedded-{n}-{base['tag']}"
    config = {"vectors": base["tag"], "queries": args.queries, "ef": list(args.ef)}
    stored = {b: results.get(b, {}).get(name, {}).get("config") for b in args.backends}
    todo = [b for b in args.backends if args.force or args.dry_run or stored[b] != config]
    needs_copy = any(b != "embedded" for b in todo)
    if needs_copy and not built_marker(collection).exists() and "embedded" not in todo:
        todo.insert(0, "embedded")  # pgvector copies the embedded collection
    for backend in sorted(todo, key=BACKENDS.index):
        print(f"== {backend} at {n:,} vectors", flush=True)
        if backend == "embedded":
            built_marker(collection).unlink(missing_ok=True)
        job = Job(backend=backend, size=n, vectors=str(base["vectors"]),
                  queries=str(base["queries"]), exact=str(base["exact"]), ef=tuple(args.ef),
                  collection=str(collection), check_queries=args.check_queries)
        measured = run_cell(job)
        if backend == "embedded":
            built_marker(collection).write_text(str(n))
        curve = measured.pop("curve")
        results.setdefault(backend, {})[name] = {
            **headline(curve), **measured, "curve": curve, "config": config,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        save(args, results)


def from_other_benches() -> dict:
    """The issue's summary keys that other benches measure, read from their results files:
    ``ray`` (bench_ray.py), ``ingest_peak_mb_1M`` and ``index_mb_1M`` (bench_scaling.py's
    1M flat build), ``scifact_pgvector`` (bench_pg.py: nDCG@10)."""
    def load(name: str) -> dict:
        path = RESULTS / name
        return json.loads(path.read_text()) if path.exists() else {}

    out: dict = {}
    if ray := load("ray.json"):
        out["ray"] = {**ray["summary"], "from": "ray.json"}
    scaling = load("scaling.json")
    for key in ("ingest_peak_mb_1M", "index_mb_1M"):
        if key in scaling:
            out[key] = scaling[key]
    if pg := load("pg.json"):
        out["scifact_pgvector"] = {
            "dense": pg["dense"]["pg_hnsw"]["ndcg@10"], "hybrid": pg["hybrid"]["pg"]["ndcg@10"],
            "embedded_dense": pg["dense"]["embedded_exact"]["ndcg@10"],
            "embedded_hybrid": pg["hybrid"]["embedded"]["ndcg@10"], "from": "pg.json"}
    return out


def plot(results: dict, path: Path) -> None:
    """recall@10 against query p50, one curve per (backend, size), ef_search along each."""
    from ragmix.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend in BACKENDS:
        for size, cell in results.get(backend, {}).items():
            curve = cell["curve"]
            ax.plot([p["p50_ms"] for p in curve], [p["recall@10"] for p in curve],
                    marker="o" if size == "1M" else "s",
                    linestyle="-" if size == "1M" else "--", label=f"{backend} {size}")
    ax.axhline(RECALL_FLOOR, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("query p50 (ms), ef_search 16 to 256 left to right")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title("HNSW on structured MiniLM vectors, 2 CPU cores")
    ax.legend(fontsize=8)
    _save(fig, path)


def save(args: argparse.Namespace, results: dict) -> None:
    if args.dry_run:
        return
    results.update(from_other_benches())
    results["target"] = {"text": TARGET, "met": target_met(results)}
    write_result(RESULT_FILE, results)
    plot(results, RESULTS / "scale.png")


# -- the driver -------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[Path, Path, dict]:
    """The real embeddings (embedding what the collections lack) and the query vectors (their
    files), and what to tell about them."""
    from ragmix.encoders import canonical_name

    folders = {name: real_collection(name, args.data, args.encoder, args.real_limit)
               for name, _, _ in REAL_SOURCES}
    model = canonical_name(args.encoder)
    real_path = WORK / f"real-{model}-{'all' if args.real_limit is None else args.real_limit}.npy"
    counts = real_vectors(folders, real_path)
    queries = query_file(args.data, args.queries, args.seed, args.encoder)
    info = json.loads(queries.with_suffix(".json").read_text())
    shared = {"encoder": model, "k": K, "dim": DIM,
              "real": {"collections": {n: str(f) for n, f in folders.items()}, "chunks": counts},
              "real_nn_cosine": real_neighbour_cosines(real_path),
              "queries": {"n": info["scifact_test"] + info["squad_dev"], "seed": args.seed,
                          **{k: v for k, v in info.items() if k != "ids"}}}
    return real_path, queries, shared


def size_base(args: argparse.Namespace, real_path: Path, queries_path: Path, n: int,
              real_total: int) -> tuple[dict, dict]:
    """The set of ``n`` vectors and its exact top-K (made once); what to tell about it."""
    tag = f"real{real_total}-cos{args.anchor_cosine}-s{args.seed}"
    print(f"structured set of {n:,} vectors ({tag})", flush=True)
    vectors = structured_set(real_path, n, args.anchor_cosine, args.seed, tag)
    queries = np.load(queries_path)  # (q, DIM)
    exact_name = f"exact-{n}-{tag}-{queries_path.stem}.npz"
    _, scores = exact_top_k(vectors, queries, K, exact_name)
    about = {"n": n, "real": vectors.real, "generated": n - vectors.real,
             "anchor_cosine": args.anchor_cosine,
             "noise_sigma": round(noise_sigma(args.anchor_cosine, DIM), 6),
             "anchor_cosine_measured": anchor_cosines(args.anchor_cosine, args.seed),
             "query_top1_cosine_p50": round(float(np.median(scores[:, 0])), 4),
             "query_top10_cosine_p50": round(float(np.median(scores[:, K - 1])), 4),
             "file": str(vectors.path.relative_to(ROOT))}
    base = {"size": n, "tag": tag, "vectors": vectors.path, "queries": queries_path,
            "exact": WORK / exact_name}
    return base, about


def table(results: dict) -> str:
    rows = [f"{'backend':<17}{'size':>6}{'build s':>9}{'peak MB':>9}{'disk MB':>9}"
            f"{'ef':>5}{'R@10':>7}{'p50 ms':>8}{'p99 ms':>8}   recall@10 by ef_search"]
    for backend in BACKENDS:
        for name, c in results.get(backend, {}).items():
            curve = " ".join(f"{p['ef_search']}:{p['recall@10']:.3f}"
                             f"{'' if p.get('index_scan', True) else '(exact scan)'}"
                             for p in c["curve"])
            rows.append(f"{backend:<17}{name:>6}{c['build_s']:>9.1f}{c['peak_mb']:>9.0f}"
                        f"{c['disk_mb']:>9.0f}{c['ef_search']:>5}{c['recall@10']:>7.3f}"
                        f"{c['p50_ms']:>8.2f}{c['p99_ms']:>8.2f}   {curve}")
    met = target_met(results)
    verdict = "not measured" if met is None else "met" if met else "NOT met"
    rows.append(f"target ({TARGET}): {verdict}")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated set sizes")
    parser.add_argument("--backends", default="embedded,pgvector",
                        help=f"comma-separated, of {','.join(BACKENDS)}")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--ef", default="16,32,64,128,256", help="ef_search values")
    parser.add_argument("--anchor-cosine", type=float, default=0.8,
                        help="cosine of a drawn vector to its real anchor")
    parser.add_argument("--real-limit", type=int,
                        help="embed only the first N documents of each corpus (smoke tests)")
    parser.add_argument("--check-queries", type=int, default=10,
                        help="queries PostgreSQL also searches exactly, to check the truth")
    parser.add_argument("--data", type=Path, default=DATA, help="default ../shared/data")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="re-measure cells already stored")
    parser.add_argument("--dry-run", action="store_true", help="print, write no results file")
    parser.add_argument("--collect-only", action="store_true",
                        help="measure nothing: copy the other benches' figures (ray.json, "
                             "scaling.json, pg.json) into scale.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return args
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.ef = [int(e) for e in args.ef.split(",")]
    except ValueError as exc:
        parser.error(f"--sizes and --ef take comma-separated integers: {exc}")
    args.backends = args.backends.split(",")
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends must be of {BACKENDS}, got {unknown}")
    if any(not 1 <= e <= 1000 for e in args.ef):
        parser.error(f"--ef values must be in 1..1000 (pgvector's range), got {args.ef}")
    for name in ("queries", "real_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if any(n < K for n in args.sizes):
        parser.error(f"--sizes must each be >= {K}, got {args.sizes}")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child(args.child)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / RESULT_FILE
    results = json.loads(previous.read_text()) if previous.exists() and not args.dry_run else {}
    if args.collect_only:
        save(args, results)
        print(f"wrote {previous}")
        return
    real_path, queries_path, shared = prepare(args)
    results.update(shared)
    real_total = sum(shared["real"]["chunks"].values())
    for n in args.sizes:
        base, about = size_base(args, real_path, queries_path, n, real_total)
        results.setdefault("vectors", {})[label(n)] = about
        measure_size(args, results, base)
    results["notes"] = (
        "Structured set: the real MiniLM embeddings (SciFact + SQuAD-open), then vectors drawn "
        "around seeded random real anchors (isotropic Gaussian noise, L2-normalised, cosine "
        "~anchor_cosine to the anchor). Queries: held-out questions (SciFact test, SQuAD-open "
        "dev) embedded by MiniLM. Latency: the bare vector search, one query at a time, "
        "k=10. The headline row of a cell is its smallest ef_search with recall@10 >= 0.95.")
    save(args, results)
    print(table(results))
    print("dry run: no results file written" if args.dry_run else f"wrote {previous}")


if __name__ == "__main__":
    main()
