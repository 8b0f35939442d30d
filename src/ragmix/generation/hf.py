"""Generate and score text with a local Hugging Face causal LM or seq2seq model."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation._batching import pad
from ragmix.generation._special_tokens import first_id, stop_ids
from ragmix.generation._stream import TextStream


class HFGenerator:
    """A :class:`~ragmix.generation.base.Generator` over a local Hugging Face model.

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
    ) -> HFGenerator:
        """Load a model folder written by ``save_pretrained`` (local only, float32 on CPU).

        Encoder-decoder models are recognised from ``config.is_encoder_decoder``.
        ``name`` defaults to the folder's name.
        """
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            what = "has no config.json" if folder.is_dir() else "does not exist"
            raise BadInputError(
                f"model folder {str(folder)!r} {what}; give a folder written by "
                "save_pretrained (models are never downloaded)"
            )
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        with quiet_progress_bars():
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            auto = (
                transformers.AutoModelForSeq2SeqLM
                if getattr(config, "is_encoder_decoder", False)
                else transformers.AutoModelForCausalLM
            )
            model = auto.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
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
        """``prompt`` as the model reads it (chat-wrapped when the model has a template)."""
        return self._encode_prompt(prompt)

    def encode_answer(self, text: str) -> list[int]:
        """Answer text as tokens, without special tokens (the end token is not added)."""
        return self._encode_continuation(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._decode(ids)

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Token ids that end an answer: EOS, plus the chat template's end of turn."""
        return self._stop_ids

    def count_tokens(self, prompt: str) -> int:
        """How many tokens ``prompt`` takes, wrapped and encoded as :meth:`generate` sends it."""
        return len(self._encode_prompt(prompt))

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
        if max_new_tokens < 1:
            raise BadInputError(f"max_new_tokens must be greater than 0, got {max_new_tokens}")
        torch = require("torch", "models")
        prompt_ids = self._encode_prompt(prompt)
        budget = self._answer_budget(len(prompt_ids), max_new_tokens)
        stream = TextStream(self._decode)
        answer: list[int] = []
        with torch.inference_mode():
            for token in self._greedy(prompt_ids, budget):
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

    def token_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[np.ndarray]:
        """Teacher-forced log p(y_i | prompt, y_<i) per continuation token: float64 (T_j,) each.

        Continuations are tokenised on their own (no special tokens, no EOS),
        so the prompt/continuation boundary is exact. Pairs are sorted by
        length and scored ``batch_size`` at a time, one forward pass per batch.
        """
        if isinstance(prompts, str) or isinstance(continuations, str):
            raise BadInputError(
                "prompts and continuations must be lists of strings, not a string"
            )
        if len(prompts) != len(continuations):
            raise BadInputError(
                f"got {len(prompts)} prompts but {len(continuations)} continuations; "
                "give one continuation per prompt"
            )
        torch = require("torch", "models")
        prompt_ids = [self._encode_prompt(p) for p in prompts]
        cont_ids = [self._encode_continuation(c) for c in continuations]
        for i, (p, c) in enumerate(zip(prompt_ids, cont_ids)):
            self._check_pair(i, p, c)
        results = [np.zeros(0, dtype=np.float64) for _ in prompt_ids]
        # Similar lengths share a batch, so little of each batch is padding.
        todo = sorted(
            (i for i, c in enumerate(cont_ids) if c),
            key=lambda i: len(prompt_ids[i]) + len(cont_ids[i]),
        )
        with torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                scores = self._score([prompt_ids[i] for i in batch], [cont_ids[i] for i in batch])
                for i, row in zip(batch, scores):
                    results[i] = row
        return results

    def _check_pair(self, index: int, prompt: list[int], cont: list[int]) -> None:
        if not prompt and not self.is_encoder_decoder:
            raise BadInputError(
                f"prompt {index} encodes to no tokens, so nothing conditions the first "
                "continuation token; give a non-empty prompt"
            )
        if self.is_encoder_decoder:
            length = max(len(prompt), len(self._decoder_prefix) + len(cont))
        else:
            length = len(prompt) + len(cont)
        limit = self.max_context_tokens
        if limit is not None and length > limit:
            raise BadInputError(
                f"prompt and continuation {index} are {length} tokens; "
                f"{self.name} reads at most {limit}"
            )

    # -- encoding ------------------------------------------------------------

    def _encode_prompt(self, prompt: str) -> list[int]:
        if not self.use_chat_template:
            return list(self.tokenizer(prompt).input_ids)
        # The rendered template already carries its special tokens (BOS included).
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _encode_continuation(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _answer_budget(self, n_prompt: int, max_new_tokens: int) -> int:
        limit = self.max_context_tokens
        if limit is None:
            return max_new_tokens
        if n_prompt >= limit:
            raise BadInputError(
                f"the prompt is {n_prompt} tokens; {self.name} reads at most {limit}. "
                "Use fewer or shorter passages"
            )
        used = len(self._decoder_prefix) if self.is_encoder_decoder else n_prompt
        return max(1, min(max_new_tokens, limit - used))

    # -- greedy decoding with a KV cache ---------------------------------------

    def _greedy(self, prompt_ids: list[int], budget: int) -> Iterator[int]:
        """Argmax tokens until a stop token or ``budget``, with the KV cache (causal or seq2seq)."""
        from ragmix.generation.decode_state import DecodeState

        torch = require("torch", "models")
        state = DecodeState(self, [prompt_ids])
        for step in range(budget):
            token = int(state.next_lp[0].argmax())
            if token in self._stop_ids:
                return
            yield token
            if step + 1 < budget:
                state.advance(torch.tensor([token]))

    # -- teacher-forced scoring --------------------------------------------------

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
        if not conts or any(not c for c in conts):
            raise BadInputError("every continuation needs at least one token")
        if self.is_encoder_decoder:
            prefix = self._decoder_prefix if decoder_prefix is None else list(decoder_prefix)
            logits, first = self._seq2seq_logits(prompts, conts, prefix)
        else:
            logits, first = self._causal_logits(prompts, conts, left)
        torch = require("torch", "models")
        width = max(len(c) for c in conts)
        rows = torch.arange(width)  # (T,)
        pos = torch.tensor(first)[:, None] + rows[None, :]  # (N, T)
        lengths = torch.tensor([len(c) for c in conts])
        mask = rows[None, :] < lengths[:, None]  # (N, T)
        pos = pos.clamp(max=logits.shape[1] - 1)
        picked = logits.gather(1, pos[:, :, None].expand(-1, -1, logits.shape[-1]))  # (N, T, V)
        logprobs = picked.float().log_softmax(-1)
        targets = torch.tensor([list(c) + [0] * (width - len(c)) for c in conts])  # (N, T)
        token_lp = logprobs.gather(-1, targets[:, :, None]).squeeze(-1).masked_fill(~mask, 0.0)
        return ForcedScores(token_lp, mask, logprobs if full else None)

    def _causal_logits(self, prompts, conts, left: bool | None):
        """Logits over the continuation span: (N, L', V), and where each row's span starts."""
        torch = require("torch", "models")
        seqs = [list(p) + list(c) for p, c in zip(prompts, conts)]
        if left is None:
            left = getattr(self.tokenizer, "padding_side", "right") == "left"
        ids_np, mask_np, offsets = pad(seqs, self._pad_id, left=left)
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)  # (N, L), (N, L)
        width = ids.shape[1]
        # The logit at position t predicts token t + 1, so continuation token 0
        # of row b is predicted at offset + len(prompt) - 1.
        first = [off + len(p) - 1 for off, p in zip(offsets, prompts)]
        kwargs: dict[str, Any] = {}
        if "position_ids" in self._forward_params:
            # Count real tokens only, so left padding does not shift positions.
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
        base = 0
        if "logits_to_keep" in self._forward_params:
            # Skip the vocabulary projection over prompt positions: (N, L, V)
            # for a long RAG prompt would take gigabytes.
            base = min(first)
            kwargs["logits_to_keep"] = width - base
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs).logits
        return logits, [f - base for f in first]

    def _seq2seq_logits(self, prompts, conts, prefix: list[int]):
        torch = require("torch", "models")
        # Right padding on both sides: learned position embeddings (BART)
        # take no position_ids, so a left pad would shift every position.
        enc_ids, enc_mask, _ = pad([list(p) for p in prompts], self._pad_id, left=False)  # (N, P)
        dec_inputs = [prefix + list(c)[:-1] for c in conts]
        dec_ids, dec_mask, _ = pad(dec_inputs, self._pad_id, left=False)  # (N, T')
        logits = self.model(
            input_ids=torch.from_numpy(enc_ids),
            attention_mask=torch.from_numpy(enc_mask),
            decoder_input_ids=torch.from_numpy(dec_ids),
            decoder_attention_mask=torch.from_numpy(dec_mask),
            use_cache=False,
        ).logits  # (N, T', V)
        return logits, [len(prefix) - 1] * len(conts)

    def _score(self, prompts: list[list[int]], conts: list[list[int]]) -> list[np.ndarray]:
        scores = self.score_ids(prompts, conts)
        token_lp = scores.token_lp.double().numpy()
        return [token_lp[b, : len(c)].copy() for b, c in enumerate(conts)]


@dataclass(frozen=True)
class ForcedScores:
    """Teacher-forced log-probabilities of N padded continuations (see ``score_ids``)."""

    token_lp: Any  # torch.Tensor (N, T), 0 at padding
    mask: Any  # torch.Tensor (N, T) bool
    full_lp: Any = None  # torch.Tensor (N, T, V) when asked for


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
