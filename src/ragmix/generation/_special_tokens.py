"""Find the token ids a model stops at: EOS and the chat template's end of turn."""

from __future__ import annotations

from typing import Any

from ragmix._extras import require


def first_id(*candidates: Any) -> int | None:
    """The first candidate that is an int (or a non-empty list, whose first int counts).

    >>> first_id(None, [2, 3], 7)
    2
    """
    for value in candidates:
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        if isinstance(value, int):
            return value
    return None


def stop_ids(model: Any, tokenizer: Any, *, chat: bool) -> frozenset[int]:
    """EOS ids from the config, generation config and tokenizer, plus the end-of-turn token."""
    ids: set[int] = set()
    gen_config = getattr(model, "generation_config", None)
    for value in (
        getattr(model.config, "eos_token_id", None),
        getattr(gen_config, "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    end = end_of_turn_id(tokenizer) if chat else None
    if end is not None:
        ids.add(end)
    return frozenset(ids)


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token a chat template puts after an assistant message.

    ``<|im_end|>`` for ChatML (SmolLM2, Qwen), ``<|eot_id|>`` for Llama 3,
    ``<end_of_turn>`` for Gemma. Found by rendering a two-turn chat, so no
    model family needs a rule of its own.
    """
    jinja2 = require("jinja2", "models")
    marker = "ragmix-end-of-answer"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
            tokenize=False,
        )
    except (jinja2.TemplateError, ValueError, KeyError, TypeError):
        return None  # a template that refuses assistant turns: EOS alone stops
    after = text.split(marker, 1)[1] if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False).input_ids if after.strip() else []
    special = set(getattr(tokenizer, "all_special_ids", ()))
    return ids[0] if ids and ids[0] in special else None
