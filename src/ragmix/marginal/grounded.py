"""Grounded decoding: answers that are verbatim spans of the passages, marginalised over them.

Under each prompt the generator may only write a span of that prompt's texts
(:class:`~ragmix.generation.spans.SpanAutomaton`) and then end. Renormalised
over the allowed tokens at every step, that is a proper distribution
p_c(y | x, z) over the spans; the answer's marginal is

    p(y|x) = sum_z p(z|x) p_c(y | x, z),

with the spans of one normalised text (SQuAD normalisation) counted as one
answer, whichever passage or tokenization they come from. Every row does its
own beam search, all rows batched, and an answer counts 0 under a row whose
beams did not propose it (RAG-Sequence "fast", Lewis et al. 2020, 2.5).

RAG-Sequence gives each passage its own row over its own text; "stuff" gives
one row over all the passages in one prompt, with a prior of 1.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.evaluation.qa_metrics import normalize_answer
from ragmix.generation.spans import Span, SpanAutomaton, SpanState
from ragmix.modes import SCORINGS

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.base import Decoder, ScoringGenerator

# How spans are ranked. "constrained" renormalises over the allowed tokens at each
# step (a distribution over spans; once a copy has started, going on is nearly
# certain, so it favours long spans); "raw" keeps the model's own probabilities of
# the span and the end (it favours the shortest spans); "mean" ranks by the raw
# log-probability per token, the end included (the usual length normalisation).
# "pmi" ranks the spans that "raw" proposes by how much the question raises their
# probability: log p(y | x, z) - log p(y | z) with a content-free question in place
# of x (pointwise mutual information; Holtzman et al., 2021, "Surface form
# competition"), so spans the passage makes likely whatever is asked lose.
# Marginals are constrained probabilities under "constrained", raw ones under "raw"
# and "mean", and the prior-weighted sum of exp(PMI) under "pmi" (a score, not a
# probability).
# (the names are ragmix.modes.SCORINGS)


@dataclass(frozen=True)
class SpanHypothesis:
    """One row's ended span: its tokens, scores (the end token included) and places."""

    tokens: tuple[int, ...]
    logprob: float  # log p_c(y, end | x, z), renormalised over the allowed tokens
    raw_logprob: float  # log p(y, end | x, z) under the unconstrained model
    spans: tuple[Span, ...]  # in global text numbers (see grounded_decode's text_ids)
    null_logprob: float = 0.0  # log p(y, end | z) without the question ("pmi" only)


@dataclass(frozen=True)
class GroundedCandidate:
    """An answer text: its marginal, its score under each row, and every place it stands."""

    text: str  # verbatim, as in the best-supporting passage
    logprob: float  # marginal log p(y|x) under the chosen scoring
    per_row: Tensor  # (K,) log p(y | x, z) per row; -inf where the row did not propose it
    raw_per_row: Tensor  # (K,) the same under the unconstrained model
    spans: tuple[Span, ...]  # best-supporting row first
    n_tokens: int = 0  # tokens of the best-supporting span, the end excluded


class _Beam(NamedTuple):
    score: float
    logprob: float
    raw: float
    tokens: tuple[int, ...]
    state: SpanState


