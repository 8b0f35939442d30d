"""One (size, backend) cell of bench_scale.py, run in a fresh child process so its peak
memory is its own: build, peak memory, disk, then the ef_search curve of the bare
backend vector search (latency and recall@10 against the exact top-10)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import percentile
from _scale_data import DIM, read_rows, recall_at_k

K = 10
TUNE_RECALL = 0.95  # ragmix tune's default target
ENCODER = "all-MiniLM-L6-v2"  # what the vectors are (or are drawn around): the manifest says so
# The PostgreSQL server of the bench, over local_server's throwaway defaults (fsync off).
# maintenance_work_mem must hold the HNSW graph or the build slows down many times
# (1M x 384 float32 is about 2 GB); one parallel maintenance worker, so the build has
# both cores, as FAISS has for the embedded one; shared_buffers hold a 1M index.
BENCH_SERVER = {"maintenance_work_mem": "4GB", "shared_buffers": "4GB",
                "max_parallel_maintenance_workers": "1"}
# Each PostgreSQL cell's index options over the backend's defaults (the embedded backend's
# HNSW, M=32, ef_construction=200): halfvec storage, or pgvector's own defaults.
PG_PARAMS: dict[str, dict | None] = {
    "pgvector": None, "pgvector-halfvec": {"storage": "halfvec"},
    "pgvector-m16": {"M": 16, "ef_construction": 64, "ef_search": 40}}
# Reading smaps_rollup walks a process's page tables (4 GB of shared buffers is 1M
# entries): once a second keeps the sampler's cost small, and an HNSW build's memory
# grows for minutes, so the peak is not missed.
SAMPLE_EVERY_S = 1.0


@dataclass(frozen=True)
class Job:
    """What the parent asks one child to measure (sent as JSON)."""

    backend: str  # embedded | pgvector | pgvector-halfvec | pgvector-m16
    size: int
    vectors: str  # the structured set, .npy (size, DIM)
    queries: str  # .npy (q, DIM)
    exact: str  # .npz: rows (q, K), the exact top-K rows of the set
    ef: tuple[int, ...]
    collection: str  # the embedded collection (built by the embedded cell, copied by pg)
    check_queries: int  # queries searched exactly by PostgreSQL, to check the ground truth


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would start from the parent's
    size at the fork, which Linux carries across exec)."""
    return round(_kb(Path("/proc/self/status").read_text(), "VmHWM:") / 1024, 1)


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


# -- the curve, either backend --------------------------------------------------------
def rows_of(ids: np.ndarray, chunk_ids: np.ndarray) -> np.ndarray:
    """Chunk ids (q, k) as rows of the set: chunk ids ascend in the order the rows were
    written (``chunk_ids`` sorted, one per row); -1 stays -1.

    >>> rows_of(np.array([[12, -1], [10, 11]]), np.array([10, 11, 12])).tolist()
    [[2, -1], [0, 1]]
    """
    rows = np.searchsorted(chunk_ids, ids)  # (q, k)
    hit = (ids >= 0) & (rows < len(chunk_ids))
    hit &= chunk_ids[np.minimum(rows, len(chunk_ids) - 1)] == ids
    return np.where(hit, rows, -1)


def search_curve(search: Callable[[np.ndarray, int], np.ndarray], queries: np.ndarray,
                 exact: np.ndarray, chunk_ids: np.ndarray,
                 ef_values: tuple[int, ...]) -> list[dict]:
    """For each ef_search: recall@K against ``exact`` (q, K rows) and the latency of one
    query at a time (``search(query (DIM,), ef) -> (K,) chunk ids``), after one untimed
    pass at the largest ef to bring the index into memory."""
    for query in queries:
        search(query, max(ef_values))
    curve = []
    for ef in ef_values:
        found = np.full((len(queries), K), -1, dtype=np.int64)  # (q, K)
        ms = []
        for i, query in enumerate(queries):
            began = time.perf_counter()
            ids = search(query, ef)
            ms.append((time.perf_counter() - began) * 1000)
            found[i, : len(ids)] = ids
        curve.append({"ef_search": ef,
                      "recall@10": round(recall_at_k(rows_of(found, chunk_ids), exact), 4),
                      "p50_ms": round(percentile(ms, 50), 3),
                      "p99_ms": round(percentile(ms, 99), 3)})
        print(f"  ef_search {ef}: {curve[-1]}", flush=True)
    return curve


