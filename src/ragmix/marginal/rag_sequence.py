"""RAG-Sequence decoding: one passage per answer, answers marginalised over the K passages.

p(y|x) = sum_z p(z|x) p(y|x,z). Each passage proposes answers by its own beam
search (all K passages in one batch). "Thorough" then scores every proposed
answer under every passage, reusing the cached passage prompts so only the
answer tokens are computed; "fast" skips those passes and counts an answer a
passage did not propose as probability 0 there (Lewis et al., 2020, 2.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.marginal.beam import Finished, Hypothesis
from ragmix.modes import FREE_DECODINGS

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.base import Decoder, ScoringGenerator

DECODINGS = FREE_DECODINGS  # grounded decoding is marginal/grounded.py


@dataclass(frozen=True)
class SequenceDecoded:
    """The best answer by marginal log p(y|x), and its log p(y|x,z) under each passage (K,)."""

    best: Hypothesis  # logprob: the marginal log p(y|x)
    per_passage: Tensor  # (K,) log p(y | x, z); -inf where fast decoding has no score
    candidates: tuple[Hypothesis, ...]  # every proposed answer, by marginal


def rag_sequence_decode(
    gen: ScoringGenerator, prompts: Sequence[Sequence[int]], doc_lp: Tensor, *,
    max_new_tokens: int = 32, beams: int = 4, decoding: str = "thorough",
    length_penalty: float = 0.0, decoder_prefix: Sequence[int] | None = None,
) -> SequenceDecoded:
    """Decode one answer from K passage prompts (token ids) under the prior ``doc_lp`` (K,)."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
    torch = require("torch", "models")
    k = len(prompts)
    with torch.inference_mode():
        state = gen.start_decoding(prompts, decoder_prefix=decoder_prefix)
        fresh = state.fork(torch.arange(k)) if decoding == "thorough" else None
        proposals = _passage_beams(state, k, gen.stop_token_ids, max_new_tokens, beams,
                                   length_penalty)
        # one row per distinct answer; ended (with the end token) or cut off
        answers: dict[tuple[int, ...], bool] = {}
        for per in proposals:
            for hyp in per:
                answers[hyp.tokens] = answers.get(hyp.tokens, False) or hyp.finished
        keys = list(answers)
        table = torch.full((len(keys), k), -math.inf, dtype=torch.float64)  # (H, K)
        for z, per in enumerate(proposals):
            for hyp in per:
                if hyp.finished == answers[hyp.tokens]:
                    table[keys.index(hyp.tokens), z] = hyp.logprob
        if fresh is not None:
            _fill_missing(gen, fresh, table, keys, answers)
    marginal = (doc_lp.double()[None, :] + table).logsumexp(-1)  # (H,)
    order = marginal.argsort(descending=True).tolist()
    candidates = tuple(Hypothesis(keys[h], float(marginal[h]), float(marginal[h]),
                                  answers[keys[h]]) for h in order)
    return SequenceDecoded(candidates[0], table[order[0]], candidates)


def _fill_missing(gen: ScoringGenerator, fresh: Decoder, table: Tensor,
                  keys: list[tuple[int, ...]], ended: dict[tuple[int, ...], bool]) -> None:
    """Score the (answer, passage) pairs with no beam score, from the cached prompts."""
    torch = require("torch", "models")
    pairs = [(h, z) for h in range(len(keys)) for z in range(table.shape[1])
             if table[h, z] == -math.inf]
    end = gen.end_token_id
    conts = [list(keys[h]) + ([end] if ended[keys[h]] and end is not None else [])
             for h, _ in pairs]
    todo = [(i, c) for i, c in enumerate(conts) if c]
    if not todo:
        return
    rows = fresh.fork(torch.tensor([pairs[i][1] for i, _ in todo]))
    scores = rows.extend([c for _, c in todo]).sum(-1)  # (M,)
    for (i, _), score in zip(todo, scores.tolist()):
        h, z = pairs[i]
        table[h, z] = score


def _passage_beams(state: Decoder, k: int, stops, max_new_tokens: int, width: int,
                   length_penalty: float) -> list[list[Hypothesis]]:
    """Beam search under each passage separately, the K searches batched: K lists of answers."""
    torch = require("torch", "models")
    live: list[list[tuple[tuple[int, ...], float]]] = [[((), 0.0)] for _ in range(k)]
    done = [Finished(width, length_penalty) for _ in range(k)]
    for step in range(max_new_tokens):
        offset = 0
        new_live: list[list[tuple[tuple[int, ...], float]]] = []
        keep_rows, keep_tokens = [], []
        for z in range(k):
            beams = live[z]
            n = len(beams)
            if n == 0:
                new_live.append([])
                continue
            lp = state.next_lp[offset : offset + n].double()  # (n, V)
            total = torch.tensor([b[1] for b in beams], dtype=torch.float64)[:, None] + lp
            flat = total.flatten()
            v = lp.shape[-1]
            kept = []
            for index in flat.topk(min(2 * width + len(stops), flat.numel())).indices.tolist():
                beam, token = divmod(index, v)
                if token in stops:
                    done[z].add(beams[beam][0], float(flat[index]))
                    continue
                kept.append((beam, token, float(flat[index])))
                if len(kept) == width:
                    break
            if kept and done[z].done(max(c[2] for c in kept), step + 1):
                kept = []
            new_live.append([(beams[b][0] + (t,), s) for b, t, s in kept])
            keep_rows += [offset + b for b, _, _ in kept]
            keep_tokens += [t for _, t, _ in kept]
            offset += n
        live = new_live
        if not keep_rows or step + 1 == max_new_tokens:
            break
        state.select(torch.tensor(keep_rows))
        state.advance(torch.tensor(keep_tokens))
    for z in range(k):  # beams cut off by max_new_tokens compete unfinished
        for tokens, lp in live[z]:
            done[z].add(tokens, lp, finished=False)
    return [d.items for d in done]
