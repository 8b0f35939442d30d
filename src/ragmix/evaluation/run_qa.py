"""Open-domain QA over a collection: answer recall@k of retrieval, EM/F1/contains of answers."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragmix.errors import BadInputError
from ragmix.evaluation.datasets import QAExample
from ragmix.evaluation.qa_journal import QAJournal
from ragmix.evaluation.qa_metrics import (
    answer_in_passages, contains, exact_match, f1, regex_match,
)
from ragmix.evaluation.retrieval_metrics import latency_summary
from ragmix.evaluation.run_retrieval import Searcher
from ragmix.types import Hit
from ragmix.modes import DEFAULT_SCORING

if TYPE_CHECKING:
    from ragmix.generation.base import Generator
    from ragmix.store.ingest import Progress

RECALL_KS = (1, 5, 10, 20)


@dataclass(frozen=True)
class QAResult:
    """One question's outcome; ``prediction`` is None when nothing was generated."""

    id: str
    question: str
    answers: tuple[str, ...]
    prediction: str | None
    em: float | None
    f1: float | None  # None for regex answers, which have no tokens to overlap
    contains: float | None  # a gold answer occurs in the prediction (qa_metrics.contains)
    answer_recall: dict[str, float]  # "answer_recall@k" -> 1.0 or 0.0
    retrieval_s: float
    generation_s: float | None


@dataclass(frozen=True)
class QAReport:
    """Mean metrics over the questions, and each question's result."""

    metrics: dict[str, float]
    results: tuple[QAResult, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"n_questions": len(self.results), "metrics": dict(self.metrics),
                "per_question": [asdict(r) for r in self.results]}


def sample_questions(
    examples: Sequence[QAExample], limit: int | None, seed: int
) -> list[QAExample]:
    """``limit`` questions drawn with ``seed`` (all if None), kept in file order.

    >>> qs = [QAExample(str(i), f"q{i}?", ("a",)) for i in range(10)]
    >>> [q.id for q in sample_questions(qs, 3, seed=0)]
    ['0', '6', '9']
    """
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise BadInputError(f"limit must be >= 1, got {limit}")
    picked = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in picked]


class _Recorder:
    """Searches ``depth`` deep once per question, keeps the hits, hands RAG the top k."""

    def __init__(self, searcher: Searcher, depth: int) -> None:
        self.searcher, self.depth = searcher, depth
        self.hits: list[Hit] = []
        self.seconds = 0.0

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        began = time.perf_counter()
        self.hits = self.searcher.search(query, max(k, self.depth), mode=mode)
        self.seconds = time.perf_counter() - began
        return self.hits[:k]


def strip_citations(text: str) -> str:
    """The answer without its [n] citation markers, which no gold answer contains.

    >>> strip_citations("Paris [1, 2].")
    'Paris .'
    """
    from ragmix.generation.prompt import _CITATION

    return " ".join(_CITATION.sub(" ", text).split())


def evaluate_qa(
    searcher: Searcher,
    generator: Generator | None,
    examples: Sequence[QAExample],
    *,
    mode: str,
    k: int = 5,
    recall_ks: Sequence[int] = RECALL_KS,
    regex: bool = False,
    max_new_tokens: int = 32,
    progress: Progress | None = None,
    generation: str = "stuff",
    tau: float | None = None,
    beams: int | None = None,
    decoding: str = "thorough",
    scoring: str = DEFAULT_SCORING,
    journal: str | Path | None = None,
    min_confidence: float | str | None = 0.0,
) -> QAReport:
    """Answer recall@k for each k in ``recall_ks``, and EM/F1/contains of the answers.

    ``mode`` is the retrieval mode. The generator answers from the top ``k``
    passages: ``generation="stuff"`` puts them in one prompt
    (:class:`~ragmix.generation.RAG`); "rag-sequence" and "rag-token" decode
    over their mixture (:class:`~ragmix.marginal.model.MarginalRAG`, with
    ``tau``, ``beams`` and ``decoding``); ``decoding="grounded"`` answers
    with a verbatim span of the passages (stuff or rag-sequence), its spans
    scored by ``scoring`` (see :mod:`ragmix.marginal.grounded`); they
    never abstain unless ``min_confidence`` says so ("auto": the shipped
    calibration's threshold), since EM and F1 judge the answer itself. With
    ``generator=None`` only retrieval is measured. ``regex=True`` treats gold
    answers as CuratedTREC patterns.

    With ``journal`` (a .jsonl path) every answer is written to disk as it
    finishes, and a rerun with the same settings skips the questions already
    there, so a crash loses at most one question (see
    :class:`~ragmix.evaluation.qa_journal.QAJournal`). The journal records
    the generation settings, not the collection: use one path per collection.
    """
    if not examples:
        raise BadInputError("no questions to evaluate")
    ks = sorted({*recall_ks, k})
    if ks[0] < 1:
        raise BadInputError(f"recall ks must be >= 1, got {ks[0]}")
    recorder = _Recorder(searcher, max(ks))
    rag = None if generator is None else _answerer(
        recorder, generator, generation, k=k, mode=mode, max_new_tokens=max_new_tokens, tau=tau,
        beams=beams, decoding=decoding, scoring=scoring, min_confidence=min_confidence)
    stage = f"answering ({generation}, {mode})" if rag else f"retrieving ({mode})"
    log = None if journal is None else QAJournal(journal, _journal_settings(
        generator, mode=mode, k=k, recall_ks=ks, regex=regex, max_new_tokens=max_new_tokens,
        generation=generation if rag else None, tau=tau, beams=beams, decoding=decoding,
        scoring=scoring, min_confidence=min_confidence))
    results = _journalled(examples, lambda ex: _answer(ex, recorder, rag, ks, mode=mode,
                                                       regex=regex),
                          log, regex=regex, progress=progress, stage=stage)
    return QAReport(_means(results), tuple(results))


