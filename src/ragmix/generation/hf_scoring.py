"""Teacher-forced scoring on a Hugging Face model: every continuation token in one forward pass.

Plain functions of an :class:`~ragmix.generation.hf.HFGenerator` (its model,
tokenizer, pad id and decoder prefix); the generator's ``score_ids`` and
``token_logprobs`` call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation._batching import pad
from ragmix.generation.base import ForcedScores

if TYPE_CHECKING:
    from ragmix.generation.hf import HFGenerator


def score_ids(
    gen: HFGenerator, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[int]], *,
    full: bool = False, left: bool | None = None, decoder_prefix: Sequence[int] | None = None,
) -> ForcedScores:
    """Teacher-forced log p(c_t | prompt, c_<t) per continuation (``HFGenerator.score_ids``)."""
    if not conts or any(not c for c in conts):
        raise BadInputError("every continuation needs at least one token")
    if gen.is_encoder_decoder:
        prefix = gen.decoder_prefix if decoder_prefix is None else list(decoder_prefix)
        logits, first = _seq2seq_logits(gen, prompts, conts, prefix)
    else:
        logits, first = _causal_logits(gen, prompts, conts, left)
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


def _causal_logits(gen: HFGenerator, prompts, conts, left: bool | None):
    """Logits over the continuation span: (N, L', V), and where each row's span starts."""
    torch = require("torch", "models")
    seqs = [list(p) + list(c) for p, c in zip(prompts, conts)]
    if left is None:
        left = getattr(gen.tokenizer, "padding_side", "right") == "left"
    ids_np, mask_np, offsets = pad(seqs, gen.pad_id, left=left)
    ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)  # (N, L), (N, L)
    width = ids.shape[1]
    # The logit at position t predicts token t + 1, so continuation token 0
    # of row b is predicted at offset + len(prompt) - 1.
    first = [off + len(p) - 1 for off, p in zip(offsets, prompts)]
    kwargs: dict[str, Any] = {}
    params = gen.forward_params
    if "position_ids" in params:
        # Count real tokens only, so left padding does not shift positions.
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
    base = 0
    if "logits_to_keep" in params:
        # Skip the vocabulary projection over prompt positions: (N, L, V)
        # for a long RAG prompt would take gigabytes.
        base = min(first)
        kwargs["logits_to_keep"] = width - base
    logits = gen.model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs).logits
    return logits, [f - base for f in first]


def _seq2seq_logits(gen: HFGenerator, prompts, conts, prefix: list[int]):
    """Decoder logits from the prefix on: (N, T', V), and where each row's answer starts."""
    torch = require("torch", "models")
    # Right padding on both sides: learned position embeddings (BART)
    # take no position_ids, so a left pad would shift every position.
    enc_ids, enc_mask, _ = pad([list(p) for p in prompts], gen.pad_id, left=False)  # (N, P)
    dec_inputs = [prefix + list(c)[:-1] for c in conts]
    dec_ids, dec_mask, _ = pad(dec_inputs, gen.pad_id, left=False)  # (N, T')
    logits = gen.model(
        input_ids=torch.from_numpy(enc_ids),
        attention_mask=torch.from_numpy(enc_mask),
        decoder_input_ids=torch.from_numpy(dec_ids),
        decoder_attention_mask=torch.from_numpy(dec_mask),
        use_cache=False,
    ).logits  # (N, T', V)
    return logits, [len(prefix) - 1] * len(conts)


def token_logprobs(
    gen: HFGenerator, prompts: Sequence[str], continuations: Sequence[str]
) -> list[np.ndarray]:
    """Per-token log-probs of text continuations, batched (see ``HFGenerator.token_logprobs``)."""
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
    prompt_ids = [gen.encode_prompt(p) for p in prompts]
    cont_ids = [gen.encode_answer(c) for c in continuations]
    for i, (p, c) in enumerate(zip(prompt_ids, cont_ids)):
        check_pair(gen, i, p, c)
    results = [np.zeros(0, dtype=np.float64) for _ in prompt_ids]
    # Similar lengths share a batch, so little of each batch is padding.
    todo = sorted(
        (i for i, c in enumerate(cont_ids) if c),
        key=lambda i: len(prompt_ids[i]) + len(cont_ids[i]),
    )
    with torch.inference_mode():
        for start in range(0, len(todo), gen.batch_size):
            batch = todo[start : start + gen.batch_size]
            conts = [cont_ids[i] for i in batch]
            scores = gen.score_ids([prompt_ids[i] for i in batch], conts)
            token_lp = scores.token_lp.double().numpy()  # (B, T)
            for b, (i, c) in enumerate(zip(batch, conts)):
                results[i] = token_lp[b, : len(c)].copy()
    return results


def check_pair(gen: HFGenerator, index: int, prompt: list[int], cont: list[int]) -> None:
    """Refuse a (prompt, continuation) the model cannot score: nothing to condition on, too long."""
    if not prompt and not gen.is_encoder_decoder:
        raise BadInputError(
            f"prompt {index} encodes to no tokens, so nothing conditions the first "
            "continuation token; give a non-empty prompt"
        )
    if gen.is_encoder_decoder:
        length = max(len(prompt), len(gen.decoder_prefix) + len(cont))
    else:
        length = len(prompt) + len(cont)
    limit = gen.max_context_tokens
    if limit is not None and length > limit:
        raise BadInputError(
            f"prompt and continuation {index} are {length} tokens; "
            f"{gen.name} reads at most {limit}"
        )
