"""An ask request's options turned into ragmix's answerers, as ``ragmix ask`` builds them.

"stuff" is :class:`~ragmix.generation.rag.RAG`; "rag-sequence" and
"rag-token" are :class:`~ragmix.marginal.model.MarginalRAG`. The defaults are
the CLI's: grounded decoding where the mode has it, else free.

>>> from ragmix.testing import ScriptedGenerator
>>> class NoPassages:
...     def search(self, query, k, *, mode):
...         return []
>>> answering = answerer(NoPassages(), ScriptedGenerator("Paris."), mode="stuff", decoding="free")
>>> answering.ask("Capital of France?").text
'Paris.'
>>> answerer(NoPassages(), ScriptedGenerator(""), mode="rag-token", decoding="grounded")
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ragmix.errors.BadInputError: decoding 'grounded' works with mode stuff or rag-sequence, ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ragmix.errors import BadInputError
from ragmix.generation.base import Generator
from ragmix.generation.rag import RAG, Searcher
from ragmix.modes import ASK_DEFAULT_MODE, DEFAULT_SCORING, GROUNDED_MODES, ask_decoding
from ragmix.retrieval.fusion import softmax_probs
from ragmix.types import Answer, Hit


@dataclass(frozen=True)
class Answering:
    """An answerer set up for one request: ``RAG`` for stuff, ``MarginalRAG`` for rag-*."""

    rag: Any  # RAG | MarginalRAG (the latter imported only for rag-* modes: it needs torch)
    explain: bool = False

    def ask(self, question: str, *, on_token: Callable[[str], None] | None = None) -> Answer:
        if isinstance(self.rag, RAG):
            return self.rag.ask(question, on_token=on_token)
        return self.rag.ask(question, explain=self.explain, on_token=on_token)

    def prior(self, hits: Sequence[Hit]) -> list[float]:
        """p(z|x) as this answerer weighs ``hits``: softmax(score / tau) for rag-*, else the
        hits' own (softmax over the top-k at temperature 1)."""
        if isinstance(self.rag, RAG) or not hits:
            return [hit.prob for hit in hits]
        scores = np.array([hit.score for hit in hits], dtype=np.float64)  # (K,)
        return softmax_probs(scores, temperature=self.rag.tau).tolist()


def checked_decoding(mode: str, asked: str | None, explain: bool) -> str:
    """The decoding an ask uses (:func:`ragmix.modes.ask_decoding`), or why it cannot."""
    decoding = ask_decoding(mode, asked)
    if explain and (mode == "stuff" or decoding == "grounded"):
        raise BadInputError("explain needs mode rag-sequence or rag-token with free decoding "
                            "(decoding thorough, fast or free); grounded answers carry quotes "
                            "instead")
    if decoding == "grounded" and mode not in GROUNDED_MODES:
        raise BadInputError(f"decoding 'grounded' works with mode {' or '.join(GROUNDED_MODES)}, "
                            f"not {mode}")
    if mode == "stuff" and decoding not in ("grounded", "free"):
        raise BadInputError(f"decoding {asked!r} is RAG-Sequence's; mode stuff takes decoding "
                            "'grounded' or 'free'")
    return decoding


def answerer(searcher: Searcher, generator: Generator, *, mode: str = ASK_DEFAULT_MODE,
             decoding: str | None = None, retrieval: str = "hybrid", k: int = 5,
             tau: float | None = None, beams: int | None = None,
             scoring: str = DEFAULT_SCORING, min_confidence: float | str | None = "auto",
             max_new_tokens: int | None = None, explain: bool = False) -> Answering:
    """The answerer for these options, or a :class:`BadInputError` naming the one to change."""
    decoding = checked_decoding(mode, decoding, explain)
    if mode == "stuff":
        rag = RAG(searcher, generator, k=k, mode=retrieval, max_new_tokens=max_new_tokens or 200,
                  grounded=decoding == "grounded", beams=beams or 4, scoring=scoring,
                  min_confidence=min_confidence)
        return Answering(rag)
    from ragmix.marginal.model import MarginalRAG

    rag = MarginalRAG(searcher, generator, mode=mode, k=k, retrieval=retrieval, tau=tau,
                      beams=beams, scoring=scoring,
                      decoding="thorough" if decoding == "free" else decoding,
                      max_new_tokens=max_new_tokens or 32, min_confidence=min_confidence)
    return Answering(rag, explain=explain)


