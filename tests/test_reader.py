"""The packaged smollm2-squad reader: a peft adapter whose record says where it came from."""

from __future__ import annotations

import json

import pytest

from ragmix.generation.reader import ADAPTER_DIR, READER_NAME


def test_the_adapter_matches_its_provenance_record() -> None:
    """The shipped weights are the run's: same hash, same LoRA settings, SmolLM2's top layers."""
    import hashlib

    provenance = json.loads((ADAPTER_DIR / "provenance.json").read_text())
    config = json.loads((ADAPTER_DIR / "adapter_config.json").read_text())
    weights = (ADAPTER_DIR / "adapter_model.safetensors").read_bytes()
    assert provenance["name"] == READER_NAME
    assert hashlib.sha256(weights).hexdigest() == provenance["adapter_sha256"]
    run = provenance["config"]
    assert (config["r"], config["lora_alpha"]) == (run["lora_r"], run["lora_alpha"])
    assert config["layers_to_transform"] == list(range(30 - run["top_layers"], 30))
    assert "train" in provenance["data"] and "dev" in provenance["data"]


def test_the_adapter_holds_lora_pairs_for_the_top_layers_only() -> None:
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    with safe_open(ADAPTER_DIR / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in keys}
    assert layers == set(range(20, 30))
    assert all(k.startswith("base_model.model.model.layers.") for k in keys)
    a = {k.replace("lora_A", "*") for k in keys if "lora_A" in k}
    b = {k.replace("lora_B", "*") for k in keys if "lora_B" in k}
    assert a == b and len(a) == 70  # 7 linear layers x 10 blocks


@pytest.mark.models
@pytest.mark.slow
def test_smollm2_squad_is_smollm2_with_only_the_top_layers_changed() -> None:
    from ragmix.generation import load_generator

    base = dict(load_generator("smollm2").model.named_parameters())
    reader = load_generator("smollm2-squad")
    assert reader.name == READER_NAME
    changed = {k for k, v in reader.model.named_parameters() if not bool((v == base[k]).all())}
    assert changed and set(base) == {k for k, _ in reader.model.named_parameters()}
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in changed} <= set(range(20, 30))
    assert not any("embed" in k or "norm" in k for k in changed)