def _journalled(examples: Sequence[QAExample], answer: Callable[[QAExample], QAResult],
                log: QAJournal | None, *, regex: bool, progress: Progress | None,
                stage: str) -> list[QAResult]:
    """Each question's result in order: read back from ``log`` when a crashed run finished
    it, else ``answer``-ed and appended to ``log`` at once; the journal is closed after."""
    done = {} if log is None else log.done
    if progress is not None:
        progress.start(stage, len(examples))
    results = []
    try:
        for ex in examples:
            if ex.id in done:
                results.append(_backfilled(done[ex.id], regex=regex))
            else:
                results.append(answer(ex))
                if log is not None:
                    log.append(results[-1])
            if progress is not None:
                progress.advance(stage)
    finally:
        if log is not None:
            log.close()
    return results


def _journal_settings(generator: Generator | None, *, scoring: str, min_confidence,
                      **settings) -> dict:
    """What a QA journal must match to be resumed: the settings that change an answer."""
    settings["generator"] = getattr(generator, "name", None)
    if settings["decoding"] == "grounded":
        settings["scoring"] = scoring
    if min_confidence not in (None, 0, 0.0):
        settings["min_confidence"] = min_confidence
    return settings


def _answer(ex: QAExample, recorder: _Recorder, rag, ks: list[int], *, mode: str,
            regex: bool) -> QAResult:
    """One question: retrieve (and answer, when ``rag`` is given), then score."""
    prediction = em = f1_score = contained = gen_s = None
    if rag is None:
        recorder.search(ex.question, max(ks), mode=mode)
    else:
        began = time.perf_counter()
        prediction = strip_citations(rag.ask(ex.question).text)
        gen_s = time.perf_counter() - began - recorder.seconds
        em = (regex_match if regex else exact_match)(prediction, ex.answers)
        f1_score = None if regex else f1(prediction, ex.answers)
        contained = contains(prediction, ex.answers, regex=regex)
    texts = [h.text for h in recorder.hits]
    recall = {f"answer_recall@{n}":
              float(answer_in_passages(ex.answers, texts[:n], regex=regex)) for n in ks}
    return QAResult(ex.id, ex.question, ex.answers, prediction, em, f1_score, contained, recall,
                    recorder.seconds, gen_s)


def _backfilled(result: QAResult, *, regex: bool) -> QAResult:
    """A journalled result, scored for contains if its journal predates that metric."""
    if result.prediction is None or result.contains is not None:
        return result
    return replace(result, contains=contains(result.prediction, result.answers, regex=regex))


def _answerer(searcher, generator, generation: str, *, k: int, mode: str, max_new_tokens: int,
              tau: float | None, beams: int | None, decoding: str, scoring: str,
              min_confidence: float | str | None):
    """Something with ``ask(question) -> Answer`` for the generation mode."""
    if generation == "stuff":
        from ragmix.generation.rag import RAG

        return RAG(searcher, generator, k=k, mode=mode, max_new_tokens=max_new_tokens,
                   grounded=decoding == "grounded", beams=beams or 4, scoring=scoring,
                   min_confidence=min_confidence if decoding == "grounded" else None)
    from ragmix.marginal.model import MarginalRAG

    return MarginalRAG(searcher, generator, mode=generation, k=k, retrieval=mode, tau=tau,
                       beams=beams, decoding=decoding, max_new_tokens=max_new_tokens,
                       scoring=scoring,
                       min_confidence=min_confidence if decoding == "grounded" else None)


def _means(results: Sequence[QAResult]) -> dict[str, float]:
    metrics = {name: float(np.mean([r.answer_recall[name] for r in results]))
               for name in results[0].answer_recall}
    for name in ("em", "f1", "contains"):
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        if values:
            metrics[name] = float(np.mean(values))
    metrics["retrieval_ms"] = latency_summary(r.retrieval_s for r in results)["mean"]
    generation = [r.generation_s for r in results if r.generation_s is not None]
    if generation:
        metrics["s_per_question"] = float(np.mean(
            [r.retrieval_s + r.generation_s for r in results if r.generation_s is not None]))
    return metrics
