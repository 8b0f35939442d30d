"""DPR-style training of a bi-encoder (Karpukhin et al., 2020), from a sentence-transformers model.

Each step takes ``batch_size`` (query, positive passage) pairs (an epoch
holds every pair once), and
``hard_negatives`` mined passages per query and source; every query is scored
against the whole pool of passages with InfoNCE (``infonce.py``) on cosine:
the unit vectors of ``encoders.sentence_transformer.embed``, the embedding
the index stores, whether or not the base model normalises. Large batches
fit in CPU memory through gradient caching (``gradcache.py``). The result is a
sentence-transformers folder (two subfolders for two towers) that
``ragmix index --encoder PATH`` and ``ragmix reembed`` use. Training
checkpoints every few steps under ``OUTPUT/checkpoints`` (deleted once the
model is saved), so a crashed run resumes exactly where it stopped. With
``dtype="bfloat16"`` the encoders' forward passes run under bf16 autocast
(the weights, gradients and optimiser stay float32).

What is embedded and how a query scores the pool is a :class:`PoolScoring`:
:class:`DenseScoring` (cosine of sentence embeddings) by default; late
interaction (``training/late_interaction.py``) plugs MaxSim over token
vectors into the same loop, batches, negatives and checkpoints.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.encoders.sentence_transformer import encode, packaged_minilm_path
from ragmix.encoders.two_tower import TWO_TOWER_FILE
from ragmix.errors import BadInputError
from ragmix.training.checkpoint import resume_state, save_checkpoint
from ragmix.training.infonce import pool_exclusions
from ragmix.training.negatives import Negatives, bm25_negatives, model_negatives
from ragmix.training.pairs import TrainingSet, TrainPair
from ragmix.training.pool_scoring import DenseScoring, PoolScoring
from ragmix.training.retriever_config import RetrieverTrainConfig

TRAINING_LOG = "ragmix_training.json"
MAX_SCALE = 100.0  # CLIP's cap on a learned 1/temperature


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    temperature: float
    seconds: float


@dataclass(frozen=True)
class RetrieverTrainReport:
    """Where the model went and how training went."""

    output: Path
    steps: int
    seconds: float  # training time, including the part before a resume
    mined: dict[str, float]  # source -> mean negatives found per query
    log: tuple[StepLog, ...]
    resumed_from: int = 0  # the checkpoint's step, 0 for a fresh run


@dataclass
class _Position:
    """Where a training run stands: steps done, the epoch, the next batch in its order."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    order: list[list[tuple[TrainPair, str]]] | None = None
    seconds: float = 0.0  # training time so far, across resumes
    log: list[StepLog] = field(default_factory=list)


