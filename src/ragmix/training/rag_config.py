"""Settings of a joint RAG fine-tuning run, each with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

from ragmix.dtypes import resolve_dtype
from ragmix.errors import BadInputError

RAG_MODES = ("rag-sequence", "rag-token")
# Settings that change no trained weight: a resume may use other values for them.
RESUME_NEUTRAL = ("checkpoint_every",)


@dataclass(frozen=True)
class RagTrainConfig:
    """What ``ragmix train rag`` does; validated on construction."""

    mode: str = "rag-sequence"
    k: int = 5  # passages marginalised per question (the paper: 5 or 10)
    tau: float = 0.05  # prior temperature: MiniLM's own training scale, as MarginalRAG's dense
    steps: int = 300  # optimiser steps (one batch each)
    batch_size: int = 4  # questions per step
    lr: float = 1e-3  # generator (LoRA): measured on SQuAD, above 3e-4 (full fine-tuning wants ~2e-5)
    query_lr: float = 1e-5  # query encoder: small, as in the paper's fine-tuning of BERT_q
    warmup: float = 0.05  # fraction of steps with a rising rate, then linear decay
    weight_decay: float = 0.0
    lora: bool = True  # LoRA adapters (peft) instead of full fine-tuning: faster, smaller
    lora_r: int = 16
    lora_alpha: int = 32
    # Adapt only the top N decoder layers (None: all). Backward then stops at layer L-N,
    # and the layers below run without saving activations: on SmolLM2 (30 layers) N=10
    # makes a step about 3x cheaper on CPU.
    top_layers: int | None = None
    train_query_encoder: bool = True  # the paper's setting; False freezes retrieval too
    passage_words: int = 128  # cut each passage to this many words: cost is prompt length
    max_answer_tokens: int = 24  # longer gold answers are cut (end token kept)
    label_smoothing: float = 0.0  # the paper used 0.1 for BART; an option here
    checkpoint_every: int = 50  # steps between checkpoints (resume loses at most this)
    monitor_window: int = 25  # steps averaged by the retrieval-collapse monitor
    # Forward passes (generator and query encoder) under bf16 autocast, with float32
    # master weights and AdamW; "auto" is bf16 where the CPU has AMX. Part of the
    # resume check: it changes the numbers.
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        # "auto" is decided here, so the config (and the resume check) holds what ran.
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        if self.mode not in RAG_MODES:
            raise BadInputError(f"mode must be one of {RAG_MODES}, got {self.mode!r}")
        for name in ("k", "steps", "batch_size", "lora_r", "passage_words", "max_answer_tokens",
                     "checkpoint_every", "monitor_window"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.top_layers is not None and self.top_layers <= 0:
            raise BadInputError(f"top_layers must be > 0 (or None for all), got {self.top_layers}")
        for name in ("tau", "lr", "query_lr"):
            if not getattr(self, name) > 0:
                raise BadInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise BadInputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if not 0 <= self.label_smoothing < 1:
            raise BadInputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