def answer_json(answer: Answer) -> dict[str, Any]:
    """The answer as JSON: ``dataclasses.asdict`` plus ``sources`` (the hits behind it, best
    first); a non-finite number (a log-probability of -inf) becomes null."""
    return _finite({**asdict(answer), "sources": [asdict(hit) for hit in answer.sources]})


def hits_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [_finite(asdict(hit)) for hit in hits]


def citations(answer: Answer) -> list[dict[str, Any]]:
    """Where the answer stands: one entry per quote (grounded answers), else per cited [n].

    ``n`` is the 1-based passage number, ``quote`` the cited characters,
    ``start``/``end`` their offsets in the passage and ``doc_start``/``doc_end``
    in the document; a cited passage (no quote) is cited whole. An answer that
    abstains, or cites nothing, has none.

    >>> hit = Hit(7, "kelm.md", "Kelm was founded in 1672.", 1.0, 1.0, 1, start=100, end=125)
    >>> [c["quote"] for c in citations(Answer("When?", "in 1672", (hit,), cited=(1,)))]
    ['Kelm was founded in 1672.']
    """
    found = []
    if answer.quotes:
        for quote in answer.quotes:
            hit = answer.hits[quote.hit - 1]
            found.append(_citation(quote.hit, hit, quote.start, quote.end, kind="quote"))
    else:
        for n in dict.fromkeys(answer.cited):  # in order, each passage once
            if 0 < n <= len(answer.hits):
                found.append(_citation(n, answer.hits[n - 1], 0, len(answer.hits[n - 1].text),
                                       kind="passage"))
    return found


def _citation(n: int, hit: Hit, start: int, end: int, *, kind: str) -> dict[str, Any]:
    return {"n": n, "kind": kind, "chunk_id": hit.chunk_id, "doc_id": hit.doc_id,
            "source": hit.source, "title": hit.title, "quote": hit.text[start:end],
            "start": start, "end": end, "doc_start": hit.start + start,
            "doc_end": hit.start + end}


def provenance(answer: Answer, *, collection: str) -> dict[str, Any]:
    """Everything an answer says about where it came from, as one JSON object.

    ``sources`` are all the passages, best first (by posterior when the answer
    has one), each with its number ``n``, prior p(z|x) and posterior p(z|x,y)
    (null for stuff answers, which have none); ``citations`` as
    :func:`citations`; ``tokens`` with ``token_posteriors`` (one row of K per
    token, in passage order) for rag-token and explained answers.
    """
    prior = list(answer.prior) or [hit.prob for hit in answer.hits]
    order = range(len(answer.hits))
    if answer.posterior:
        order = sorted(order, key=lambda i: -answer.posterior[i])
    sources = [{"n": i + 1, **asdict(answer.hits[i]), "prior": prior[i],
                "posterior": answer.posterior[i] if answer.posterior else None} for i in order]
    return _finite({
        "collection": collection, "mode": answer.mode, "decoding": answer.decoding,
        "question": answer.question, "sources": sources, "citations": citations(answer),
        "cited": list(answer.cited), "quotes": [asdict(q) for q in answer.quotes],
        "confidence": answer.confidence, "abstained": answer.abstained, "guess": answer.guess,
        "logprob": answer.logprob, "tokens": list(answer.tokens),
        "token_posteriors": [list(row) for row in answer.token_posteriors]})


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither).

    >>> _finite({"a": [1.0, float("-inf")], "b": (float("nan"),)})
    {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
