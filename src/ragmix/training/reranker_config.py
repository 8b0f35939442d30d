"""Settings of a cross-encoder reranker training run, each with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

from ragmix.dtypes import resolve_dtype
from ragmix.errors import BadInputError

LOSSES = ("bce", "listwise")
MINING = ("hybrid", "bm25", "dense")


@dataclass(frozen=True)
class RerankerTrainConfig:
    """How to train a cross-encoder: loss, negatives, schedule. Validated on construction."""

    # "listwise": softmax cross-entropy over [positive, negatives] per query, which
    # beat pointwise BCE for BERT rerankers trained on hard negatives (Gao et al., 2021,
    # "Rethink Training of BERT Rerankers", their LCE loss); "bce" is the pointwise baseline.
    loss: str = "listwise"
    negatives: int = 7  # per query per step: groups of 8, the group size LCE trains with
    epochs: int = 1  # one pass: the pairs are few and a cross-encoder overfits them fast
    steps: int | None = None  # a fixed number of steps instead of epochs (the order cycles)
    batch_size: int = 16  # queries per step; each brings its positive and its negatives
    # Queries per forward pass: the step's gradient is accumulated over chunks, exactly
    # (each query's loss is independent), so only memory depends on it.
    chunk_size: int = 4
    lr: float = 3e-5  # a usual rate for fine-tuning MiniLM/BERT-size encoders (2e-5 to 5e-5)
    # The new scoring head starts random, and AdamW moves each weight about lr per step:
    # at 3e-5 its logits stay near 0 for hundreds of steps (on SciFact the listwise loss
    # was still ln 8 after 15 of its 46 steps an epoch), so the head learns 30x faster.
    head_lr: float = 1e-3
    warmup: float = 0.1  # fraction of steps with a linearly rising rate, then linear decay
    weight_decay: float = 0.01
    max_length: int = 256  # tokens per (query, passage) pair; the passage side is cut
    # Hard negatives come from ragmix's own first stage: hybrid (dense + BM25, min-max
    # fused as the collections do) ranks the confusable passages a reranker will be shown.
    mine: str = "hybrid"
    mine_pool: int = 30  # safe candidates kept per query; each step samples from them
    mine_depth: int = 100  # how deep each ranking looks (the reranker sees the top 50 or so)
    dense_weight: float = 0.5  # hybrid's default fusion weight (retrieval/retrievers.py)
    max_ratio: float = 0.95  # dense mining: drop candidates scoring >= 0.95 x the positive
    # Forward passes under bf16 autocast (master weights and AdamW stay float32);
    # "auto" is bf16 where the CPU has AMX. Part of the resume check: it changes the numbers.
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        # "auto" is decided here, so the config (and the resume check) holds what ran.
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        if self.loss not in LOSSES:
            raise BadInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.mine not in MINING:
            raise BadInputError(f"mine must be one of {MINING}, got {self.mine!r}")
        if not (self.lr > 0 and self.head_lr > 0):
            raise BadInputError(f"lr and head_lr must be > 0, got {self.lr} and {self.head_lr}")
        for name in ("epochs", "batch_size", "chunk_size", "mine_pool", "mine_depth"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps is not None and self.steps <= 0:
            raise BadInputError(f"steps must be > 0 (or None for epochs), got {self.steps}")
        if self.negatives < 1:
            raise BadInputError(f"negatives must be >= 1 (a positive alone teaches nothing), "
                                f"got {self.negatives}")
        if self.max_length < 8:
            raise BadInputError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if not self.lr > 0:
            raise BadInputError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise BadInputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise BadInputError(f"dense_weight must be in [0, 1], got {self.dense_weight}")