def backend_search(backend) -> Callable[[np.ndarray, int], np.ndarray]:
    """``search(query (DIM,), ef) -> (K,) chunk ids``: the backend's own vector search (either
    backend), ef_search set for the call, without the rest of Collection.search."""
    return lambda query, ef: backend.vector_search(query[None], K, ef_search=ef)[1][0]


def check_stored(stored: Callable[[list[int]], np.ndarray], chunk_ids: np.ndarray,
                 job: Job) -> None:
    """Raise unless there is one chunk per row and a sample of them holds its row bit for bit."""
    if len(chunk_ids) != job.size:
        raise SystemExit(f"{job.backend} holds {len(chunk_ids)} chunks, expected {job.size}")
    rows = np.unique(np.linspace(0, job.size - 1, 16).astype(np.int64))
    want = np.concatenate([read_rows(Path(job.vectors), r, r + 1) for r in rows])  # (16, DIM)
    if not np.array_equal(stored(chunk_ids[rows].tolist()), want):
        raise SystemExit(f"{job.backend}: stored embeddings differ from the set's rows")


def tuned(backend, search: Callable[[np.ndarray, int], np.ndarray], queries: np.ndarray,
          exact: np.ndarray, chunk_ids: np.ndarray) -> dict:
    """``ragmix tune --recall 0.95`` on the cell, two ways: on its default sample of stored
    passages (then the recall@10 of all the bench's questions at the ef_search it chose:
    whether a passage-tuned value carries over to questions), and on the first half of the
    questions (``--queries``), its held-out recall measured on the other half."""
    from ragmix.store.tune import RecallUnreachableError, tune_search

    out = {"target": TUNE_RECALL}
    half = len(queries) // 2
    for name, options in (("passages", {}),
                          ("questions", {"queries": queries, "sample": half,
                                         "holdout": len(queries) - half})):
        began = time.perf_counter()
        try:
            result = tune_search(backend, recall=TUNE_RECALL, k=K, **options)
        except RecallUnreachableError as error:
            out[name] = {"reached": False, "error": str(error)}
            continue
        found = np.stack([search(query, result.value) for query in queries])  # (q, K)
        out[name] = {"ef_search": result.value, "previous": result.previous,
                     "tune_recall@10": round(result.recall, 4),
                     "holdout_recall@10": result.holdout_recall,
                     "all_questions_recall@10": round(
                         recall_at_k(rows_of(found, chunk_ids), exact), 4),
                     "n_tune": result.n_tune, "n_holdout": result.n_holdout,
                     "seconds": round(time.perf_counter() - began, 1)}
        print(f"  tune on {name}: {out[name]}", flush=True)
    return out


# -- embedded ---------------------------------------------------------------------------
def passage(row: int, vector: np.ndarray) -> tuple[object, list[object], np.ndarray]:
    """Row ``row`` of the set as a one-chunk document with a short synthetic text."""
    from ragmix.types import Chunk, Document

    text = f"passage {row}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    doc = Document(f"p{row}", text, source=f"scale/p{row}", content_hash=digest)
    return doc, [Chunk(doc.doc_id, 0, 0, len(text), text)], vector[None, :]


def build_embedded(job: Job) -> tuple[object, dict[str, float]]:
    """The embedded HNSW collection of the set, written as ingest writes (whole documents,
    COMMIT_CHUNKS chunks per commit) with the vectors given, then its FAISS and BM25 views
    built and saved, as the refresh after ``Collection.add`` does; and the seconds of each."""
    from ragmix.chunking import make_chunker
    from ragmix.evaluation.run_retrieval import EVAL_CHUNK_WORDS
    from ragmix.store.home import DirectoryHome
    from ragmix.store.ingest import COMMIT_CHUNKS
    from ragmix.store.manifest import Manifest

    folder = Path(job.collection)
    shutil.rmtree(folder, ignore_errors=True)
    home = DirectoryHome(folder)
    manifest = Manifest(encoder=ENCODER, dim=DIM,
                        chunker=make_chunker("words", size=EVAL_CHUNK_WORDS).settings(),
                        index=home.index_settings("hnsw", {}, DIM))  # ragmix's HNSW defaults
    parts = {}
    began = time.perf_counter()
    backend = home.create(manifest)
    with home.write_lock():
        for start in range(0, job.size, COMMIT_CHUNKS):
            block = read_rows(Path(job.vectors), start, min(job.size, start + COMMIT_CHUNKS))
            with backend.batch() as batch:
                for row, vector in enumerate(block, start=start):
                    batch.put(*passage(row, vector))
        parts["write_s"] = time.perf_counter() - began
        backend.views.dense(persist=True)
        parts["hnsw_s"] = time.perf_counter() - began - parts["write_s"]
        backend.views.bm25(persist=True)
        parts["bm25_s"] = time.perf_counter() - began - parts["write_s"] - parts["hnsw_s"]
    return backend, {k: round(v, 2) for k, v in parts.items()}