def grounded_decode(
    gen: ScoringGenerator, prompts: Sequence[Sequence[int]], automata: Sequence[SpanAutomaton],
    doc_lp: Tensor, *, text_ids: Sequence[Sequence[int]], max_new_tokens: int = 32,
    beams: int = 4, scoring: str = "constrained", decoder_prefix: Sequence[int] | None = None,
    null_prompts: Sequence[Sequence[int]] | None = None,
) -> list[GroundedCandidate]:
    """Decode spans from K prompts (token ids), each constrained by its automaton.

    ``doc_lp`` (K,) is the prior over rows; ``text_ids[z][i]`` is the global
    number of text ``i`` of row z's automaton (a passage's position in the
    hits), so every returned :class:`Span` names a passage. Returns the
    candidates best first by marginal; empty if no row could end a span.
    ``scoring="pmi"`` also needs ``null_prompts``: each row's prompt with a
    content-free question.
    """
    if scoring not in SCORINGS:
        raise BadInputError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if not len(prompts) == len(automata) == len(text_ids) == len(doc_lp):
        raise BadInputError(f"got {len(prompts)} prompts, {len(automata)} automata, "
                            f"{len(text_ids)} text id lists and {len(doc_lp)} priors; "
                            "give one of each per row")
    if scoring == "pmi" and (null_prompts is None or len(null_prompts) != len(prompts)):
        raise BadInputError("scoring='pmi' needs null_prompts, one per row")
    torch = require("torch", "models")
    with torch.inference_mode():
        state = gen.start_decoding(prompts, decoder_prefix=decoder_prefix)
        ended = span_beams(state, automata, sorted(gen.stop_token_ids), max_new_tokens, beams,
                           scoring="raw" if scoring == "pmi" else scoring)
        if scoring == "pmi":
            ended = _with_null_scores(gen, null_prompts, ended, decoder_prefix)
    rows = [[SpanHypothesis(h.tokens, h.logprob, h.raw_logprob,
                            tuple(Span(ids[s.text], s.start, s.end) for s in h.spans),
                            h.null_logprob)
             for h in row] for row, ids in zip(ended, text_ids)]
    texts = {ids[i]: text for a, ids in zip(automata, text_ids) for i, text in enumerate(a.texts)}
    return marginalise(rows, doc_lp, texts, scoring=scoring)


def span_beams(state: Decoder, automata: Sequence[SpanAutomaton], stops: Sequence[int],
               max_new_tokens: int, width: int, *, scoring: str = "constrained"
               ) -> list[list[SpanHypothesis]]:
    """Beam search of ``width`` under each row's automaton, the rows batched: ended spans per row.

    A beam may end (any stop token, their probabilities summed) whenever its
    automaton allows; a row stops searching once no live beam can beat its
    ``width`` best ended spans (exact for "constrained" and "raw", whose scores
    only fall as tokens are added; the usual heuristic for "mean"). Spans that
    normalise to nothing ("the", ".") never take a place among the ended.
    """
    torch = require("torch", "models")
    live = [[_Beam(0.0, 0.0, 0.0, (), a.start())] for a in automata]
    done: list[list[SpanHypothesis]] = [[] for _ in automata]
    stop_ids = list(stops)
    for step in range(max_new_tokens):
        offset, keep_rows, keep_tokens, new_live = 0, [], [], []
        for z, row in enumerate(live):
            candidates = []
            for b, beam in enumerate(row):
                candidates += [(nxt, b) for nxt in _expand(
                    automata[z], beam, state.next_lp[offset + b], stop_ids, done[z], width,
                    scoring)]
            kept = heapq.nlargest(width, candidates, key=lambda c: c[0].score)
            if len(done[z]) >= width and kept and kept[0][0].score <= min(
                    _rank(h, scoring) for h in done[z]):
                kept = []
            new_live.append([c[0] for c in kept])
            keep_rows += [offset + c[1] for c in kept]
            keep_tokens += [c[0].tokens[-1] for c in kept]
            offset += len(row)
        live = new_live
        if not keep_rows or step + 1 == max_new_tokens:
            break
        state.select(torch.tensor(keep_rows))
        state.advance(torch.tensor(keep_tokens))
    return done


def _expand(automaton: SpanAutomaton, beam: _Beam, lp: Tensor, stops: list[int],
            done: list[SpanHypothesis], width: int, scoring: str) -> list[_Beam]:
    """The beam's allowed continuations; if it may end here, records the ended span in ``done``."""
    torch = require("torch", "models")
    nexts = automaton.step(beam.state)
    can_end = bool(beam.tokens) and automaton.can_end(beam.state)
    ids = list(nexts) + (stops if can_end else [])
    if not ids:
        return []
    values = lp[torch.tensor(ids)].double()  # (A,)
    norm = float(values.logsumexp(0))
    allowed = values.tolist()
    spans = automaton.spans(beam.state) if can_end else []
    if spans and normalize_answer(_text(automaton, spans[0])):
        end = float(values[len(nexts):].logsumexp(0))
        done.append(SpanHypothesis(beam.tokens, beam.logprob + end - norm, beam.raw + end,
                                   tuple(spans)))
        done.sort(key=lambda h: -_rank(h, scoring))
        del done[width:]
    out = []
    for token, value in zip(nexts, allowed):
        logprob, raw_lp = beam.logprob + value - norm, beam.raw + value
        tokens = beam.tokens + (token,)
        score = {"constrained": logprob, "raw": raw_lp}.get(scoring, raw_lp / len(tokens))
        out.append(_Beam(score, logprob, raw_lp, tokens, nexts[token]))
    return out


