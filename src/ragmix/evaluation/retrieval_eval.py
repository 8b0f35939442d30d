"""A whole retrieval evaluation, as ``ragmix eval retrieval`` runs it: modes, report, plots.

:func:`run_retrieval_eval` scores each retrieval mode of one collection on judged
queries (:func:`~ragmix.evaluation.run_retrieval.evaluate_retrieval`), then writes
``OUT/results.json``, ``OUT/report.md`` and the plots, and returns what it measured;
the CLI only parses options and prints the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmix.errors import BadInputError
from ragmix.evaluation.retrieval_metrics import Qrels, RetrievalReport
from ragmix.modes import DEFAULT_RERANK_DEPTH
from ragmix.retrieval.retrievers import DEFAULT_FUSION
from ragmix.retrieval.retrievers import MODES as RETRIEVAL_MODES

if TYPE_CHECKING:
    from ragmix.rerank.base import Reranker
    from ragmix.store import Collection
    from ragmix.store.ingest import Progress


@dataclass(frozen=True)
class RetrievalEvalResult:
    """What :func:`run_retrieval_eval` measured and where it wrote it."""

    reports: dict[str, RetrievalReport]  # run label -> report, in run order
    n_queries: int
    documents: int
    results_path: Path
    report_path: Path
    plots_skipped: str | None = None  # why OUT has no plots (matplotlib missing), else None


def run_label(mode: str, fusion: str = DEFAULT_FUSION, reranker: str | None = None) -> str:
    """A run's name in the report: the mode, the fusion when not the default, the reranker.

    >>> run_label("hybrid"), run_label("hybrid", "rrf"), run_label("bm25", reranker="ce")
    ('hybrid', 'hybrid-rrf', 'bm25+ce')
    """
    label = mode if mode != "hybrid" or fusion == DEFAULT_FUSION else f"hybrid-{fusion}"
    return label if reranker is None else f"{label}+{reranker}"


def run_retrieval_eval(
    collection: Collection, queries: Mapping[str, str], qrels: Qrels, out_dir: str | Path, *,
    modes: Sequence[str], fusion: str = DEFAULT_FUSION, reranker: Reranker | None = None,
    rerank_depth: int = DEFAULT_RERANK_DEPTH, data: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None, progress: Progress | None = None,
) -> RetrievalEvalResult:
    """Score ``modes`` on the judged ``queries`` and write the report files under ``out_dir``.

    ``data`` (where the corpus, queries and qrels came from) and ``settings`` (dtype,
    the reranker's model and weight) go into the report as given.
    """
    from ragmix.evaluation.plots import report_plots_or_reason
    from ragmix.evaluation.report import retrieval_markdown, retrieval_results, write_report
    from ragmix.evaluation.run_retrieval import evaluate_retrieval

    unknown = [m for m in modes if m not in RETRIEVAL_MODES]
    if unknown or not modes:
        raise BadInputError(f"retrieval modes must be some of {', '.join(RETRIEVAL_MODES)}, "
                            f"got {list(modes)!r}")
    searcher = collection.searcher(fusion=fusion, rerank=reranker, rerank_depth=rerank_depth)
    reports = {}
    for mode in modes:
        label = run_label(mode, fusion, None if reranker is None else reranker.name)
        reports[label] = evaluate_retrieval(searcher, queries, qrels, mode=mode,
                                            progress=progress)
    info = collection.info()
    meta = _meta(collection, info, len(qrels), data or {}, fusion=fusion,
                 rerank_depth=rerank_depth if reranker is not None else None,
                 rerank=None if reranker is None else reranker.name, settings=settings or {})
    plots, skipped = report_plots_or_reason(
        out_dir, {m: r.metrics for m, r in reports.items()},
        {m: r.latency_s.values() for m, r in reports.items()},
        prefix="recall", what="query (search only)")
    results_path, report_path = write_report(
        out_dir, retrieval_results(reports, meta), retrieval_markdown(reports, meta) + plots)
    return RetrievalEvalResult(reports, len(qrels), int(info["documents"]), results_path,
                               report_path, skipped)


def _meta(collection: Collection, info: Mapping, n_judged: int, data: Mapping, *, fusion: str,
          rerank: str | None, rerank_depth: int | None, settings: Mapping) -> dict:
    """What the report records: when, on what data and collection, how."""
    from ragmix.evaluation.report import collection_meta, run_info
    from ragmix.evaluation.run_retrieval import CHUNKS_PER_DOC

    return {
        **run_info(),
        "data": {**{key: None if value is None else str(value) if isinstance(value, Path)
                    else value for key, value in data.items()}, "judged_queries": n_judged},
        "collection": collection_meta(collection.location, info),
        "settings": {"k": 100, "chunk_depth": 100 * CHUNKS_PER_DOC, "fusion": fusion,
                     "pooling": "max over chunks", "rerank": rerank,
                     "rerank_depth": rerank_depth, **settings},
    }

