"""Retrieve, stuff the top-k passages into one prompt, answer, and find the citations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ragmix.errors import BadInputError
from ragmix.generation.base import ContextLimited, Generator, ScoringGenerator
from ragmix.generation.prompt import build_prompt, parse_citations
from ragmix.marginal.confidence import Calibration, abstention_policy, with_confidence
from ragmix.types import Answer, Hit
from ragmix.modes import DEFAULT_SCORING


@runtime_checkable
class Searcher(Protocol):
    """Anything that returns ranked passages for a query, e.g. a ``Collection``."""

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]: ...


class RAG:
    """Question answering over a searcher with a generator, in the everyday "stuff" mode.

    The top ``k`` hits are numbered [1]..[k] in one prompt; the generator
    answers greedily and cites them, and :meth:`ask` returns a frozen
    :class:`~ragmix.types.Answer`. If the generator reports its context size
    (a :class:`~ragmix.generation.base.ContextLimited`, as :class:`HFGenerator`
    is), the lowest-ranked hits are dropped until prompt and answer fit.
    With ``grounded=True`` the answer is a verbatim span of one of the
    passages (beam search of width ``beams``), quoted exactly in ``quotes``,
    with a calibrated ``confidence`` where ragmix has a calibration for the
    generator; below ``min_confidence`` ("auto": the calibration's threshold,
    0: never) it abstains (see :mod:`ragmix.marginal.confidence`).

    With ``load_generator()`` (SmolLM2) in place of the scripted generator:

    >>> import tempfile
    >>> from ragmix import Collection, Document
    >>> from ragmix.testing import ScriptedGenerator
    >>> tmp = tempfile.TemporaryDirectory()
    >>> collection = Collection.create(tmp.name, encoder="hashing-256")
    >>> _ = collection.add_documents([
    ...     Document("varno", "Lake Varno is 310 metres deep.", "varno.md", title="Lake Varno"),
    ...     Document("kelm", "Kelm was founded in 1672 by fishermen.", "kelm.md", title="Kelm"),
    ... ])
    >>> rag = RAG(collection, ScriptedGenerator("Fishermen founded it in 1672 [1]."), k=2)
    >>> answer = rag.ask("Who founded Kelm?")
    >>> answer.text, answer.cited, [hit.source for hit in answer.sources]
    ('Fishermen founded it in 1672 [1].', (1,), ['kelm.md'])
    >>> collection.close()
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        retriever: Searcher,
        generator: Generator,
        *,
        k: int = 5,
        mode: str = "hybrid",
        max_new_tokens: int = 200,
        max_passage_chars: int | None = None,
        grounded: bool = False,
        beams: int = 4,
        scoring: str = DEFAULT_SCORING,
        min_confidence: float | str | None = "auto",
        calibration: Calibration | None = None,
    ) -> None:
        _check_positive("k", k)
        _check_positive("beams", beams)
        _check_positive("max_new_tokens", max_new_tokens)
        if max_passage_chars is not None:
            _check_positive("max_passage_chars", max_passage_chars)
        if not callable(getattr(retriever, "search", None)):
            raise BadInputError(
                "retriever must have a search(query, k, *, mode) method, "
                f"got {type(retriever).__name__}"
            )
        self.retriever = retriever
        self.generator = generator
        self.k = k
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.max_passage_chars = max_passage_chars
        if grounded and not isinstance(generator, ScoringGenerator):
            raise BadInputError(
                "grounded decoding needs a generator that scores token ids (a ScoringGenerator "
                f"such as HFGenerator), got {type(generator).__name__}")
        self.grounded, self.beams, self.scoring = grounded, beams, scoring
        self.calibration, self.min_confidence = abstention_policy(
            generator, "stuff", scoring, grounded=grounded, min_confidence=min_confidence,
            calibration=calibration)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer ``question`` from the top-``k`` passages; ``on_token`` streams the text."""
        if not isinstance(question, str) or not question.strip():
            raise BadInputError(f"question must be a non-empty string, got {question!r}")
        k = self.k if k is None else k
        _check_positive("k", k)
        question = question.strip()
        hits = list(self.retriever.search(question, k, mode=mode or self.mode))[:k]
        hits, prompt = self._fit(question, hits)
        if self.grounded:
            return self._grounded(question, hits, on_token)
        text = self.generator.generate(
            prompt, max_new_tokens=self.max_new_tokens, on_token=on_token
        )
        return Answer(
            question=question,
            text=text,
            hits=tuple(hits),
            cited=parse_citations(text, len(hits)),
        )

    def _grounded(self, question: str, hits: list[Hit],
                  on_token: Callable[[str], None] | None) -> Answer:
        """A verbatim span of one of the passages (see :mod:`ragmix.marginal.grounded_answer`)."""
        from ragmix.marginal.grounded_answer import MAX_SPAN_TOKENS, grounded_answer

        answer = grounded_answer(self.generator, question, hits, mode="stuff", beams=self.beams,
                                 max_new_tokens=min(self.max_new_tokens, MAX_SPAN_TOKENS),
                                 max_passage_chars=self.max_passage_chars, scoring=self.scoring)
        answer = with_confidence(answer, self.calibration, self.min_confidence)
        if on_token is not None and answer.text:
            on_token(answer.text)
        return answer

    def _fit(self, question: str, hits: list[Hit]) -> tuple[list[Hit], str]:
        """Drop the lowest-ranked hits until the prompt leaves room for the answer."""
        prompt = build_prompt(question, hits, max_passage_chars=self.max_passage_chars)
        if not isinstance(self.generator, ContextLimited):
            return hits, prompt
        limit, count = self.generator.max_context_tokens, self.generator.count_tokens
        if not isinstance(limit, int):
            return hits, prompt
        budget = limit - self.max_new_tokens
        while hits and count(prompt) > budget:
            hits = hits[:-1]
            prompt = build_prompt(question, hits, max_passage_chars=self.max_passage_chars)
        return hits, prompt


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{name} must be an integer greater than 0, got {value!r}")
