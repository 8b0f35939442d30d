"""RAG-Token decoding: every answer token drawn from the mixture over the K passages.

p(y_i | x, y_<i) = sum_z p(z|x) p(y_i | x, z, y_<i). The K passage prompts of
a hypothesis sit in one batch and advance together, so a step costs one
forward pass of K (or beam x K) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.marginal.beam import Finished, Hypothesis
from ragmix.marginal.math import rag_token_next_logprobs

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.base import Decoder, ScoringGenerator


@dataclass(frozen=True)
class TokenDecoded:
    """The best hypothesis and, per answer token, log p(z|x) + log p(y_i | x, z, y_<i) (T, K)."""

    best: Hypothesis
    joint: Tensor  # (T, K): normalise over K for the per-token posterior p(z | x, y_<=i)
    hypotheses: tuple[Hypothesis, ...]


def rag_token_decode(
    gen: ScoringGenerator, prompts: Sequence[Sequence[int]], doc_lp: Tensor, *,
    max_new_tokens: int = 32, beams: int = 1, length_penalty: float = 0.0,
    decoder_prefix: Sequence[int] | None = None,
) -> TokenDecoded:
    """Decode one answer from K passage prompts (token ids) under the prior ``doc_lp`` (K,).

    ``beams=1`` is greedy. Returns the best hypothesis (stop token excluded
    from ``tokens``, included in ``logprob``) with its per-token joint scores.
    """
    torch = require("torch", "models")
    k = len(prompts)
    stops = gen.stop_token_ids
    with torch.inference_mode():
        state = gen.start_decoding(prompts, decoder_prefix=decoder_prefix)
        if beams == 1:
            return _greedy(state, doc_lp, stops, max_new_tokens)
        return _beam(state, doc_lp, k, stops, max_new_tokens, beams, length_penalty)


def _greedy(state: Decoder, doc_lp: Tensor, stops, max_new_tokens: int) -> TokenDecoded:
    torch = require("torch", "models")
    tokens: list[int] = []
    joints = []
    logprob = 0.0
    finished = False
    for _ in range(max_new_tokens):
        mixed = rag_token_next_logprobs(state.next_lp[None], doc_lp[None])[0]  # (V,)
        token = int(mixed.argmax())
        logprob += float(mixed[token])
        if token in stops:
            finished = True
            break
        tokens.append(token)
        joints.append(doc_lp + state.next_lp[:, token])  # (K,)
        if len(tokens) < max_new_tokens:
            state.advance(torch.full((state.rows,), token))
    joint = torch.stack(joints) if joints else doc_lp.new_zeros(0, doc_lp.shape[0])
    best = Hypothesis(tuple(tokens), logprob, logprob, finished)
    return TokenDecoded(best, joint, (best,))


def _beam(state: Decoder, doc_lp: Tensor, k: int, stops, max_new_tokens: int, width: int,
          length_penalty: float) -> TokenDecoded:
    torch = require("torch", "models")
    live_tokens: list[tuple[int, ...]] = [()]
    live_joint: list[list[Tensor]] = [[]]
    live_lp = torch.zeros(1, dtype=torch.float64)  # (W,)
    finished = Finished(width, length_penalty)
    joints: dict[tuple[int, ...], list[Tensor]] = {}
    stop_list = sorted(stops)
    for step in range(max_new_tokens):
        w = len(live_tokens)
        per_row = state.next_lp.view(w, k, -1)  # (W, K, V)
        mixed = rag_token_next_logprobs(per_row, doc_lp.expand(w, k))  # (W, V)
        total = live_lp[:, None] + mixed.double()  # (W, V)
        flat = total.flatten()
        order = flat.topk(min(2 * width + len(stop_list), flat.numel())).indices
        v = mixed.shape[-1]
        keep_beam, keep_token, new_lp = [], [], []
        for index in order.tolist():
            beam, token = divmod(index, v)
            if token in stops:
                finished.add(live_tokens[beam], float(flat[index]))
                joints[live_tokens[beam]] = live_joint[beam]
                continue
            keep_beam.append(beam)
            keep_token.append(token)
            new_lp.append(float(flat[index]))
            if len(keep_beam) == width:
                break
        if not keep_beam or finished.done(max(new_lp), step + 1):
            break
        live_joint = [live_joint[b] + [doc_lp + per_row[b, :, t]]
                      for b, t in zip(keep_beam, keep_token)]
        live_tokens = [live_tokens[b] + (t,) for b, t in zip(keep_beam, keep_token)]
        live_lp = torch.tensor(new_lp, dtype=torch.float64)
        if step + 1 < max_new_tokens:  # out of budget: the last forward pass is not needed
            state.select(torch.tensor([b * k + z for b in keep_beam for z in range(k)]))
            state.advance(torch.tensor([t for t in keep_token for _ in range(k)]))
    else:
        for tokens, lp, joint in zip(live_tokens, live_lp.tolist(), live_joint):
            finished.add(tokens, lp, finished=False)
            joints[tokens] = joint
    best = finished.items[0]
    joint = joints.get(best.tokens, [])
    stacked = torch.stack(joint) if joint else doc_lp.new_zeros(0, k)
    return TokenDecoded(best, stacked, tuple(finished.items))
