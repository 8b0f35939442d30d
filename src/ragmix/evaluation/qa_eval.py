"""A whole QA evaluation, as ``ragmix eval qa`` runs it: several runs, journalled, reported.

:func:`run_qa_eval` answers one sample of questions (:class:`QASample`) once per run, a
generation mode and its decoding named in one word as :data:`ragmix.modes.QA_MODES`
("stuff", "rag-sequence-fast"); every answer is journalled under ``OUT/.journal`` as it
finishes, so the same call resumes after a crash. Then it writes ``OUT/results.json``,
``OUT/report.md`` and the plots, and removes the journals, which the report now holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmix.errors import BadInputError
from ragmix.evaluation.datasets import QAExample, load_qa
from ragmix.evaluation.run_qa import QAReport, evaluate_qa, sample_questions
from ragmix.modes import (
    DEFAULT_RERANK_DEPTH, DEFAULT_SCORING, GENERATION_MODES, MODE_DECODINGS, QA_MODES,
    split_qa_mode,
)
from ragmix.retrieval.retrievers import DEFAULT_FUSION

if TYPE_CHECKING:
    from ragmix.generation.base import Generator
    from ragmix.rerank.base import Reranker
    from ragmix.store import Collection
    from ragmix.store.ingest import Progress

JOURNAL_DIR = ".journal"


@dataclass(frozen=True)
class QASample:
    """The questions of an evaluation, and where they came from (for the journals' key and
    the report): ``limit`` of them drawn with ``seed`` from the file at ``path``."""

    path: str
    examples: tuple[QAExample, ...]
    limit: int | None = None
    seed: int = 0

    @classmethod
    def load(cls, path: str | Path, *, limit: int | None = None, seed: int = 0) -> QASample:
        """Read a SQuAD/NQ-open JSONL file (:func:`load_qa`) and draw the sample."""
        return cls(str(path), tuple(sample_questions(load_qa(path), limit, seed)), limit, seed)


@dataclass(frozen=True)
class QAEvalResult:
    """What :func:`run_qa_eval` measured and where it wrote it."""

    reports: dict[str, QAReport]  # run name -> report, in run order
    n_questions: int
    results_path: Path
    report_path: Path
    plots_skipped: str | None = None  # why OUT has no plots (matplotlib missing), else None


def journal_path(out_dir: str | Path, name: str, run_key: Mapping[str, Any]) -> Path:
    """Where a run journals its answers: one file per run name and key, under OUT/.journal.

    >>> journal_path("out", "stuff", {"k": 5}).as_posix()
    'out/.journal/qa-stuff-59de009d71.jsonl'
    """
    digest = hashlib.sha1(json.dumps(run_key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(out_dir) / JOURNAL_DIR / f"qa-{name}-{digest}.jsonl"


def check_runs(names: Sequence[str]) -> None:
    """Refuse a run name that is not a generation mode with a decoding it has.

    >>> check_runs(["stuff", "rag-sequence-fast"])
    >>> check_runs(["rag-token-grounded"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ragmix.errors.BadInputError: unknown QA run 'rag-token-grounded'; ...
    """
    if not names:
        raise BadInputError(f"no runs to evaluate; give names such as {', '.join(QA_MODES)}")
    for name in names:
        generation, decoding = split_qa_mode(name)
        if generation not in GENERATION_MODES or (
                decoding != "thorough" and decoding not in MODE_DECODINGS[generation]):
            raise BadInputError(f"unknown QA run {name!r}; runs are MODE[-DECODING], such as "
                                f"{', '.join(QA_MODES)}")


def _collection_key(collection: Collection) -> str:
    """The collection as a journal key names it: a resolved directory, or its URL."""
    if collection.directory is None:
        return collection.location
    return str(Path(collection.directory).resolve())


def _run_key(collection: Collection, questions: QASample, *, fusion: str, dtype: str,
             query_encoder: str | None, reranker: Reranker | None, rerank_model: str | None,
             rerank_depth: int) -> dict[str, Any]:
    """What the journals' file name hashes: the settings a journal header does not hold."""
    return {"collection": _collection_key(collection),
            "questions": str(Path(questions.path).resolve()), "limit": questions.limit,
            "seed": questions.seed, "fusion": fusion, "query_encoder": query_encoder,
            "dtype": dtype, "rerank": reranker and reranker.name,
            "rerank_model": rerank_model, "rerank_depth": rerank_depth}


def _plots(out_dir: str | Path, reports: Mapping[str, QAReport], *,
           retrieval_only: bool) -> tuple[str, str | None]:
    """The report's Markdown for the plots, and why there are none (or None)."""
    from ragmix.evaluation.plots import report_plots_or_reason

    return report_plots_or_reason(
        out_dir, {name: r.metrics for name, r in reports.items()},
        {name: [q.retrieval_s + (q.generation_s or 0.0) for q in r.results]
         for name, r in reports.items()},
        prefix="answer_recall",
        what="question (retrieval only)" if retrieval_only else "question")


def run_qa_eval(
    collection: Collection,
    generator: Generator | None,
    questions: QASample,
    out_dir: str | Path,
    *,
    runs: Sequence[str] = ("stuff",),
    retrieval: str = "hybrid",
    fusion: str = DEFAULT_FUSION,
    k: int = 5,
    tau: float | None = None,
    beams: int | None = None,
    scoring: str = DEFAULT_SCORING,
    max_new_tokens: int = 32,
    regex: bool = False,
    reranker: Reranker | None = None,
    rerank_depth: int = DEFAULT_RERANK_DEPTH,
    generator_name: str | None = None,
    query_encoder: str | None = None,
    rerank_model: str | None = None,
    dtype: str = "float32",
    progress: Progress | None = None,
    on_resume: Callable[[str, Path], None] | None = None,
) -> QAEvalResult:
    """Answer recall@k and, with a ``generator``, EM, F1 and contains of every run, in OUT.

    Each of ``runs`` (MODE[-DECODING] names, see :func:`ragmix.modes.qa_mode_name`)
    answers every question of ``questions`` from the top ``k`` passages of ``collection``,
    searched in the ``retrieval`` mode (with ``fusion``, then ``reranker`` over the top
    ``rerank_depth``); :func:`~ragmix.evaluation.run_qa.evaluate_qa` has the settings.
    Without a generator one run measures retrieval alone, named after ``retrieval``.
    A run whose journal is on disk (the same settings, an unfinished earlier call) is
    resumed and reported to ``on_resume(name, path)`` first. ``generator_name`` (default:
    the generator's own name), ``query_encoder``, ``rerank_model`` and ``dtype`` say how
    the components were made, for the journals' key and the report.

    Example::

        sample = QASample.load("dev-questions.jsonl", limit=200)
        with Collection.open("squad-col") as col:
            result = run_qa_eval(col, load_generator("smollm2-squad"), sample, "out",
                                 runs=["stuff-grounded", "rag-sequence-fast"])
        result.reports["rag-sequence-fast"].metrics["em"]
    """
    names = (retrieval,) if generator is None else tuple(dict.fromkeys(runs))
    if generator is not None:
        check_runs(names)
    if reranker is not None and tau is None:
        tau = reranker.tau  # the prior's temperature suits the reranker's scores
    key = _run_key(collection, questions, fusion=fusion, dtype=dtype, query_encoder=query_encoder,
                   reranker=reranker, rerank_model=rerank_model, rerank_depth=rerank_depth)
    journals = {name: journal_path(out_dir, name, key) for name in names}
    for name, path in journals.items():
        if path.exists() and on_resume is not None:
            on_resume(name, path)
    reports = {}
    for name in names:
        generation, decoding = ("stuff", "thorough") if generator is None else split_qa_mode(name)
        reports[name] = evaluate_qa(
            collection.searcher(fusion=fusion, rerank=reranker, rerank_depth=rerank_depth),
            generator, questions.examples, mode=retrieval, k=k, regex=regex,
            max_new_tokens=max_new_tokens, progress=progress, generation=generation, tau=tau,
            beams=beams, decoding=decoding, scoring=scoring, journal=journals[name])
    settings = {"k": k, "retrieval": retrieval, "fusion": fusion, "tau": tau, "beams": beams,
                "scoring": scoring, "max_new_tokens": max_new_tokens,
                "generator": None if generator is None else (generator_name or generator.name),
                "query_encoder": query_encoder, "dtype": dtype,
                "rerank": reranker and reranker.name, "rerank_depth": rerank_depth}
    return _write(out_dir, reports, questions, collection, settings, regex=regex,
                  retrieval_only=generator is None, journals=journals.values())


def _write(out_dir: str | Path, reports: dict[str, QAReport], questions: QASample,
           collection: Collection, settings: dict[str, Any], *, regex: bool,
           retrieval_only: bool, journals) -> QAEvalResult:
    """results.json, report.md and the plots into OUT; then the journals go."""
    from ragmix.evaluation.report import (
        collection_meta, qa_markdown, qa_results, run_info, write_report,
    )

    meta = {**run_info(),
            "data": {"questions": questions.path, "n_questions": len(questions.examples),
                     "limit": questions.limit, "seed": questions.seed, "regex": regex},
            "collection": collection_meta(collection.location, collection.info()),
            "settings": settings}
    plots, skipped = _plots(out_dir, reports, retrieval_only=retrieval_only)
    results_path, report_path = write_report(
        out_dir, qa_results(reports, meta), qa_markdown(reports, meta) + plots)
    for path in journals:  # the report holds every answer now
        path.unlink(missing_ok=True)
    return QAEvalResult(reports, len(questions.examples), results_path, report_path, skipped)
