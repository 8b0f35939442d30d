"""A ScoringGenerator with no language model: next-token log-probabilities read from a table.

Tokens are characters (printable ASCII and newline) plus three specials: pad,
BOS (starts every prompt) and END (ends an answer). The next token depends on
the prompt only through ``key(prompt) = sum(prompt) % keys`` and otherwise on
the previous token, so every log-probability is one lookup,
``table[key(prompt), previous token, next token]``, and a test can recompute
any score, marginal or greedy step by hand. Needs torch, not transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix.errors import BadInputError
from ragmix.generation.base import Decoder, ForcedScores, ScoringGenerator

if TYPE_CHECKING:
    from torch import Tensor

PAD, BOS, END = 0, 1, 2
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
UNKNOWN = ALPHABET.index("?")
VOCAB = 3 + len(ALPHABET)


class BigramGenerator:
    """Log p(next | prompt, history) = ``table[key(prompt), last token so far, next]``.

    ``table`` (keys, V, V) is float64 log-softmaxed random logits from
    ``seed``; pad and BOS are never predicted, and END gets ``end_bias`` so
    that answers end within a few tokens.
    """

    def __init__(self, *, seed: int = 0, keys: int = 7, scale: float = 3.0,
                 end_bias: float = 3.0, name: str = "bigram") -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(keys, VOCAB, VOCAB, generator=g, dtype=torch.float64)
        logits[..., [PAD, BOS]] = -1e9  # (keys, V, V): never predicted
        logits[..., END] += end_bias
        self.table = logits.log_softmax(-1)  # (keys, V, V)
        self.keys = keys
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def end_token_id(self) -> int | None:
        return END

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return frozenset({END})

    def key(self, prompt: Sequence[int]) -> int:
        """Which slice of the table a prompt reads."""
        return sum(prompt) % self.keys

    def encode_prompt(self, prompt: str) -> list[int]:
        return [BOS] + self.encode_answer(prompt)

    def encode_answer(self, text: str) -> list[int]:
        return [3 + i if i >= 0 else 3 + UNKNOWN for i in map(ALPHABET.find, text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(ALPHABET[i - 3] for i in ids if i >= 3)

    def score_ids(
        self, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[int]], *,
        full: bool = False, left: bool | None = None, decoder_prefix: Sequence[int] | None = None,
    ) -> ForcedScores:
        import torch

        if not conts or any(not c for c in conts):
            raise BadInputError("every continuation needs at least one token")
        if any(not p for p in prompts):
            raise BadInputError("every prompt needs at least one token")
        width = max(len(c) for c in conts)
        full_lp = torch.zeros(len(conts), width, VOCAB, dtype=torch.float64)  # (N, T, V)
        token_lp = torch.zeros(len(conts), width, dtype=torch.float64)  # (N, T)
        mask = torch.zeros(len(conts), width, dtype=torch.bool)  # (N, T)
        for r, (prompt, cont) in enumerate(zip(prompts, conts)):
            previous = [prompt[-1], *cont[:-1]]
            for t, (prev, token) in enumerate(zip(previous, cont)):
                full_lp[r, t] = self.table[self.key(prompt), prev]
                token_lp[r, t] = full_lp[r, t, token]
                mask[r, t] = True
        return ForcedScores(token_lp, mask, full_lp if full else None)

    def start_decoding(
        self, prompts: Sequence[Sequence[int]], *, decoder_prefix: Sequence[int] | None = None
    ) -> BigramDecoder:
        import torch

        keys = torch.tensor([self.key(p) for p in prompts])  # (N,)
        last = torch.tensor([p[-1] for p in prompts])  # (N,)
        return BigramDecoder(self.table, keys, last)

    def generate(self, prompt: str, *, max_new_tokens: int = 256,
                 on_token: Callable[[str], None] | None = None) -> str:
        import torch

        state = self.start_decoding([self.encode_prompt(prompt)])
        tokens: list[int] = []
        for _ in range(max_new_tokens):
            token = int(state.next_lp[0].argmax())
            if token in self.stop_token_ids:
                break
            tokens.append(token)
            state.advance(torch.tensor([token]))
        text = self.decode(tokens).strip()
        if on_token is not None and text:
            on_token(text)
        return text

    def token_logprobs(self, prompts: Sequence[str],
                       continuations: Sequence[str]) -> list[np.ndarray]:
        out = []
        for prompt, text in zip(prompts, continuations):
            cont = self.encode_answer(text)
            if not cont:
                out.append(np.zeros(0))
                continue
            lp = self.score_ids([self.encode_prompt(prompt)], [cont]).token_lp
            out.append(lp[0].numpy().copy())
        return out


class BigramDecoder:
    """Lockstep decoding over the table: a row is (prompt key, last token)."""

    def __init__(self, table: Tensor, keys: Tensor, last: Tensor) -> None:
        self.table, self.keys, self.last = table, keys, last  # (keys, V, V), (N,), (N,)

    @property
    def next_lp(self) -> Tensor:
        return self.table[self.keys, self.last]  # (N, V)

    @property
    def rows(self) -> int:
        return int(self.keys.shape[0])

    def advance(self, tokens: Tensor) -> Tensor:
        self.last = tokens.reshape(-1).long()
        return self.next_lp

    def select(self, index: Tensor) -> None:
        index = index.long()
        self.keys, self.last = self.keys[index], self.last[index]

    def fork(self, index: Tensor) -> BigramDecoder:
        index = index.long()
        return BigramDecoder(self.table, self.keys[index], self.last[index])

    def extend(self, continuations: Sequence[Sequence[int]]) -> Tensor:
        import torch

        width = max(len(c) for c in continuations)
        out = torch.zeros(len(continuations), width, dtype=self.table.dtype)  # (N, S)
        for r, cont in enumerate(continuations):
            prev = int(self.last[r])
            for t, token in enumerate(cont):
                out[r, t] = self.table[self.keys[r], prev, token]
                prev = token
        return out


def as_scoring_generator(gen: BigramGenerator) -> ScoringGenerator:
    """Type-checks only if BigramGenerator satisfies ScoringGenerator (mypy)."""
    return gen


def as_decoder(state: BigramDecoder) -> Decoder:
    """Type-checks only if BigramDecoder satisfies Decoder (mypy)."""
    return state


def brute_force_lp(gen: BigramGenerator, prompt: Sequence[int], answer: Sequence[int]) -> Any:
    """log p(answer_t | prompt, answer_<t) for each t, by table lookups alone: (T,) numpy."""
    table = gen.table.numpy()
    history = list(prompt)
    out = []
    for token in answer:
        out.append(table[gen.key(prompt), history[-1], token])
        history.append(token)
    return np.array(out, dtype=np.float64)