class RetrieverTrainer:
    """Fine-tunes a sentence-transformers model on (query, positive) pairs.

    >>> trainer = RetrieverTrainer("minilm", data, RetrieverTrainConfig())  # doctest: +SKIP
    >>> trainer.train("models/scifact-minilm")  # doctest: +SKIP
    """

    def __init__(self, base: str | Path, data: TrainingSet, config: RetrieverTrainConfig,
                 *, model: Any = None, scoring: PoolScoring | None = None) -> None:
        torch = require("torch", "models")
        if scoring is not None and config.two_tower:
            raise BadInputError("two_tower trains dense scoring only; drop two_tower or scoring")
        self.config, self.data = config, data
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.passage_model = model if model is not None else load_base_model(base)
        self.passage_model.max_seq_length = config.max_seq_length
        self.query_model = (copy.deepcopy(self.passage_model) if config.two_tower
                            else self.passage_model)
        self.scoring = scoring if scoring is not None else DenseScoring(
            self.query_model, self.passage_model, config.dtype)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / config.temperature)),
                                            requires_grad=config.learn_temperature)
        self.negatives: dict[str, Negatives] = {}

    @property
    def temperature(self) -> float:
        return 1.0 / min(math.exp(float(self.log_scale.detach())), MAX_SCALE)

    def mine(self, progress: Callable[[str], None] | None = None) -> dict[str, float]:
        """Mine every configured source of hard negatives; returns the mean found per query."""
        cfg, pairs, corpus = self.config, self.data.pairs, self.data.corpus
        for source in cfg.negatives:
            if progress is not None:
                progress(f"mining {source} negatives")
            if source == "bm25":
                found = bm25_negatives(pairs, corpus, count=cfg.mine_pool, depth=cfg.mine_depth)
            else:
                found = self._model_negatives()
            self.negatives[source] = found
        return {s: float(np.mean([len(v) for v in n.values()])) for s, n in self.negatives.items()}

    def batches(self, rng: random.Random) -> list[list[tuple[TrainPair, str]]]:
        """One epoch: every (query, positive passage) once, shuffled, in batches.

        A query with several positives is trained on each of them, as
        sentence-transformers and BEIR fine-tuning do; should two land in one
        batch, each masks the other (``pool_exclusions``).
        """
        order = [(pair, pid) for pair in self.data.pairs for pid in pair.positives]
        rng.shuffle(order)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def pool(self, batch: list[tuple[TrainPair, str]], rng: random.Random,
             ) -> tuple[list[str], list[int]]:
        """The batch's passage ids (positives first, then hard negatives) and each target."""
        ids = [pid for _, pid in batch]
        targets = list(range(len(batch)))
        seen = set(ids)
        for pair, _ in batch:
            for source in self.config.negatives:
                mined = self.negatives.get(source, {}).get(pair.query_id, ())
                take = min(self.config.hard_negatives, len(mined))
                for pid in rng.sample(mined, take):
                    if pid not in seen:  # a passage in the pool twice would count twice
                        seen.add(pid)
                        ids.append(pid)
        return ids, targets

    def step_loss(self, batch: list[tuple[TrainPair, str]], pool_ids: list[str],
                  targets: list[int]):
        """Back-propagate one step's loss with gradient caching; returns the loss."""
        torch = require("torch", "models")
        from ragmix.training.gradcache import cached_backward

        excluded = torch.tensor(pool_exclusions([frozenset(p.positives) for p, _ in batch],
                                                pool_ids))  # (B, N)
        target = torch.tensor(targets)  # (B,)

        def loss_fn(q, d):  # dense: (B, D), (N, D) unit vectors, as the index holds: cosine
            return self.scoring.loss(q, d, target, temperature=1.0 / self.log_scale.exp(),
                                     excluded=excluded)

        return cached_backward(
            [self.scoring.embed_queries, self.scoring.embed_passages],
            [[p.query for p, _ in batch], [self.data.corpus[i] for i in pool_ids]], loss_fn,
            chunk_size=self.config.chunk_size,
            devices=(self.query_model.device, self.passage_model.device))  # texts carry none

    def train(self, output: str | Path, *, resume: bool = True, checkpoint_every: int = 10,
              max_steps: int | None = None,
              progress: Callable[..., None] | None = None) -> RetrieverTrainReport:
        """Mine, train for ``epochs`` (or ``max_steps``, if fewer) and save to ``output``;
        ``progress(event, **info)``.

        Every ``checkpoint_every`` steps the whole state (weights, optimiser,
        schedule, mined negatives, the epoch's batch order, random states) is
        written to ``output/checkpoints``; with ``resume`` (default) a run
        finding one there continues exactly from it. The checkpoints are
        deleted once the model is saved.
        """
        if checkpoint_every < 1:
            raise BadInputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if max_steps is not None and max_steps < 1:
            raise BadInputError(f"max_steps must be >= 1, got {max_steps}")
        cfg, output = self.config, Path(output)
        run = {**self.fingerprint(), **self.scoring.settings}
        if max_steps is not None:  # it sets the schedule: a checkpoint must match it
            run["max_steps"] = str(max_steps)
        checkpoints = output / "checkpoints"
        state = resume_state(checkpoints, resume, asdict(cfg), run)
        say = (lambda text: progress("stage", text=text)) if progress else None
        mined = state["mined"] if state is not None else self.mine(say)
        rng = random.Random(cfg.seed)
        positives = sum(len(p.positives) for p in self.data.pairs)
        total = math.ceil(positives / cfg.batch_size) * cfg.epochs
        total = total if max_steps is None else min(total, max_steps)
        params, optimizer, schedule = self._optimizer(total)
        at = _Position()
        if state is not None:
            at = self._restore(state, optimizer, schedule, rng)
            if say is not None:
                say(f"resuming from {state['path']} (step {at.step} of {total})")
        resumed_from = at.step
        self._train_mode(True)
        if progress is not None:
            progress("start", total=total, done=at.step)
        began = time.perf_counter() - at.seconds
        while at.epoch < cfg.epochs and at.step < total:
            if at.order is None:
                at.order = self._epoch_order(rng, at.epoch)
            while at.position < len(at.order) and at.step < total:
                loss = self._step(at.order[at.position], rng, params, optimizer, schedule)
                at.step, at.position = at.step + 1, at.position + 1
                at.seconds = time.perf_counter() - began
                at.log.append(StepLog(at.step, loss, self.temperature, at.seconds))
                if at.step % checkpoint_every == 0 or at.step == total:
                    save_checkpoint(checkpoints, at.step, {
                        "config": asdict(cfg), "run": run, "mined": mined,
                        **self._state(optimizer, schedule, rng, at)})
                if progress is not None:
                    progress("step", step=at.step, loss=loss, temperature=self.temperature)
            if at.position == len(at.order):
                at.epoch, at.position, at.order = at.epoch + 1, 0, None
        log = at.log
        self._train_mode(False)
        report = RetrieverTrainReport(output, at.step, time.perf_counter() - began, mined,
                                      tuple(log), resumed_from)
        self.save(output, report)
        self.scoring.save(output)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the saved model supersedes them
        return report

    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint must match besides the config: the training pairs and corpus."""
        digest = hashlib.sha256()
        for pair in self.data.pairs:
            digest.update(f"{pair.query_id}\x00{pair.query}\x00{pair.positives}\x01".encode())
        return {"pairs": f"{len(self.data.pairs)}:{digest.hexdigest()[:16]}",
                "corpus": str(len(self.data.corpus))}

    def _model_states(self) -> dict[str, Any]:
        states = {"passage": self.passage_model.state_dict()}
        if self.config.two_tower:
            states["query"] = self.query_model.state_dict()
        if self.scoring.modules:
            states["scoring"] = [module.state_dict() for module in self.scoring.modules]
        return states

    def _optimizer(self, total: int) -> tuple[list[Any], Any, Any]:
        """(every trainable weight once, AdamW, linear warm-up and decay over ``total`` steps);
        the learned temperature at 100x the rate."""
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        cfg = self.config
        decayed, plain = self._decay_groups()
        optimizer = torch.optim.AdamW([  # no decay on biases and norms, as BERT trains
            {"params": decayed, "weight_decay": cfg.weight_decay},
            {"params": plain, "weight_decay": 0.0},
            {"params": [self.log_scale], "lr": cfg.lr * 100, "weight_decay": 0.0}], lr=cfg.lr)
        schedule = transformers.get_linear_schedule_with_warmup(
            optimizer, int(cfg.warmup * total), total)
        return decayed + plain, optimizer, schedule

    def _epoch_order(self, rng: random.Random, epoch: int) -> list[list[tuple[TrainPair, str]]]:
        """An epoch's batches; from the second epoch on, model negatives are mined again
        with the current model first (ANCE)."""
        if epoch > 0 and "model" in self.config.negatives:
            self._train_mode(False)
            self.negatives["model"] = self._model_negatives()
            self._train_mode(True)
        return self.batches(rng)

    def _step(self, batch: list[tuple[TrainPair, str]], rng: random.Random,
              params: list[Any], optimizer: Any, schedule: Any) -> float:
        """One optimiser step on ``batch``; returns its loss."""
        torch = require("torch", "models")
        pool_ids, targets = self.pool(batch, rng)
        optimizer.zero_grad()
        loss = self.step_loss(batch, pool_ids, targets)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # CLIP: clamp the parameter, so it can come back down
            self.log_scale.clamp_(max=math.log(MAX_SCALE))
        return float(loss)

    def _state(self, optimizer: Any, schedule: Any, rng: random.Random,
               at: _Position) -> dict[str, Any]:
        """A checkpoint's training state: weights, optimiser, schedule, negatives, where the
        epoch stands and the random state (``_restore`` reads it back)."""
        return {"models": self._model_states(), "log_scale": self.log_scale.detach(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "negatives": self.negatives, "rng_batches": rng.getstate(),
                "epoch": at.epoch, "position": at.position,
                "order": [[(p.query_id, pid) for p, pid in b] for b in at.order or ()],
                "log": [asdict(row) for row in at.log], "seconds": at.seconds}

    def _restore(self, state: dict[str, Any], optimizer: Any, schedule: Any,
                 rng: random.Random) -> _Position:
        torch = require("torch", "models")
        self.passage_model.load_state_dict(state["models"]["passage"])
        if self.config.two_tower:
            self.query_model.load_state_dict(state["models"]["query"])
        for module, saved in zip(self.scoring.modules, state["models"].get("scoring", ())):
            module.load_state_dict(saved)
        with torch.no_grad():
            self.log_scale.copy_(state["log_scale"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        self.negatives = state["negatives"]
        rng.setstate(state["rng_batches"])
        return _Position(state["step"], state["epoch"], state["position"],
                         self._batches_from_ids(state["order"]), state["seconds"],
                         [StepLog(**row) for row in state["log"]])

    def _batches_from_ids(self, order: list[list[tuple[str, str]]],
                          ) -> list[list[tuple[TrainPair, str]]]:
        by_id = {pair.query_id: pair for pair in self.data.pairs}
        return [[(by_id[qid], pid) for qid, pid in batch] for batch in order]

    def _model_negatives(self) -> Negatives:
        """Negatives mined by the current model (before training, then each epoch: ANCE)."""
        cfg = self.config
        return model_negatives(self.data.pairs, self.data.corpus,
                               lambda texts: encode(self.query_model, texts, dtype=cfg.dtype),
                               lambda texts: encode(self.passage_model, texts, dtype=cfg.dtype),
                               count=cfg.mine_pool, depth=cfg.mine_depth,
                               max_ratio=cfg.max_ratio)

    def _decay_groups(self) -> tuple[list[Any], list[Any]]:
        """Trainable weights split into (decayed, not decayed: biases and LayerNorms)."""
        decayed, plain, seen = [], [], set()
        for model in (self.query_model, self.passage_model, *self.scoring.modules):
            for name, p in model.named_parameters():
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                no_decay = name.endswith("bias") or "LayerNorm" in name or "norm" in name
                (plain if no_decay else decayed).append(p)
        return decayed, plain

    def _train_mode(self, on: bool) -> None:
        for model in (self.query_model, self.passage_model, *self.scoring.modules):
            model.train(on)

    def save(self, output: str | Path, report: RetrieverTrainReport) -> None:
        """A sentence-transformers folder, or ``query/`` + ``document/`` for two towers."""
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / TWO_TOWER_FILE).unlink(missing_ok=True)  # a stale marker would win on load
        if self.config.two_tower:
            self.query_model.save(str(output / "query"))
            self.passage_model.save(str(output / "document"))
            (output / TWO_TOWER_FILE).write_text(json.dumps(
                {"query": "query", "document": "document"}, indent=1))
        else:
            self.passage_model.save(str(output))
        (output / TRAINING_LOG).write_text(json.dumps({
            "config": asdict(self.config), "steps": report.steps,
            "seconds": round(report.seconds, 1), "mined_per_query": report.mined,
            "final_temperature": self.temperature,
            "log": [asdict(s) for s in report.log]}, indent=1))


def load_base_model(base: str | Path) -> Any:
    """The SentenceTransformer to start from: 'minilm' (packaged) or a local folder."""
    st = require("sentence_transformers", "models")
    from ragmix.encoders import _MINILM_ALIASES

    if str(base) in _MINILM_ALIASES:
        base = packaged_minilm_path()
    if not Path(base).is_dir():
        raise BadInputError(f"base model {str(base)!r} is not 'minilm' or a local "
                            "sentence-transformers folder")
    return st.SentenceTransformer(str(base), device="cpu")