def embedded_cell(job: Job, queries: np.ndarray, exact: np.ndarray) -> dict:
    backend, parts = build_embedded(job)
    print(f"  built in {sum(parts.values()):.1f} s {parts}", flush=True)
    chunk_ids = backend.chunk_ids()  # (n,) ascending
    check_stored(backend.embeddings, chunk_ids, job)
    curve = search_curve(backend_search(backend), queries, exact, chunk_ids, job.ef)
    tune = tuned(backend, backend_search(backend), queries, exact, chunk_ids)
    index = backend.views.dense(persist=False)
    backend.close()
    folder = Path(job.collection)
    return {"build_s": round(sum(parts.values()), 2), "build_parts": parts,
            "peak_mb": peak_rss_mb(), "peak_memory": "VmHWM of the process that built and "
            "searched (the vectors read, not memory-mapped)",
            "disk_mb": folder_mb(folder),
            "index_mb": round((folder / "dense.faiss").stat().st_size / 2**20, 1),
            "index": {"kind": index.kind, **index.params}, "curve": curve, "tune": tune}


# -- PostgreSQL -------------------------------------------------------------------------
class StageClock:
    """A copy :class:`~ragmix.store.ingest.Progress` that keeps when each stage began."""

    def __init__(self) -> None:
        self.began: dict[str, float] = {}

    def start(self, stage: str, total: int | None) -> None:
        self.began.setdefault(stage, time.perf_counter())

    def advance(self, stage: str, n: int = 1) -> None:
        pass


