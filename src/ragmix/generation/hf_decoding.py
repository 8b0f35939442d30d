"""Greedy decoding on a Hugging Face model: the answer budget, the argmax loop, loop detection.

Plain functions of an :class:`~ragmix.generation.hf.HFGenerator`; its
``generate`` streams their tokens as text. The lockstep engine under them
(KV cache, causal or seq2seq) is :class:`~ragmix.generation.decode_state.DecodeState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation._stream import TextStream

if TYPE_CHECKING:
    from ragmix.generation.hf import HFGenerator


def answer_budget(gen: HFGenerator, n_prompt: int, max_new_tokens: int) -> int:
    """How many answer tokens fit after an ``n_prompt``-token prompt, at most ``max_new_tokens``."""
    limit = gen.max_context_tokens
    if limit is None:
        return max_new_tokens
    if n_prompt >= limit:
        raise BadInputError(
            f"the prompt is {n_prompt} tokens; {gen.name} reads at most {limit}. "
            "Use fewer or shorter passages"
        )
    used = len(gen.decoder_prefix) if gen.is_encoder_decoder else n_prompt
    return max(1, min(max_new_tokens, limit - used))


def greedy_tokens(gen: HFGenerator, prompt_ids: list[int], budget: int) -> Iterator[int]:
    """Argmax tokens until a stop token or ``budget``, with the KV cache (causal or seq2seq)."""
    torch = require("torch", "models")
    state = gen.start_decoding([prompt_ids])
    stops = gen.stop_token_ids
    for step in range(budget):
        token = int(state.next_lp[0].argmax())
        if token in stops:
            return
        yield token
        if step + 1 < budget:
            state.advance(torch.tensor([token]))


def generate_text(gen: HFGenerator, prompt: str, *, max_new_tokens: int = 256,
                  on_token: Callable[[str], None] | None = None) -> str:
    """``HFGenerator.generate``: the greedy answer, streamed to ``on_token`` as text pieces.

    ``gen`` is the generator or anything that stands for it with its own
    ``start_decoding`` (the server's worker decodes several requests in one batch).
    """
    if max_new_tokens < 1:
        raise BadInputError(f"max_new_tokens must be greater than 0, got {max_new_tokens}")
    torch = require("torch", "models")
    prompt_ids = gen.encode_prompt(prompt)
    budget = answer_budget(gen, len(prompt_ids), max_new_tokens)
    stream = TextStream(gen.decode)
    answer: list[int] = []
    with torch.inference_mode():
        for token in greedy_tokens(gen, prompt_ids, budget):
            answer.append(token)
            piece = stream.push(token)
            if piece and on_token is not None:
                on_token(piece)
            if is_looping(answer):
                break
    piece = stream.finish()
    if piece and on_token is not None:
        on_token(piece)
    return stream.text


def is_looping(tokens: Sequence[int], *, window: int = 16, times: int = 3) -> bool:
    """True when the last ``window`` tokens have occurred ``times`` times in ``tokens``.

    A 16-token span said three times is a greedy loop, not an answer.

    >>> is_looping([7, 1, 2, 1, 2, 1, 2], window=2, times=3)
    True
    >>> is_looping([1, 2, 1, 2, 3], window=2, times=2)
    False
    """
    if len(tokens) < window + times - 1:
        return False
    tokens = list(tokens)
    tail = tokens[-window:]
    starts = range(len(tokens) - window + 1)
    return sum(tokens[i : i + window] == tail for i in starts) >= times