def _with_null_scores(gen: ScoringGenerator, null_prompts, ended, decoder_prefix):
    """The ended spans with log p(span, end | row's null prompt).

    Each null prompt is read once; its rows are forked, one per ended span of
    that row, and every span is teacher-forced in one pass (``Decoder.extend``).
    """
    from ragmix.marginal.scoring import with_end

    torch = require("torch", "models")
    pairs = [(z, h) for z, row in enumerate(ended) for h in row]
    if not pairs:
        return ended
    state = gen.start_decoding(null_prompts, decoder_prefix=decoder_prefix)
    forked = state.fork(torch.tensor([z for z, _ in pairs]))
    scores = forked.extend([with_end(gen, h.tokens) for _, h in pairs]).double().sum(-1)
    out: list[list[SpanHypothesis]] = [[] for _ in ended]
    for (z, h), null in zip(pairs, scores.tolist()):
        out[z].append(SpanHypothesis(h.tokens, h.logprob, h.raw_logprob, h.spans, null))
    return out


def _rank(hyp: SpanHypothesis, scoring: str) -> float:
    """An ended span's ranking score (the end token counts as a token for "mean")."""
    if scoring == "constrained":
        return hyp.logprob
    if scoring == "pmi":
        return hyp.raw_logprob - hyp.null_logprob
    return hyp.raw_logprob if scoring == "raw" else hyp.raw_logprob / (len(hyp.tokens) + 1)


def _text(automaton: SpanAutomaton, span: Span) -> str:
    return automaton.texts[span.text][span.start : span.end]


def marginalise(rows: Sequence[Sequence[SpanHypothesis]], doc_lp: Tensor,
                texts: dict[int, str], *, scoring: str = "constrained"
                ) -> list[GroundedCandidate]:
    """Group the rows' spans by normalised text; each group's marginal over the rows, best first.

    Under one row, a group's probability is the sum over its spans (other
    tokenizations, other places); the marginal adds the rows, weighted by the prior.
    """
    torch = require("torch", "models")
    raw = scoring != "constrained"
    k = len(rows)
    groups: dict[str, list[tuple[int, SpanHypothesis]]] = {}
    for z, row in enumerate(rows):
        for hyp in row:
            first = hyp.spans[0]
            key = normalize_answer(texts[first.text][first.start : first.end])
            if key:  # a span of punctuation or articles only says nothing
                groups.setdefault(key, []).append((z, hyp))
    prior = doc_lp.double()
    out = []
    for members in groups.values():
        per_row = torch.full((k,), -math.inf, dtype=torch.float64)
        raw_row, null_row = per_row.clone(), per_row.clone()
        for z, hyp in members:
            for row, value in ((per_row, hyp.logprob), (raw_row, hyp.raw_logprob),
                               (null_row, hyp.null_logprob)):
                row[z] = torch.logaddexp(row[z], torch.tensor(value, dtype=torch.float64))
        chosen = raw_row if raw else per_row
        if scoring == "pmi":  # -inf where the row did not propose the answer
            chosen = torch.where(raw_row > -math.inf, raw_row - null_row, raw_row)
        marginal = float((prior + chosen).logsumexp(0))
        # the best-supporting row's best span gives the surface text and the first quote
        order = sorted(members, key=lambda m: -(float(prior[m[0]]) + _rank(m[1], scoring)))
        spans = list(dict.fromkeys(s for _, hyp in order for s in hyp.spans))
        best = spans[0]
        out.append(GroundedCandidate(texts[best.text][best.start : best.end], marginal,
                                     per_row, raw_row, tuple(spans), len(order[0][1].tokens)))
    if scoring == "mean":
        out.sort(key=lambda c: -c.logprob / (c.n_tokens + 1))
    else:
        out.sort(key=lambda c: -c.logprob)
    return out
