"""The vectors of bench_scale.py: real MiniLM embeddings, a structured set around them,
held-out query vectors and the exact top-k. Every file is written once under
bench/.work/scale/ and reused; see bench_scale.py's docstring for what each holds."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import ROOT, require_data

WORK = ROOT / "bench" / ".work" / "scale"
DIM = 384  # MiniLM's width
BLOCK = 50_000  # rows generated, or scanned for the exact top-k, at a time: bounds memory
# The two real corpora: (name, data folder under DATA, corpus file in it).
REAL_SOURCES = (("scifact", "scifact", "corpus.jsonl"), ("squad", "squad-open", "paragraphs.jsonl"))


@dataclass(frozen=True)
class VectorSet:
    """A structured set on disk: ``n`` rows, the first ``real`` of them real embeddings."""

    path: Path
    n: int
    real: int
    tag: str  # what the rows depend on, for the names of the files derived from them


# -- real embeddings ----------------------------------------------------------------
def real_collection(name: str, data: Path, encoder: str, limit: int | None) -> Path:
    """The folder of the collection holding corpus ``name`` embedded by ``encoder``.

    All of it: bench_retrieval.py's collection (built by it, bench_pg.py or here, and
    brought up to date here). With ``limit``: a collection of the corpus's first
    ``limit`` rows of its own, for smoke tests that cannot embed a whole corpus.
    """
    from ragmix.encoders import canonical_name
    from ragmix.evaluation.run_retrieval import index_corpus

    _, folder, corpus_file = next(s for s in REAL_SOURCES if s[0] == name)
    corpus = require_data(data / folder / corpus_file)
    model = canonical_name(encoder)
    if limit is None:
        work = ROOT / "bench" / ".work" / f"retrieval-{name}-{model}"
    else:
        work = WORK / f"real-{name}-{limit}-{model}"
        subset = WORK / f"real-{name}-{limit}-data" / "corpus.jsonl"
        if not subset.exists():
            subset.parent.mkdir(parents=True, exist_ok=True)
            with corpus.open(encoding="utf-8") as fh:
                rows = [line for _, line in zip(range(limit), fh)]
            subset.write_text("".join(rows), encoding="utf-8")
        corpus = subset
    print(f"real vectors: {corpus} in {work} (embedded once, then reused)", flush=True)
    col, _ = index_corpus(work, corpus, encoder=encoder)
    col.close()
    return work


def real_vectors(folders: dict[str, Path], path: Path) -> dict[str, int]:
    """Write every stored chunk embedding of the collections in ``folders`` (name -> folder),
    in that order and by chunk id, to ``path`` (.npy, (R, DIM) float32), unless it holds
    them already; returns the chunks per collection, also kept in a .json beside it."""
    from ragmix.store import Collection

    counts_file = path.with_suffix(".json")
    counts = {}
    for name, folder in folders.items():
        with Collection.open(folder) as col:
            counts[name] = col.backend.count_chunks()
    if path.exists() and counts_file.exists() and json.loads(counts_file.read_text()) == counts:
        return counts
    parts = []
    for folder in folders.values():
        with Collection.open(folder) as col:
            parts.append(col.backend.embeddings(col.backend.chunk_ids()))  # (n, DIM), as stored
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(parts).astype(np.float32))  # (R, DIM)
    counts_file.write_text(json.dumps(counts))
    return counts


# -- the structured set -------------------------------------------------------------
def noise_sigma(cosine: float, dim: int) -> float:
    """The per-coordinate std of isotropic Gaussian noise that, added to a unit vector and
    renormalised, leaves it at ``cosine`` to where it started.

    With noise n ~ N(0, sigma^2 I) in ``dim`` dimensions, |n|^2 ~ dim * sigma^2 and
    a.n ~ 0 (both concentrate), so cos(a, a + n) ~ 1 / sqrt(1 + dim * sigma^2).

    >>> round(noise_sigma(0.8, 384), 5)  # tan(arccos 0.8) / sqrt(384) = 0.75 / 19.6
    0.03827
    """
    if not 0.0 < cosine < 1.0:
        raise SystemExit(f"--anchor-cosine must be in (0, 1), got {cosine}")
    return float(np.sqrt(1.0 / cosine**2 - 1.0) / np.sqrt(dim))


def drawn_around(anchors: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors drawn around ``anchors`` (b, dim): anchor + N(0, sigma^2 I), L2-normalised."""
    noisy = anchors + rng.standard_normal(anchors.shape, dtype=np.float32) * sigma  # (b, dim)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)  # (b, dim)


