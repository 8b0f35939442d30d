"""Settings of a retriever training run, each with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

from ragmix.dtypes import resolve_dtype
from ragmix.errors import BadInputError

NEGATIVE_KINDS = ("bm25", "model")


@dataclass(frozen=True)
class RetrieverTrainConfig:
    """How to train: batch, negatives, temperature, optimiser. Validated on construction."""

    epochs: int = 3  # with lr 3e-5: SciFact dense nDCG@10 0.646 -> 0.718 (BENCHMARKS.md)
    batch_size: int = 32  # queries per step; each sees the batch's other passages as negatives
    chunk_size: int = 8  # GradCache chunk: memory depends on it; gradients only via dropout masks
    lr: float = 3e-5  # a usual fine-tuning rate for MiniLM/BERT-size encoders (2e-5 to 5e-5)
    warmup: float = 0.1  # fraction of steps with a linearly rising rate, then linear decay
    weight_decay: float = 0.01
    temperature: float = 0.05  # MiniLM's own training scale (sentence-transformers' 20)
    learn_temperature: bool = False  # CLIP-style learned log-scale, capped at 100
    negatives: tuple[str, ...] = ("bm25",)  # hard-negative sources; () = in-batch only
    hard_negatives: int = 1  # per query per step and per source (DPR: one BM25 negative)
    mine_pool: int = 10  # mined candidates kept per query; each step samples from them
    mine_depth: int = 50  # how deep in the ranking mining looks
    max_ratio: float = 0.95  # model-mined: drop candidates scoring >= 0.95 x the positive
    max_seq_length: int = 256  # tokens; MiniLM's default
    two_tower: bool = False  # DPR's separate query and passage encoders, both from the start
    # Forward passes under bf16 autocast (master weights and AdamW stay float32);
    # "auto" is bf16 where the CPU has AMX. Part of the resume check: it changes the numbers.
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        # "auto" is decided here, so the config (and the resume check) holds what ran.
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        for name in ("epochs", "batch_size", "chunk_size", "max_seq_length", "mine_pool",
                     "mine_depth"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_size < 2 and not self.negatives:
            raise BadInputError("batch_size 1 with no hard negatives leaves nothing to contrast")
        if not self.lr > 0 or not self.temperature > 0:
            raise BadInputError(f"lr and temperature must be > 0, got {self.lr}, "
                                f"{self.temperature}")
        if not 0 <= self.warmup < 1:
            raise BadInputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.hard_negatives < 0:
            raise BadInputError(f"hard_negatives must be >= 0, got {self.hard_negatives}")
        bad = [n for n in self.negatives if n not in NEGATIVE_KINDS]
        if bad:
            raise BadInputError(f"negatives must be among {NEGATIVE_KINDS}, got {bad}")
