"""Generate and score text with a local Hugging Face causal LM or seq2seq model.

This module loads the model and encodes prompts (chat template included);
decoding is in :mod:`~ragmix.generation.hf_decoding` and
:mod:`~ragmix.generation.decode_state`, teacher-forced scoring in
:mod:`~ragmix.generation.hf_scoring`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation import hf_scoring
from ragmix.generation._special_tokens import first_id, stop_ids
from ragmix.generation.base import ForcedScores
from ragmix.generation.decode_state import DecodeState
from ragmix.generation.hf_decoding import generate_text, is_looping
from ragmix.generation.prompt import fence_special_tokens

__all__ = ["ForcedScores", "HFGenerator", "is_looping", "quiet_progress_bars"]


class HFGenerator:
    """A generator over a local Hugging Face model, for every mode: stuff, marginals, training.

    It is a :class:`~ragmix.generation.base.TrainableGenerator`, hence a
    :class:`~ragmix.generation.base.ScoringGenerator` and a
    :class:`~ragmix.generation.base.Generator`.

    Works with decoder-only models (Llama, SmolLM2, GPT-2, ...) and with
    encoder-decoder models (BART, T5, ...). Decoding is greedy. When the
    tokenizer has a chat template the prompt is sent as one user message, by
    :meth:`generate` and :meth:`token_logprobs` alike, so an answer is scored
    under the same prompt it was generated from.

    Example on a folder written by ``save_pretrained`` (nothing is ever
    downloaded). Here it holds a tiny random model; from a SmolLM2-135M-Instruct
    folder, ``generate`` answers 'The capital of France is Paris.' and
    ``token_logprobs`` gives ``[array([-4.10, -6.67])]``.

    >>> import tempfile
    >>> from ragmix.testing import tiny_random_generator
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tiny = tiny_random_generator()
    >>> tiny.model.save_pretrained(tmp.name)
    >>> _ = tiny.tokenizer.save_pretrained(tmp.name)
    >>> gen = HFGenerator.from_pretrained(tmp.name)
    >>> from ragmix.generation.base import TrainableGenerator
    >>> isinstance(gen, TrainableGenerator)
    True
    >>> text = gen.generate("What is the capital of France?", max_new_tokens=4)
    >>> [lp.shape for lp in gen.token_logprobs(["What is the capital of France?"], ["Paris."])]
    [(2,)]
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        use_chat_template: bool | None = None,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise BadInputError(f"batch_size must be greater than 0, got {batch_size}")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_template:
            raise BadInputError(
                f"use_chat_template=True, but the tokenizer of {name!r} has no chat template"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        self.batch_size = batch_size
        self._name = name
        config = model.config
        self.is_encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self._forward_params = set(inspect.signature(model.forward).parameters)
        # Padded positions are masked out, so any valid id pads.
        pad_id = first_id(
            tokenizer.pad_token_id, getattr(config, "pad_token_id", None), tokenizer.eos_token_id
        )
        self._pad_id = 0 if pad_id is None else pad_id
        self._stop_ids = stop_ids(model, tokenizer, chat=self.use_chat_template)
        # Seq2seq decoders start from decoder_start_token_id, and some (BART)
        # are forced to emit BOS next; both belong to the prompt side.
        self._decoder_prefix: list[int] = []
        if self.is_encoder_decoder:
            gen_config = getattr(model, "generation_config", None)
            start = first_id(
                getattr(config, "decoder_start_token_id", None),
                getattr(gen_config, "decoder_start_token_id", None),
                self._pad_id,
            )
            forced = first_id(
                getattr(gen_config, "forced_bos_token_id", None),
                getattr(config, "forced_bos_token_id", None),
            )
            self._decoder_prefix = [0 if start is None else start]
            self._decoder_prefix += [] if forced is None else [forced]

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        use_chat_template: bool | None = None,
        batch_size: int = 8,
        dtype: str = "float32",
    ) -> HFGenerator:
        """Load a model folder written by ``save_pretrained`` (local only, on CPU).

        Encoder-decoder models are recognised from ``config.is_encoder_decoder``.
        ``name`` defaults to the folder's name. ``dtype``
        (:data:`ragmix.dtypes.DTYPES`) is the weights' type: "bfloat16" scored
        3.8x faster than float32 on a CPU with AMX, and no faster without;
        "auto" picks it where there is AMX. Log-probabilities are float32 either way.
        """
        from ragmix.dtypes import torch_dtype

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            what = "has no config.json" if folder.is_dir() else "does not exist"
            raise BadInputError(
                f"model folder {str(folder)!r} {what}; give a folder written by "
                "save_pretrained (models are never downloaded)"
            )
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        weights = torch_dtype(dtype)
        with quiet_progress_bars():
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            auto = (
                transformers.AutoModelForSeq2SeqLM
                if getattr(config, "is_encoder_decoder", False)
                else transformers.AutoModelForCausalLM
            )
            # Read as float32 and cast: the same numbers whatever the folder stores.
            model = auto.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
            if weights != torch.float32:
                model.to(weights)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(
            model,
            tokenizer,
            name=name or folder.resolve().name,
            use_chat_template=use_chat_template,
            batch_size=batch_size,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> str:
        """The weights' type, "float32" or "bfloat16" (log-probabilities are float32)."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def max_context_tokens(self) -> int | None:
        """How many tokens the model reads at most (prompt plus answer), or None if unknown."""
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.tokenizer, "model_max_length", None)
        # Tokenizers without a limit report a huge sentinel (int(1e30)).
        return value if isinstance(value, int) and 0 < value < 1_000_000 else None

    @property
    def pad_id(self) -> int:
        """The id padded positions hold (they are masked out, so any valid id would do)."""
        return self._pad_id

    @property
    def decoder_prefix(self) -> list[int]:
        """Seq2seq decoders' start tokens (decoder start, forced BOS); empty for causal models."""
        return list(self._decoder_prefix)

    @property
    def forward_params(self) -> frozenset[str]:
        """Names the model's ``forward`` accepts (``position_ids``, ``logits_to_keep``, ...)."""
        return frozenset(self._forward_params)

    @property
    def end_token_id(self) -> int | None:
        """The token that ends an answer: EOS, or the chat template's end of turn."""
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos in self._stop_ids:
            return int(eos)
        return min(self._stop_ids) if self._stop_ids else None

    def encode_prompt(self, prompt: str) -> list[int]:
        """``prompt`` as the model reads it (chat-wrapped when the model has a template).

        Special-token strings in ``prompt`` (a passage quoting ``<|im_end|>``) are
        read as text (:func:`~ragmix.generation.prompt.fence_special_tokens`): the
        only special tokens are those the template and the tokenizer add.
        """
        prompt = fence_special_tokens(prompt, special_strings(self.tokenizer))
        if not self.use_chat_template:
            return list(self.tokenizer(prompt).input_ids)
        # The rendered template already carries its special tokens (BOS included).
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def encode_answer(self, text: str) -> list[int]:
        """Answer text as tokens, without special tokens (the end token is not added)."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids back to text, special tokens left out."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Token ids that end an answer: EOS, plus the chat template's end of turn."""
        return self._stop_ids

    def count_tokens(self, prompt: str) -> int:
        """How many tokens ``prompt`` takes, wrapped and encoded as :meth:`generate` sends it."""
        return len(self.encode_prompt(prompt))

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """Greedy answer to ``prompt``, stopped at EOS or end of turn; text is stripped.

        ``on_token`` receives text pieces as they decode; they join to the
        returned text. Greedy decoding of small models can fall into a loop,
        so decoding also stops once the answer repeats itself (see
        :func:`is_looping`); the text is then a prefix of the pure greedy one.
        """
        return generate_text(self, prompt, max_new_tokens=max_new_tokens, on_token=on_token)

    def token_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[np.ndarray]:
        """Teacher-forced log p(y_i | prompt, y_<i) per continuation token: float64 (T_j,) each.

        Continuations are tokenised on their own (no special tokens, no EOS),
        so the prompt/continuation boundary is exact. Pairs are sorted by
        length and scored ``batch_size`` at a time, one forward pass per batch.
        """
        return hf_scoring.token_logprobs(self, prompts, continuations)

    def score_ids(
        self, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[int]], *,
        full: bool = False, left: bool | None = None, decoder_prefix: Sequence[int] | None = None,
    ) -> ForcedScores:
        """Teacher-forced log p(c_t | prompt, c_<t) of each continuation, in one forward pass.

        Rows are padded to the longest continuation: ``token_lp`` (N, T),
        ``mask`` (N, T), and with ``full=True`` every vocabulary entry,
        ``full_lp`` (N, T, V). Gradients flow if the caller enables them
        (training); wrap in ``torch.inference_mode()`` otherwise. ``left``
        pads causal prompts on the left (default: the tokenizer's side; both
        give the same numbers). ``decoder_prefix`` replaces a seq2seq model's
        decoder start tokens (e.g. to score the way Hugging Face's RAG does).
        """
        return hf_scoring.score_ids(self, prompts, conts, full=full, left=left,
                                    decoder_prefix=decoder_prefix)

    def start_decoding(
        self, prompts: Sequence[Sequence[int]], *, decoder_prefix: Sequence[int] | None = None
    ) -> DecodeState:
        """Lockstep decoding of ``prompts`` with one KV cache (see :class:`DecodeState`)."""
        return DecodeState(self, prompts, decoder_prefix)


def special_strings(tokenizer: Any) -> frozenset[str]:
    """The strings ``tokenizer`` turns into special tokens wherever they appear in its input.

    Added tokens not marked special (extra words, runs of spaces) are ordinary text
    and not among them.
    """
    found = set(getattr(tokenizer, "all_special_tokens", ()))
    for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            found.add(str(added.content))
    return frozenset(found)


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' loading progress bars (the library never prints); restore after."""
    logging = require("transformers.utils.logging", "models")
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