def structured_set(real_path: Path, n: int, cosine: float, seed: int, tag: str) -> VectorSet:
    """``n`` vectors (.npy, (n, DIM) float32, written once): the real embeddings first (a
    seeded sample of them when there are more than ``n``), then vectors drawn around
    seeded random real anchors at cosine ~``cosine`` to their anchor.

    Block b of the drawn rows uses the generator seeded (seed, b), so a smaller set is
    the first rows of a larger one made from the same real vectors.
    """
    path = WORK / f"vectors-{n}-{tag}.npy"
    real = np.load(real_path, mmap_mode="r")  # (R, DIM)
    n_real = min(n, len(real))
    if path.exists():
        return VectorSet(path, n, n_real, tag)
    tmp = path.with_name(path.stem + ".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, DIM))
    if n_real < len(real):
        keep = np.sort(np.random.default_rng(seed).choice(len(real), n_real, replace=False))
        out[:] = real[keep]
    else:
        out[:n_real] = real
    sigma = noise_sigma(cosine, DIM)
    for b, start in enumerate(range(n_real, n, BLOCK)):
        rng = np.random.default_rng([seed, b])
        rows = min(BLOCK, n - start)
        anchors = np.asarray(real[rng.integers(0, len(real), rows)])  # (rows, DIM)
        out[start:start + rows] = drawn_around(anchors, sigma, rng)
    out.flush()
    del out
    tmp.rename(path)
    return VectorSet(path, n, n_real, tag)


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows start..stop of a (n, DIM) float32 .npy, read (not memory-mapped: mapped pages
    would count in the resident memory a build measures)."""
    header = np.load(path, mmap_mode="r").offset  # maps, touches no page
    with path.open("rb") as fh:
        fh.seek(header + start * DIM * 4)
        return np.fromfile(fh, dtype=np.float32, count=(stop - start) * DIM).reshape(-1, DIM)


def anchor_cosines(cosine: float, seed: int, n: int = 2000) -> dict[str, float]:
    """Measured cosine of drawn vectors to their anchors (on random unit anchors, which
    the noise does not care about), to check :func:`noise_sigma`'s approximation."""
    rng = np.random.default_rng(seed)
    anchors = rng.standard_normal((n, DIM)).astype(np.float32)  # (n, DIM)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    cos = np.sum(anchors * drawn_around(anchors, noise_sigma(cosine, DIM), rng), axis=1)  # (n,)
    return {"mean": round(float(cos.mean()), 4), "std": round(float(cos.std()), 4)}


def real_neighbour_cosines(real_path: Path, sample: int = 2000, seed: int = 0) -> dict[str, float]:
    """Cosine of a seeded sample of real embeddings to their nearest other real one:
    what "near" looks like among real passages, beside the drawn vectors' cosine."""
    real = np.load(real_path)  # (R, DIM)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(real), min(sample, len(real)), replace=False)  # (s,)
    scores = real[rows] @ real.T  # (s, R)
    scores[np.arange(len(rows)), rows] = -np.inf  # not itself
    best = np.sort(scores.max(axis=1))  # (s,)
    return {f"p{q}": round(float(np.percentile(best, q)), 4) for q in (10, 50, 90)}


# -- queries and the exact top-k ------------------------------------------------------
def query_file(data: Path, n: int, seed: int, encoder: str) -> Path:
    """The .npy of (n, DIM) float32 embeddings of held-out questions, made once: half SciFact
    test queries (at most its 300 judged ones), the rest SQuAD-open dev questions, a seeded
    sample embedded by ``encoder``; a .json beside it says which."""
    from ragmix.encoders import canonical_name

    path = WORK / f"queries-{n}-s{seed}-{canonical_name(encoder)}.npy"
    if path.exists() and path.with_suffix(".json").exists():
        return path
    from ragmix.encoders import load_encoder
    from ragmix.evaluation.datasets import load_beir, load_qa, qa_retrieval_split

    scifact = load_beir(require_data(data / "scifact"), "test").queries
    dev = require_data(data / "squad-open" / "dev-questions.jsonl")
    squad, _ = qa_retrieval_split(load_qa(dev))
    rnd = random.Random(seed)
    from_scifact = rnd.sample(sorted(scifact), min(n // 2, len(scifact)))
    from_squad = rnd.sample(sorted(squad), min(n - len(from_scifact), len(squad)))
    texts = [scifact[q] for q in from_scifact] + [squad[q] for q in from_squad]
    print(f"embedding {len(texts)} held-out questions with {encoder}", flush=True)
    vectors = np.asarray(load_encoder(encoder).encode_queries(texts), dtype=np.float32)
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)  # (n, DIM)
    path.with_suffix(".json").write_text(json.dumps(
        {"scifact_test": len(from_scifact), "squad_dev": len(from_squad),
         "ids": from_scifact + from_squad}))
    return path


def exact_top_k(vectors: VectorSet, queries: np.ndarray, k: int,
                name: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k rows by inner product over the whole set, best first: (q, k) rows and
    (q, k) scores, by blocked brute force, cached under bench/.work/scale/ as ``name``."""
    path = WORK / name
    if path.exists():
        cached = np.load(path)
        return cached["rows"], cached["scores"]
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)  # (q, <=k)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, vectors.n, BLOCK):
        block = read_rows(vectors.path, start, min(vectors.n, start + BLOCK))  # (b, DIM)
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)  # (q, k + b)
        rows = np.concatenate([best_rows, np.broadcast_to(
            np.arange(start, start + len(block)), (len(queries), len(block)))], axis=1)
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]  # (q, k)
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_rows = np.take_along_axis(rows, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")  # (q, k)
    rows = np.take_along_axis(best_rows, order, axis=1)
    scores = np.take_along_axis(best_scores, order, axis=1)
    np.savez(path, rows=rows, scores=scores)
    return rows, scores


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k (rows, (q, k)) that ``found`` (q, k) holds;
    -1 in ``found`` marks an empty slot.

    >>> recall_at_k(np.array([[1, 2], [3, -1]]), np.array([[1, 2], [3, 4]]))
    0.75
    """
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(e.tolist())) / len(e)
                          for f, e in zip(found, exact)]))
