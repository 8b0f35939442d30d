"""Training a cross-encoder reranker on (query, positive) pairs with mined hard negatives.

The model starts from a local encoder folder (by default the packaged
all-MiniLM-L6-v2, which gets a new, randomly initialised one-logit scoring
head) or an existing cross-encoder. Each query is trained on a group
``[positive, n negatives]``: the negatives are sampled from passages that
ragmix's own hybrid retrieval (dense + BM25, min-max fused) ranks high, after
the false-negative filter of ``negatives.py`` (never a positive, never a
passage containing a QA answer), topped up with random passages where the
ranking runs short. Two losses: pointwise BCE (positive 1, negatives 0,
monoBERT; Nogueira & Cho, 2019) and listwise softmax cross-entropy over the
group (LCE; Gao et al., 2021). The data are ``pairs.py``'s
:class:`~ragmix.training.pairs.TrainingSet`, as ``ragmix train retriever``
uses. Checkpoints under ``OUTPUT/checkpoints`` resume a crashed run exactly;
the result is a Hugging Face folder that
:class:`~ragmix.rerank.cross_encoder.CrossEncoderScorer` (and
sentence-transformers' ``CrossEncoder``) loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import autocast
from ragmix.encoders.base import Encoder
from ragmix.errors import BadInputError
from ragmix.rerank.cross_encoder import (TRAINING_REPORT, load_sequence_classifier, pair_encoding,
                                         pair_scores)
from ragmix.training.checkpoint import resume_state, save_checkpoint
from ragmix.training.negatives import Negatives, bm25_negatives, keep_candidates, model_negatives
from ragmix.training.pairs import TrainingSet, TrainPair
from ragmix.training.reranker_config import RerankerTrainConfig

Item = tuple[TrainPair, str]  # a query and one of its positive passage ids

# Beside the model: the mined negatives and what they were mined with (mining_key).
MINED_FILE = "mined-negatives.json"


def bce_loss(scores: Any) -> Any:
    """Pointwise binary cross-entropy: column 0 of ``scores`` (B, G) is relevant, the rest not.

    The mean over all B * G pairs of BCE(sigmoid(score), label), labels
    ``[1, 0, ..., 0]`` per row (monoBERT's pointwise objective).
    """
    torch = require("torch", "models")
    labels = torch.zeros_like(scores)  # (B, G)
    labels[:, 0] = 1.0
    return torch.nn.functional.binary_cross_entropy_with_logits(scores, labels)  # ()


def listwise_loss(scores: Any) -> Any:
    """Softmax cross-entropy over each row of ``scores`` (B, G), the positive in column 0.

    ``mean_b [logsumexp_g scores[b, g] - scores[b, 0]]``: the group's
    passages compete for the query (LCE, Gao et al., 2021).
    """
    torch = require("torch", "models")
    target = torch.zeros(scores.shape[0], dtype=torch.long)  # (B,)
    return torch.nn.functional.cross_entropy(scores, target)  # ()


LOSS_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"bce": bce_loss, "listwise": listwise_loss}


def hybrid_negatives(pairs: Sequence[TrainPair], corpus: dict[str, str], encoder: Encoder, *,
                     count: int = 30, depth: int = 100, dense_weight: float = 0.5) -> Negatives:
    """Up to ``count`` safe negatives per query from dense + BM25, min-max fused.

    Each side ranks its top ``depth`` passages; they are fused as
    :class:`~ragmix.retrieval.retrievers.HybridRetriever` fuses them, and
    :func:`~ragmix.training.negatives.keep_candidates` drops positives and,
    for QA pairs, passages holding an answer.
    """
    from ragmix.retrieval.bm25 import BM25Index
    from ragmix.retrieval.fusion import weighted_fusion
    from ragmix.types import ScoredId

    ids = list(corpus)
    texts = [corpus[i] for i in ids]
    index = BM25Index.build(np.arange(len(ids), dtype=np.int64), texts)
    sparse = index.search_batch([p.query for p in pairs], depth)
    passages = encoder.encode_documents(texts)  # (P, D)
    queries = encoder.encode_queries([p.query for p in pairs])  # (Q, D)
    take = min(depth, len(ids))
    out: Negatives = {}
    for start in range(0, len(pairs), 256):
        scores = queries[start : start + 256] @ passages.T  # (q, P)
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]  # (q, take), unordered
        for offset, pair in enumerate(pairs[start : start + 256]):
            dense = [ScoredId(int(j), float(scores[offset, j])) for j in top[offset]]
            fused = weighted_fusion([dense, sparse[start + offset]],
                                    weights=[dense_weight, 1.0 - dense_weight])
            ranked = [(ids[h.chunk_id], h.score) for h in fused]
            out[pair.query_id] = keep_candidates(pair, ranked, corpus, count=count)
    return out


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class RerankerTrainReport:
    """Where the model went and how training went."""

    output: Path
    steps: int
    seconds: float  # training time, including the part before a resume
    mined: float  # mean mined negatives per query, before random top-ups
    log: tuple[StepLog, ...]
    resumed_from: int = 0  # the checkpoint's step, 0 for a fresh run


class RerankerTrainer:
    """Fine-tunes a cross-encoder on (query, positive) pairs and mined negatives.

    ``mine_encoder`` ranks passages for hybrid and dense mining: an
    :class:`~ragmix.encoders.Encoder`, or a name for
    :func:`~ragmix.encoders.load_encoder`, loaded only if mining runs (a
    resumed run takes its negatives from the checkpoint).

    >>> trainer = RerankerTrainer("minilm", data, RerankerTrainConfig())  # doctest: +SKIP
    >>> trainer.train("models/scifact-reranker")  # doctest: +SKIP
    """

    def __init__(self, base: str | Path, data: TrainingSet, config: RerankerTrainConfig, *,
                 model: Any = None, tokenizer: Any = None,
                 mine_encoder: Encoder | str = "minilm") -> None:
        torch = require("torch", "models")
        self.config, self.data, self.base = config, data, str(base)
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)  # the new head's initial weights
        if (model is None) != (tokenizer is None):
            raise BadInputError("give both model and tokenizer, or neither (to load base)")
        self.model, self.tokenizer = (model, tokenizer) if model is not None else _load(base)
        self.mine_encoder = mine_encoder
        self.negatives: Negatives = {}
        self._ids = list(data.corpus)

    def mine(self, progress: Callable[[str], None] | None = None) -> float:
        """Mine the configured hard negatives; returns the mean found per query."""
        cfg, pairs, corpus = self.config, self.data.pairs, self.data.corpus
        if progress is not None:
            progress(f"mining {cfg.mine} negatives")
        if cfg.mine == "bm25":
            self.negatives = bm25_negatives(pairs, corpus, count=cfg.mine_pool,
                                            depth=cfg.mine_depth)
        else:
            encoder = self.mine_encoder
            if isinstance(encoder, str):
                from ragmix.encoders import load_encoder

                encoder = load_encoder(encoder, dtype=cfg.dtype)
            if cfg.mine == "dense":
                self.negatives = model_negatives(
                    pairs, corpus, encoder.encode_queries, encoder.encode_documents,
                    count=cfg.mine_pool, depth=cfg.mine_depth, max_ratio=cfg.max_ratio)
            else:
                self.negatives = hybrid_negatives(pairs, corpus, encoder, count=cfg.mine_pool,
                                                  depth=cfg.mine_depth,
                                                  dense_weight=cfg.dense_weight)
        return float(np.mean([len(v) for v in self.negatives.values()]))

    def mining_key(self) -> dict[str, object]:
        """What mined negatives depend on: a cache of them is reused only if this matches."""
        cfg = self.config
        encoder = self.mine_encoder if isinstance(self.mine_encoder, str) else getattr(
            self.mine_encoder, "name", type(self.mine_encoder).__name__)
        return {"mine": cfg.mine, "pool": cfg.mine_pool, "depth": cfg.mine_depth,
                "dense_weight": cfg.dense_weight, "max_ratio": cfg.max_ratio,
                "encoder": None if cfg.mine == "bm25" else encoder, **self.fingerprint()}

    def mine_cached(self, output: str | Path,
                    progress: Callable[[str], None] | None = None) -> float:
        """:meth:`mine`, or the negatives an earlier run mined into ``output`` with the same
        :meth:`mining_key` (mining encodes the whole corpus; a new loss or rate need not)."""
        path = Path(output) / MINED_FILE
        key = self.mining_key()
        if path.is_file():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                self.negatives = {q: tuple(ids) for q, ids in cached["negatives"].items()}
                if progress is not None:
                    progress(f"reusing the negatives mined into {path}")
                return float(np.mean([len(v) for v in self.negatives.values()]))
        mined = self.mine(progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"key": key, "negatives": self.negatives}), encoding="utf-8")
        partial.replace(path)  # whole or absent, never half-written
        return mined

    def batches(self, rng: random.Random) -> list[list[Item]]:
        """One epoch: every (query, positive passage) once, shuffled, in batches."""
        order = [(pair, pid) for pair in self.data.pairs for pid in pair.positives]
        rng.shuffle(order)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def group(self, item: Item, rng: random.Random) -> list[str]:
        """``[positive, n negatives]`` passage ids: mined ones first, random ones to fill up."""
        pair, positive = item
        want = self.config.negatives
        mined = self.negatives.get(pair.query_id, ())
        chosen = rng.sample(mined, min(want, len(mined)))
        taken = {positive, *chosen}
        for _ in range(100 * want):
            if len(chosen) == want:
                break
            pid = self._ids[rng.randrange(len(self._ids))]
            if pid not in taken and keep_candidates(pair, [(pid, 0.0)], self.data.corpus,
                                                    count=1):
                taken.add(pid)
                chosen.append(pid)
        if len(chosen) < want:
            raise BadInputError(f"could not find {want} negatives for query {pair.query_id!r} "
                                f"in a corpus of {len(self._ids)} passages; lower --negatives")
        return [positive, *chosen]

    def step_loss(self, batch: Sequence[Item], groups: Sequence[Sequence[str]]) -> float:
        """Back-propagate one step's loss, ``chunk_size`` queries per forward pass."""
        cfg, corpus = self.config, self.data.corpus
        loss_fn = LOSS_FUNCTIONS[cfg.loss]
        total = 0.0
        for start in range(0, len(batch), cfg.chunk_size):
            end = start + cfg.chunk_size
            items, chunk = batch[start:end], groups[start:end]
            size = len(chunk[0])  # G = 1 + negatives, the same for every query
            queries = [pair.query for pair, _ in items for _ in range(size)]
            encoded = pair_encoding(self.tokenizer, queries, [corpus[p] for g in chunk for p in g],
                                    cfg.max_length)
            encoded = {key: value.to(self.model.device) for key, value in encoded.items()}
            with autocast(cfg.dtype):
                logits = self.model(**encoded).logits  # (b * G, num_labels)
            scores = pair_scores(logits.float()).view(len(chunk), size)  # (b, G)
            loss = loss_fn(scores) * (len(chunk) / len(batch))  # a share of the batch mean
            loss.backward()
            total += float(loss.detach())
        return total

    def total_steps(self) -> int:
        """The run's length: ``steps``, or ``epochs`` passes over the (query, positive) pairs."""
        if self.config.steps is not None:
            return self.config.steps
        items = sum(len(p.positives) for p in self.data.pairs)
        return math.ceil(items / self.config.batch_size) * self.config.epochs

    def train(self, output: str | Path, *, resume: bool = True, checkpoint_every: int = 10,
              progress: Callable[..., None] | None = None) -> RerankerTrainReport:
        """Mine, train and save to ``output``; ``progress(event, **info)`` hears each stage.

        Events: ``stage`` (``text``), ``start`` (``total``, ``done``) and
        ``step`` (``step``, ``loss``). Every ``checkpoint_every`` steps the
        whole state is written to ``output/checkpoints``; with ``resume``
        (default) a run finding one continues exactly from it. The
        checkpoints are deleted once the model is saved.
        """
        torch = require("torch", "models")
        if checkpoint_every < 1:
            raise BadInputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        cfg, output = self.config, Path(output)
        checkpoints, run = output / "checkpoints", self.fingerprint()
        state = resume_state(checkpoints, resume, asdict(cfg), run)
        say = (lambda text: progress("stage", text=text)) if progress else None
        mined = state["mined"] if state is not None else self.mine_cached(output, say)
        total = self.total_steps()
        optimizer, schedule, params = self._optimizer(total)
        rng = random.Random(cfg.seed)
        loop = _Loop()
        if state is not None:
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            self.negatives, loop = state["negatives"], self._loop_from(state)
            rng.setstate(state["rng_batches"])
            if say is not None:
                say(f"resuming from {state['path']} (step {loop.step} of {total})")
        resumed_from = loop.step
        if progress is not None:
            progress("start", total=total, done=loop.step)
        began = time.perf_counter() - loop.seconds
        self.model.train(True)
        while loop.step < total:
            if loop.order is not None and loop.position == len(loop.order):
                loop.epoch, loop.order = loop.epoch + 1, None  # an epoch ends; --steps go on
            if loop.order is None:
                loop.order, loop.position = self.batches(rng), 0
            batch = loop.order[loop.position]
            groups = [self.group(item, rng) for item in batch]
            optimizer.zero_grad()
            loss = self.step_loss(batch, groups)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            loop.step, loop.position = loop.step + 1, loop.position + 1
            loop.log.append(StepLog(loop.step, loss, time.perf_counter() - began))
            if loop.step % checkpoint_every == 0 or loop.step == total:
                self._checkpoint(checkpoints, loop, mined, optimizer, schedule, rng, began)
            if progress is not None:
                progress("step", step=loop.step, loss=loss)
        self.model.train(False)
        report = RerankerTrainReport(output, loop.step, time.perf_counter() - began, mined,
                                     tuple(loop.log), resumed_from)
        self.save(output, report)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the saved model supersedes them
        return report

    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint must match besides the config: base model, pairs and corpus."""
        digest = hashlib.sha256()
        for pair in self.data.pairs:
            digest.update(f"{pair.query_id}\x00{pair.query}\x00{pair.positives}\x00"
                          f"{pair.answers}\x01".encode())
        return {"base": self.base, "pairs": f"{len(self.data.pairs)}:{digest.hexdigest()[:16]}",
                "corpus": str(len(self.data.corpus))}

    def _optimizer(self, total: int) -> tuple[Any, Any, list[Any]]:
        """AdamW without decay on biases and norms (as BERT trains), the new scoring head
        (``classifier``) at ``head_lr``, linear warmup and decay."""
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        groups: dict[tuple[bool, bool], list[Any]] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                no_decay = name.endswith("bias") or "LayerNorm" in name or "norm" in name
                groups.setdefault((name.startswith("classifier"), no_decay), []).append(p)
        cfg = self.config
        optimizer = torch.optim.AdamW([
            {"params": params, "lr": cfg.head_lr if head else cfg.lr,
             "weight_decay": 0.0 if no_decay else cfg.weight_decay}
            for (head, no_decay), params in sorted(groups.items())], lr=cfg.lr)
        decayed = [p for (_, no_decay), ps in sorted(groups.items()) if not no_decay for p in ps]
        plain = [p for (_, no_decay), ps in sorted(groups.items()) if no_decay for p in ps]
        schedule = transformers.get_linear_schedule_with_warmup(
            optimizer, int(self.config.warmup * total), total)
        return optimizer, schedule, decayed + plain

    def _checkpoint(self, folder: Path, loop: _Loop, mined: float, optimizer: Any,
                    schedule: Any, rng: random.Random, began: float) -> None:
        order = [[(p.query_id, pid) for p, pid in b] for b in loop.order or []]
        save_checkpoint(folder, loop.step, {
            "config": asdict(self.config), "run": self.fingerprint(), "mined": mined,
            "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "negatives": self.negatives,
            "rng_batches": rng.getstate(), "epoch": loop.epoch, "position": loop.position,
            "order": order, "log": [asdict(row) for row in loop.log],
            "seconds": time.perf_counter() - began})

    def _loop_from(self, state: dict[str, Any]) -> _Loop:
        by_id = {pair.query_id: pair for pair in self.data.pairs}
        order = [[(by_id[qid], pid) for qid, pid in batch] for batch in state["order"]]
        return _Loop(state["step"], state["epoch"], state["position"], order or None,
                     [StepLog(**row) for row in state["log"]], state["seconds"])

    def save(self, output: str | Path, report: RerankerTrainReport) -> None:
        """A Hugging Face folder (weights, config, tokenizer) plus the training report."""
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(output))
        self.tokenizer.save_pretrained(str(output))
        (output / TRAINING_REPORT).write_text(json.dumps({
            "base": self.base, "config": asdict(self.config), "steps": report.steps,
            "seconds": round(report.seconds, 1), "mined_per_query": report.mined,
            "pairs": len(self.data.pairs), "corpus": len(self.data.corpus),
            "log": [asdict(s) for s in report.log]}, indent=1))


@dataclass
class _Loop:
    """Where the training loop stands: what a checkpoint must bring back."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # the next batch of ``order``
    order: list[list[Item]] | None = None  # this epoch's batches
    log: list[StepLog] = field(default_factory=list)
    seconds: float = 0.0


def _load(base: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of ``base`` with a one-logit head (kept if it has one)."""
    from ragmix.encoders import _MINILM_ALIASES
    from ragmix.encoders.sentence_transformer import packaged_minilm_path

    path = packaged_minilm_path() if str(base) in _MINILM_ALIASES else Path(base).expanduser()
    if not path.is_dir():
        raise BadInputError(f"base model {str(base)!r} is not 'minilm' or a local Hugging Face "
                            "folder (a sentence-transformers model or a cross-encoder)")
    return load_sequence_classifier(path, num_labels=1)
