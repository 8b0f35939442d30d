"""``smollm2-squad``: SmolLM2-135M-Instruct with ragmix's reader adapter, the default generator.

The adapter is 6.5 MB of LoRA weights (rank 16, the top 10 layers) that
ragmix's joint RAG fine-tuning learned from SQuAD v1.1 *train* questions:
RAG-Sequence's marginal likelihood of the gold answer over the passages a
frozen index retrieved (Lewis et al., 2020; ``bench/bench_training.py rag``,
exported by ``bench/export_reader.py``; ``adapters/smollm2-squad/provenance.json``
says which run). It teaches the small model to answer with the short phrase
of a passage that answers the question, which is what grounded decoding asks
of it. It is merged into the weights when loaded, so it costs nothing per
token. ``load_generator("smollm2")`` is the untouched model.
"""

from __future__ import annotations

from pathlib import Path

from ragmix._extras import require
from ragmix.generation.hf import HFGenerator
from ragmix.generation.smollm import load_smollm2

READER_NAME = "smollm2-squad"
ADAPTER_DIR = Path(__file__).with_name("adapters") / READER_NAME


def load_smollm2_squad(*, cache_dir: Path | None = None, dtype: str = "float32") -> HFGenerator:
    """SmolLM2 with the packaged SQuAD reader adapter merged in.

    >>> gen = load_smollm2_squad()  # doctest: +SKIP
    >>> gen.name  # doctest: +SKIP
    'smollm2-squad'
    """
    from ragmix.dtypes import torch_dtype

    peft = require("peft", "models")
    base = load_smollm2(cache_dir=cache_dir)  # merged in float32, then cast
    merged = peft.PeftModel.from_pretrained(base.model, ADAPTER_DIR).merge_and_unload()
    weights = torch_dtype(dtype)
    if next(merged.parameters()).dtype != weights:
        merged.to(weights)
    return HFGenerator(merged, base.tokenizer, name=READER_NAME, use_chat_template=True)
