"""Grounded answers: a verbatim span of the retrieved passages, with the exact place it stands.

Two layouts share the span decoder (:mod:`ragmix.marginal.grounded`):

- ``rag-sequence``: one prompt per passage, each allowed only its own spans,
  marginalised over the passages under the prior p(z|x); the posterior
  p(z|x,y) says which passages support the answer;
- ``stuff``: the k passages numbered in one prompt, which may quote any of them.

Either way the answer's text is copied from a passage, and its quotes give
the passage and character offsets (in the passage and in the document) of
every place it stands, best-supported first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation.prompt import (
    GROUNDED_INSTRUCTION,
    build_grounded_passage_prompt,
    build_prompt,
    shown_text,
)
from ragmix.generation.spans import SpanAutomaton, vocabulary_of
from ragmix.marginal.confidence import answer_signals
from ragmix.marginal.grounded import grounded_decode
from ragmix.types import Answer, Hit, Quote

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.base import ScoringGenerator

# The content-free question of "pmi" scoring (Zhao et al., 2021, calibrate with "N/A").
NULL_QUESTION = "N/A"
# A quoted answer is a phrase: "stuff" caps free answers at 200 tokens, spans at this.
MAX_SPAN_TOKENS = 32


def grounded_answer(
    gen: ScoringGenerator, question: str, hits: Sequence[Hit], *, mode: str,
    doc_lp: Tensor | None = None, beams: int = 4, max_new_tokens: int = 32,
    scoring: str = "constrained", max_passage_chars: int | None = None,
) -> Answer:
    """Answer ``question`` with a span of ``hits``; ``doc_lp`` (K,) is RAG-Sequence's prior."""
    torch = require("torch", "models")
    tokenizer = getattr(gen, "tokenizer", None)
    if tokenizer is None:
        raise BadInputError(
            "grounded decoding spells passages token by token, so it needs the generator's "
            f"tokenizer (a `tokenizer` attribute, as HFGenerator has); {type(gen).__name__} "
            "has none")
    vocabulary = vocabulary_of(tokenizer)
    shown = [shown_text(hit, max_passage_chars) for hit in hits]
    texts = [text for text, _ in shown]
    if mode == "rag-sequence":
        if doc_lp is None:
            raise ValueError("rag-sequence needs the prior doc_lp")
        prompts = [gen.encode_prompt(build_grounded_passage_prompt(question, h)) for h in hits]
        nulls = [gen.encode_prompt(build_grounded_passage_prompt(NULL_QUESTION, h))
                 for h in hits]
        automata = [SpanAutomaton([text], vocabulary) for text in texts]
        text_ids: list[list[int]] = [[z] for z in range(len(hits))]
        prior = doc_lp
    else:
        prompts, nulls = ([gen.encode_prompt(build_prompt(
            q, hits, max_passage_chars=max_passage_chars, instruction=GROUNDED_INSTRUCTION))]
            for q in (question, NULL_QUESTION))
        automata = [SpanAutomaton(texts, vocabulary)]
        text_ids = [list(range(len(hits)))]
        prior = torch.zeros(1, dtype=torch.float64)
    found = grounded_decode(gen, prompts, automata, prior, text_ids=text_ids,
                            max_new_tokens=max_new_tokens, beams=beams, scoring=scoring,
                            null_prompts=nulls if scoring == "pmi" else None)
    if not found:
        return Answer(question, "", tuple(hits), mode=mode, decoding="grounded")
    best = found[0]
    quotes = distinct_quotes(
        _quote(hits[s.text], shown[s.text][1], s.text, s.start + cut[0], s.start + cut[1])
        for s in best.spans for cut in [balanced_cut(texts[s.text][s.start:s.end])])
    head, tail = balanced_cut(best.text)
    chosen = best.per_row if scoring == "constrained" else best.raw_per_row
    posterior = (prior.double() + chosen).softmax(-1).tolist()
    signals = answer_signals(
        marginal=best.logprob, per_row_raw=best.raw_per_row.tolist(),
        per_row_constrained=best.per_row.tolist(), prior=prior.double().exp().tolist(),
        posterior=posterior, runner_up=found[1].logprob if len(found) > 1 else None,
        top_score=hits[0].score, tokens=best.n_tokens)
    extra = {}
    if mode == "rag-sequence":
        extra = dict(prior=tuple(doc_lp.exp().tolist()), posterior=tuple(posterior))
    return Answer(question=question, text=best.text[head:tail], hits=tuple(hits), mode=mode,
                  cited=tuple(dict.fromkeys(q.hit for q in quotes)), logprob=best.logprob,
                  decoding="grounded", quotes=quotes, signals=signals, **extra)


def _quote(hit: Hit, offsets: list[int], index: int, start: int, end: int) -> Quote:
    """A span of the shown (white-space-squeezed) text as offsets into ``hit.text``."""
    first, last = offsets[start], offsets[end - 1] + 1
    return Quote(hit=index + 1, start=first, end=last, doc_id=hit.doc_id,
                 doc_start=hit.start + first, doc_end=hit.start + last)



# A span may start or end inside a pair of quotes or brackets ("`make test"): such a
# lone opener or closer is cut from the answer and its quotes.
_OPENERS = {"`": "`", '"': '"', "(": ")", "[": "]", "{": "}", "\u201c": "\u201d"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}


def balanced_cut(text: str) -> tuple[int, int]:
    """``(start, end)``: ``text[start:end]`` without a lone quote or bracket at either end.

    Nothing is cut when only such characters are left.

    >>> [t[slice(*balanced_cut(t))] for t in ["`make test", "(see docs", "`make test`", "`"]]
    ['make test', 'see docs', '`make test`', '`']
    """
    start, end = 0, len(text)
    while start < end:
        head, tail = text[start], text[end - 1]
        if head in _OPENERS and _OPENERS[head] not in text[start + 1 : end]:
            start += 1
        elif tail in _CLOSERS and _CLOSERS[tail] not in text[start : end - 1]:
            end -= 1
        elif head.isspace():
            start += 1
        elif tail.isspace():
            end -= 1
        else:
            return start, end
    return 0, len(text)


def distinct_quotes(quotes) -> tuple[Quote, ...]:
    """``quotes`` in order, less each one that overlaps an earlier one in the same passage.

    >>> [(q.hit, q.start) for q in distinct_quotes([Quote(1, 0, 9), Quote(1, 1, 9),
    ...                                              Quote(2, 1, 9), Quote(1, 9, 12)])]
    [(1, 0), (2, 1), (1, 9)]
    """
    kept: list[Quote] = []
    for quote in quotes:
        if not any(k.hit == quote.hit and k.start < quote.end and quote.start < k.end
                   for k in kept):
            kept.append(quote)
    return tuple(kept)