class ServerMemory:
    """Samples the server's processes (postmaster and children) every SAMPLE_EVERY_S:
    the peak of their summed PSS (shared buffers counted once, split between the
    processes touching them), the peak VmHWM of any one, and when a process's title
    showed CREATE INDEX (the HNSW build)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.peak_pss_kb = self.peak_hwm_kb = 0
        self.index_seen: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _pids(self) -> list[int]:
        pids = [self.postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # gone since listed
                if ppid == self.postmaster:
                    pids.append(int(entry.name))
        return pids

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            pss = 0
            for pid in self._pids():
                try:
                    pss += _kb(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss:")
                    hwm = _kb(Path(f"/proc/{pid}/status").read_text(), "VmHWM:")
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue  # a process that ended between the listing and the read
                self.peak_hwm_kb = max(self.peak_hwm_kb, hwm)
                if b"CREATE INDEX" in title:
                    self.index_seen.append(time.perf_counter())
            self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def index_seconds(self) -> float | None:
        """How long CREATE INDEX was seen running (to within SAMPLE_EVERY_S), or None."""
        seen = self.index_seen
        return round(seen[-1] - seen[0] + SAMPLE_EVERY_S, 1) if seen else None


def _kb(text: str, key: str) -> int:
    """The kB figure of ``key`` in a /proc status-like text, 0 if absent.

    >>> _kb("Rss:  10 kB\\nPss:  4 kB\\n", "Pss:")
    4
    """
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def pg_cell(job: Job, queries: np.ndarray, exact: np.ndarray) -> dict:
    """``ragmix copy`` of the embedded collection into a fresh local server (HNSW, the
    PostgreSQL backend's defaults), then the curve through ``PgBackend.vector_search``."""
    from bench_pg import postgres_version

    from ragmix.store import Collection
    from ragmix.store.copy import copy_collection
    from ragmix.store.pg.home import location_of
    from ragmix.store.pg.local_server import running_server

    with tempfile.TemporaryDirectory(prefix="ragmix-bench-scale-") as cache, \
            running_server(database="ragmix_bench", settings=BENCH_SERVER) as server, \
            ServerMemory(server.pid) as memory:
        os.environ["RAGMIX_CACHE"] = cache  # the backend's BM25 view, thrown away
        location = location_of(server.url, "scale")
        clock = StageClock()
        began = time.perf_counter()
        copy_collection(job.collection, location, index="hnsw",
                        index_params=PG_PARAMS[job.backend],
                        progress=clock)
        build_s = time.perf_counter() - began
        copy_s = clock.began.get("updating indexes", began) - began
        index_s = memory.index_seconds()
        print(f"  copied in {copy_s:.1f} s, HNSW built in {index_s} s", flush=True)
        with Collection.open(location) as col:
            backend = col.backend
            chunk_ids = backend.chunk_ids()
            check_stored(backend.embeddings, chunk_ids, job)
            round_trip = round_trip_ms(backend)
            curve = search_curve(backend_search(backend), queries, exact, chunk_ids, job.ef)
            for point in curve:
                point["index_scan"] = uses_index(backend, queries[0], point["ef_search"])
            tune = tuned(backend, backend_search(backend), queries, exact, chunk_ids)
            exact_check = exact_search_recall(backend, queries[: job.check_queries],
                                              exact[: job.check_queries], chunk_ids)
            disk_mb = round(col.home.disk_bytes(backend) / 2**20, 1)
            index_mb = round(relation_bytes(backend, "chunks_embedding_idx") / 2**20, 1)
            settings = col.manifest.index
        version = postgres_version(server.url)
    return {"build_s": round(build_s, 2),
            "build_parts": {"copy_s": round(copy_s, 2), "hnsw_s": index_s,
                            "rest_s": None if index_s is None
                            else round(build_s - copy_s - index_s, 2)},
            "peak_mb": round(memory.peak_pss_kb / 1024, 1),
            "peak_memory": "the largest sum of PSS over the server's processes, sampled every "
                           f"{SAMPLE_EVERY_S} s while building and searching",
            "peak_process_hwm_mb": round(memory.peak_hwm_kb / 1024, 1),
            "client_peak_mb": peak_rss_mb(),
            "disk_mb": disk_mb, "index_mb": index_mb, "index": settings,
            "exact_scan_recall@10": exact_check, "select1_p50_ms": round_trip,
            "postgres": version,
            "server_settings": BENCH_SERVER, "curve": curve, "tune": tune}


def exact_search_recall(backend, queries: np.ndarray, exact: np.ndarray,
                        chunk_ids: np.ndarray) -> float | None:
    """recall@K of PostgreSQL's exact scan (no index) against the bench's exact top-K:
    1.0 unless the ground truth, or the id-to-row mapping, is wrong."""
    from ragmix.store import pg

    if not len(queries):
        return None
    _, ids = pg.vector_search(backend.connection, backend.tables, queries, K, exact=True)
    return round(recall_at_k(rows_of(ids, chunk_ids), exact), 4)


def uses_index(backend, query: np.ndarray, ef: int) -> bool:
    """Whether the planner serves a search at ``ef`` from the HNSW index: on a small table
    it may prefer an exact scan (recall 1.0), as the cost it estimates grows with ef."""
    from psycopg import sql

    from ragmix.store.pg.connection import local_settings
    from ragmix.store.pg.load import to_half
    from ragmix.store.pg.search import shortlist_size

    tables = backend.tables
    half = tables.storage == "halfvec"
    limit = shortlist_size(tables, K, exact=False)
    statement = sql.SQL("EXPLAIN (FORMAT JSON) SELECT id FROM {} ORDER BY {} <#> %s::{} LIMIT %s"
                        ).format(tables.table("chunks"),
                                 sql.Identifier("embedding_half" if half else "embedding"),
                                 sql.SQL("halfvec" if half else "vector"))
    with local_settings(backend.connection, {"hnsw.ef_search": str(max(ef, limit))}):
        plan = backend.connection.execute(
            statement, (to_half(query[None])[0] if half else query, limit)).fetchone()[0]
    return "chunks_embedding_idx" in json.dumps(plan)


def round_trip_ms(backend, n: int = 200) -> float:
    """Median ms of ``SELECT 1`` on the backend's connection: the floor under each search
    (which makes four round trips: BEGIN, set_config of ef_search, the query, COMMIT)."""
    ms = []
    for _ in range(n):
        began = time.perf_counter()
        backend.connection.execute("SELECT 1").fetchone()
        ms.append((time.perf_counter() - began) * 1000)
    return round(percentile(ms, 50), 3)


def relation_bytes(backend, name: str) -> int:
    row = backend.connection.execute(
        "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)",
        (f'"{backend.tables.schema}"."{name}"',)).fetchone()
    return int(row[0]) if row else 0
