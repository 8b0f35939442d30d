"""Which generator weights train: LoRA adapters (peft) or full weights, optionally top layers only."""

from __future__ import annotations

import re
from typing import Any

from ragmix._extras import require
from ragmix.errors import BadInputError


def prepare_generator(model: Any, *, lora: bool, lora_r: int, lora_alpha: int,
                      top_layers: int | None) -> Any:
    """Make ``model``'s trainable weights the chosen ones; returns the peft LoraModel or None.

    Raises if nothing would train (a model whose layers are not named ``...layers.N...``).
    """
    layers = _top_layers(model, top_layers)
    wrapper = None
    if lora:
        wrapper = _add_lora(model, lora_r, lora_alpha, layers)
    elif layers is not None:
        _freeze_below(model, layers)
    if not any(p.requires_grad for p in model.parameters()):
        raise BadInputError(
            f"no weight of the {type(model).__name__} generator would train: its layers are "
            "not named like '...layers.N...'; leave --top-layers out")
    return wrapper


def _top_layers(model: Any, top: int | None) -> list[int] | None:
    """Indices of the top ``top`` decoder layers of a causal model (None: every layer)."""
    if top is None:
        return None
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise BadInputError("top_layers applies to causal (decoder-only) generators; leave it out")
    total = int(config.num_hidden_layers)
    return list(range(max(0, total - top), total))


def _freeze_below(model: Any, layers: list[int]) -> None:
    """Full fine-tuning of the given layers and the final norm only; the rest is frozen."""
    keep = {str(i) for i in layers}
    for name, param in model.named_parameters():
        found = re.search(r"\.layers\.(\d+)\.", name)
        param.requires_grad_((found is not None and found.group(1) in keep)
                             or name.endswith("model.norm.weight"))


def _add_lora(model: Any, r: int, alpha: int, layers: list[int] | None) -> Any:
    """LoRA adapters on the linear layers (of ``layers``, or all) but the output head."""
    peft = require("peft", "train")
    torch = require("torch", "models")
    options: dict[str, Any] = {"target_modules": "all-linear"}
    if layers is not None:  # peft wants the module names spelled out with a layer filter
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and ".layers." in n})
        options = {"target_modules": names, "layers_to_transform": layers,
                   "layers_pattern": "layers"}
    lora = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                           **options)
    return peft.LoraModel(model, lora, "default")  # injects into ``model`` in place
