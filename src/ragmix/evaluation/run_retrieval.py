"""Run judged queries through a collection and score the document rankings.

Judgements name documents, a collection returns chunks: each document is
ranked at its best chunk (max-pooling, "MaxP" in Dai & Callan, 2019), so a
document with several chunks counts once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragmix.errors import BadInputError, CollectionError
from ragmix.evaluation.retrieval_metrics import DEFAULT_KS, Qrels, RetrievalReport, evaluate_run
from ragmix.types import Hit

if TYPE_CHECKING:  # the store pulls in FAISS and BM25; metrics alone need neither
    from ragmix.chunking import Chunker
    from ragmix.store import Collection
    from ragmix.store.ingest import IndexReport, Progress

# Chunks fetched per document wanted: SciFact abstracts (~220 words) make 2-3
# of the paper's 100-word passages, so 3x keeps about k distinct documents
# after pooling. Raise it for longer documents.
CHUNKS_PER_DOC = 3


class Searcher(Protocol):
    """Anything with ``search(query, k, *, mode) -> list[Hit]``, e.g. a ``Collection``."""

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]: ...


def pool_documents(hits: Sequence[Hit], k: int) -> dict[str, float]:
    """The top-k documents of ranked hits, each scored by its best-ranked chunk.

    >>> from ragmix.types import Hit
    >>> hits = [Hit(1, "d1", "", 0.9, 0, 1), Hit(2, "d2", "", 0.8, 0, 2),
    ...         Hit(3, "d1", "", 0.7, 0, 3)]  # d1's second chunk
    >>> pool_documents(hits, k=10)
    {'d1': 0.9, 'd2': 0.8}
    """
    pooled: dict[str, float] = {}
    for hit in sorted(hits, key=lambda h: h.rank):
        if hit.doc_id not in pooled:
            if len(pooled) == k:
                break
            pooled[hit.doc_id] = hit.score
    return pooled


def evaluate_retrieval(
    collection: Searcher,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    mode: str,
    k: int = 100,
    ks: Sequence[int] | None = None,
    chunk_depth: int | None = None,
    progress: Progress | None = None,
) -> RetrievalReport:
    """Search every judged query, pool chunks into documents, and score the run.

    ``chunk_depth`` chunks are fetched per query (default ``3 * k``) and the
    best ``k`` documents among them are kept; metrics are cut at each of
    ``ks`` (default: 1, 5, 10, 20, 100 up to ``k``). Each query's search time
    is recorded in the report's ``latency_s``.

    Example::

        corpus, queries, qrels = load_beir("../shared/data/scifact")
        col = Collection.open("scifact-col")
        report = evaluate_retrieval(col, queries, qrels, mode="bm25")
        report.metrics["ndcg@10"]      # 0.68 or so
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInputError(f"k must be an integer >= 1, got {k!r}")
    ks = (tuple(c for c in DEFAULT_KS if c <= k) or (k,)) if ks is None else tuple(ks)
    if ks and max(ks) > k:
        raise BadInputError(f"ks go up to {max(ks)}, but only k={k} documents are retrieved")
    depth = CHUNKS_PER_DOC * k if chunk_depth is None else chunk_depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < k:
        raise BadInputError(f"chunk_depth must be an integer >= k ({k}), got {chunk_depth!r}")
    unknown = [qid for qid in qrels if not str(queries.get(qid) or "").strip()]
    if unknown:
        raise BadInputError(
            f"{len(unknown)} judged query id(s) have no text, e.g. {unknown[:3]}")
    run: dict[str, dict[str, float]] = {}
    latency: dict[str, float] = {}
    stage = f"searching ({mode})"
    if progress is not None:
        progress.start(stage, len(qrels))
    for qid in qrels:
        began = time.perf_counter()
        hits = collection.search(queries[qid], depth, mode=mode)
        latency[qid] = time.perf_counter() - began
        run[qid] = pool_documents(hits, k)
        if progress is not None:
            progress.advance(stage)
    return evaluate_run(run, qrels, ks, latency_s=latency)


# BEIR judges whole documents, so benchmark collections keep documents whole up to
# 512 words (MiniLM reads the first 256 word pieces, as on MTEB). On SciFact BM25
# nDCG@10: 0.661 with 100-word passages, 0.680 with 512 (both with titles).
EVAL_CHUNK_WORDS = 512


def index_corpus(
    directory: str | Path, corpus: str | Path, *, encoder: str | None = None,
    progress: Progress | None = None, dtype: str = "float32", chunker: Chunker | None = None,
) -> tuple[Collection, IndexReport]:
    """Open the collection in ``directory`` holding ``corpus``, indexing what it lacks.

    A missing collection is created (with ``encoder``, default MiniLM, and
    documents cut only past ``EVAL_CHUNK_WORDS`` words, or by ``chunker``); an
    existing one is brought up to date incrementally, so an interrupted build
    resumes. ``encoder``, if given, must be the one an existing collection was
    built with. A collection that also holds other documents is refused: its
    scores would not be comparable. Returns the open collection (close it) and
    what indexing did, including corpus rows it skipped and why. ``dtype``
    (:data:`ragmix.dtypes.DTYPES`) is what the encoder computes in. An existing
    collection chunked otherwise than ``chunker`` asks for is refused.
    """
    from ragmix.store import Collection

    from ragmix.chunking import make_chunker

    chunker = chunker or make_chunker("words", size=EVAL_CHUNK_WORDS)
    options: dict[str, Any] = {"chunker": chunker, "dtype": dtype}
    if encoder is not None:
        options["encoder"] = encoder
    col = Collection.open_or_create(directory, **options)
    try:
        if col.manifest.chunker != chunker.settings():
            raise CollectionError(
                f"collection {str(directory)!r} is chunked by {col.manifest.chunker}, not "
                f"{chunker.settings()}; use a separate directory per chunker")
        report = col.add([corpus], progress=progress)
        in_corpus = report.added + report.updated + report.unchanged
        if col.store.count_documents() != in_corpus:
            raise CollectionError(
                f"collection {str(directory)!r} holds {col.store.count_documents()} documents, "
                f"the corpus {str(corpus)!r} {in_corpus}; use a separate --collection per corpus")
    except BaseException:
        col.close()
        raise
    return col, report
