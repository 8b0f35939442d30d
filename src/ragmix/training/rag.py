"""Joint fine-tuning of RAG's query encoder and generator (Lewis et al., 2020, 2.4).

For each (question, answer): embed the question with the query encoder,
retrieve the top-k passages from the frozen index, take the prior
log p(z|x) = log_softmax(d(z) . q(x) / tau) (cosine: q(x) is normalised as the
index's d(z) are) with the passage embeddings read
from the store (constants: the document encoder and the index never change),
score the gold answer under each passage with the generator (teacher forcing)
and minimise the marginal negative log-likelihood of RAG-Sequence or
RAG-Token. Its gradient reaches the generator (LoRA adapters or every
weight) and, through the prior, the query encoder. With ``dtype="bfloat16"``
both forward passes run under bf16 autocast; the weights being trained, their
gradients and the optimiser stay float32.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import autocast
from ragmix.encoders.sentence_transformer import embed
from ragmix.errors import BadInputError
from ragmix.generation.base import TrainableGenerator
from ragmix.generation.prompt import build_passage_prompt
from ragmix.marginal.scoring import score_passages, with_end
from ragmix.store.backend import ChunkRow, PassageIndex
from ragmix.training.adapters import prepare_generator
from ragmix.training.checkpoint import resume_state, save_checkpoint, trainable_state
from ragmix.training.collapse import CollapseMonitor
from ragmix.training.negatives import contains_answer
from ragmix.training.rag_config import RESUME_NEUTRAL, RagTrainConfig
from ragmix.types import Hit

RUN_FILE = "ragmix_rag.json"


@dataclass(frozen=True)
class RagStepLog:
    step: int
    loss: float
    seconds: float
    entropy: float  # of p(z|x), window mean
    top1_changed: float  # share whose top-1 passage differs from the untrained encoder's
    answer_recall: float  # share whose k passages contain an answer
    distinct_top1: float


@dataclass(frozen=True)
class RagTrainReport:
    output: Path
    steps: int
    seconds: float
    resumed_from: int
    log: tuple[RagStepLog, ...]
    warnings: tuple[str, ...]


def training_plan(n_examples: int, n_items: int, seed: int) -> list[int]:
    """Example indices for ``n_items`` draws: a fresh seeded permutation per pass.

    >>> len(training_plan(3, 7, 0)), sorted(training_plan(3, 6, 0)[3:])
    (7, [0, 1, 2])
    """
    order: list[int] = []
    epoch = 0
    while len(order) < n_items:
        block = list(range(n_examples))
        random.Random(seed * 1_000_003 + epoch).shuffle(block)
        order += block
        epoch += 1
    return order[:n_items]


class RagTrainer:
    """Fine-tunes a generator and a query encoder through the RAG marginal likelihood.

    Example::

        col = Collection.open("squad-col")
        trainer = RagTrainer(col, load_generator("smollm2"), examples, RagTrainConfig())
        trainer.train("runs/squad-rag")  # resumes from runs/squad-rag/checkpoints if present
    """

    def __init__(self, collection: Any, generator: TrainableGenerator, examples: Sequence[Any],
                 config: RagTrainConfig, *, query_model: Any = None) -> None:
        torch = require("torch", "models")
        if not examples:
            raise BadInputError("no training examples: the pairs file (or --limit) gave none")
        if not isinstance(generator, TrainableGenerator):
            raise BadInputError("joint training needs a local Hugging Face generator "
                                "(HFGenerator) or another TrainableGenerator (a ScoringGenerator "
                                "with model and tokenizer; see ragmix.generation.base), "
                                f"got {type(generator).__name__}")
        low = sorted({str(p.dtype) for p in generator.model.parameters()} - {"torch.float32"})
        if low:
            raise BadInputError(f"the generator's weights are {', '.join(low)}; training keeps "
                                "float32 weights (load it with dtype='float32') and runs its "
                                "forward passes in bf16 with RagTrainConfig(dtype='bfloat16')")
        self.col, self.gen, self.examples, self.config = collection, generator, examples, config
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        # The frozen passage index: searched, never written (ragmix.store.backend.PassageIndex).
        self.passages: PassageIndex = collection.passage_index()
        n_passages = self.passages.count_chunks()
        if n_passages < config.k:
            raise BadInputError(f"the collection holds {n_passages} passages, fewer than "
                                f"k={config.k}; lower -k or index more documents")
        self.query_model = query_model if query_model is not None else _query_model(
            collection.manifest.encoder)
        self.query_model.requires_grad_(config.train_query_encoder)
        self.lora = prepare_generator(generator.model, lora=config.lora, lora_r=config.lora_r,
                                      lora_alpha=config.lora_alpha, top_layers=config.top_layers)
        self.plan = training_plan(len(examples), config.steps * config.batch_size, config.seed)

    # -- one step -------------------------------------------------------------
    def _answer_ids(self, answer: str) -> list[int]:
        ids = with_end(self.gen, self.gen.encode_answer(answer))
        cap = self.config.max_answer_tokens
        return ids if len(ids) <= cap else ids[: cap - 1] + ids[-1:]

    def retrieve(self, questions: list[str]):
        """Query embeddings (B, D) with a graph, top-k ids (B, K), their prior log p(z|x) (B, K)."""
        torch = require("torch", "models")
        training = self.query_model.training
        self.query_model.eval()  # search with the encoder itself, not a dropout sample
        dtype = self.config.dtype
        with torch.no_grad():
            probe = embed(self.query_model, questions, dtype=dtype).numpy()  # (B, D)
        self.query_model.train(training)
        _, ids = self.passages.vector_search(probe, self.config.k)  # (B, K)
        if (ids < 0).any():
            raise BadInputError(f"the index returned fewer than k={self.config.k} passages; "
                                "lower -k")
        q = embed(self.query_model, questions, dtype=dtype)  # (B, D) unit, a graph when training
        dim = self.passages.dim
        d = torch.from_numpy(self.passages.embeddings(ids.ravel()))  # (B*K, D)
        d = d.view(len(questions), self.config.k, dim)  # (B, K, D)
        scores = torch.einsum("bkd,bd->bk", d, q)  # (B, K)
        return ids, (scores / self.config.tau).log_softmax(-1)

    def loss(self, batch: list[Any], monitor: CollapseMonitor | None = None,
             initial_top1: dict[int, int] | None = None, indices: list[int] | None = None):
        """The mean marginal NLL of a batch of examples (question, answers), with a graph."""
        from ragmix.marginal.math import rag_sequence_nll, rag_token_nll

        cfg = self.config
        questions = [ex.question for ex in batch]
        ids, doc_lp = self.retrieve(questions)
        rows = self.passages.chunk_rows(ids.ravel().tolist())
        hits = [[_hit(rows[int(i)], r, cfg.passage_words) for r, i in enumerate(row)]
                for row in ids]
        prompts = [[self.gen.encode_prompt(build_passage_prompt(q, h)) for h in row]
                   for q, row in zip(questions, hits)]
        answers = [self._answer_ids(ex.answers[0]) for ex in batch]
        smooth = cfg.label_smoothing > 0
        with autocast(cfg.dtype):  # log-probs come out float32 either way
            scores = score_passages(self.gen, prompts, answers, full=smooth)
        nll = rag_sequence_nll if cfg.mode == "rag-sequence" else rag_token_nll
        losses = nll(scores.token_lp, scores.mask, doc_lp.to(scores.token_lp.dtype),
                     label_smoothing=cfg.label_smoothing, full_lp=scores.full_lp)  # (B,)
        if monitor is not None:
            probs = doc_lp.detach().exp().tolist()
            for b, ex in enumerate(batch):
                question = indices[b] if indices else b
                start = (initial_top1 or {}).get(question, -1)
                seen = " ".join(h.text for h in hits[b])  # what the generator was shown
                monitor.add(question, probs[b], int(ids[b, 0]), start,
                            contains_answer(seen, ex.answers))
            monitor.end_step()
        return losses.mean()

    # -- the loop -------------------------------------------------------------
    def _parameters(self) -> list[Any]:
        params = [p for p in self.gen.model.parameters() if p.requires_grad]
        if self.config.train_query_encoder:
            params += [p for p in self.query_model.parameters() if p.requires_grad]
        return params

    def _initial_top1(self) -> dict[int, int]:
        """The untrained encoder's top-1 passage for every planned example."""
        torch = require("torch", "models")
        wanted = sorted(set(self.plan))
        out: dict[int, int] = {}
        self.query_model.eval()
        with torch.no_grad():
            for start in range(0, len(wanted), 256):
                part = wanted[start : start + 256]
                q = embed(self.query_model, [self.examples[i].question for i in part],
                          dtype=self.config.dtype)
                _, ids = self.passages.vector_search(q.numpy(), 1)
                out.update({i: int(row[0]) for i, row in zip(part, ids)})
        return out

    def train(self, output: str | Path, *, resume: bool = True,
              progress: Callable[..., None] | None = None) -> RagTrainReport:
        """Train for ``config.steps`` steps, checkpointing under ``output/checkpoints``.

        With ``resume`` (default) an existing checkpoint is continued exactly.
        ``progress(event, **info)`` gets "start" (total, done) and "step" events.
        """
        torch = require("torch", "models")
        cfg, output = self.config, Path(output)
        optimizer, schedule = self._optimizer()
        monitor = CollapseMonitor(cfg.monitor_window)
        log: list[RagStepLog] = []
        warnings: list[str] = []
        step, elapsed = 0, 0.0
        checkpoints, run = output / "checkpoints", self.fingerprint()
        state = resume_state(checkpoints, resume, asdict(cfg), run, ignore=RESUME_NEUTRAL)
        if state is not None:
            self._load_trainable(self.gen.model, state["generator"])
            self.query_model.load_state_dict(state["query_model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            initial_top1, monitor = state["initial_top1"], state["monitor"]
            log = [RagStepLog(**row) for row in state["log"]]
            warnings, step, elapsed = list(state["warnings"]), state["step"], state["seconds"]
        else:
            initial_top1 = self._initial_top1()
        resumed_from = step
        self.gen.model.train()
        self.query_model.train(cfg.train_query_encoder)
        params = self._parameters()
        if progress is not None:
            progress("start", total=cfg.steps, done=step)
        began = time.perf_counter() - elapsed
        while step < cfg.steps:
            indices = self.plan[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            optimizer.zero_grad()
            loss = self.loss([self.examples[i] for i in indices], monitor, initial_top1, indices)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            stats = monitor.stats()
            log.append(RagStepLog(step, float(loss.detach()), round(time.perf_counter() - began, 2),
                                  stats.entropy, stats.top1_changed, stats.answer_recall,
                                  stats.distinct_top1))
            if stats.warning and (not warnings or warnings[-1] != stats.warning):
                warnings.append(stats.warning)
                if progress is not None:
                    progress("warning", text=stats.warning)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(checkpoints, step, {
                    "config": asdict(cfg), "run": run, **self._weights_state(optimizer, schedule),
                    "initial_top1": initial_top1, "monitor": monitor,
                    "log": [asdict(r) for r in log], "warnings": warnings,
                    "seconds": time.perf_counter() - began})
            if progress is not None:
                progress("step", step=step, loss=float(loss.detach()), stats=stats)
        self.gen.model.eval()
        self.query_model.eval()
        report = RagTrainReport(output, step, time.perf_counter() - began, resumed_from,
                                tuple(log), tuple(warnings))
        self.save(output, report)
        return report

    def _optimizer(self) -> tuple[Any, Any]:
        """AdamW over the generator's trainable weights (and the query encoder's, when it
        trains, at its own rate), with linear warm-up and decay over ``config.steps``."""
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        cfg = self.config
        gen_params = [p for p in self.gen.model.parameters() if p.requires_grad]
        groups = [{"params": gen_params, "lr": cfg.lr}]
        if cfg.train_query_encoder:
            groups.append({"params": list(self.query_model.parameters()), "lr": cfg.query_lr})
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = transformers.get_linear_schedule_with_warmup(
            optimizer, int(cfg.warmup * cfg.steps), cfg.steps)
        return optimizer, schedule

    def _weights_state(self, optimizer: Any, schedule: Any) -> dict[str, Any]:
        """The checkpoint's weights part: trainable generator weights, query encoder,
        optimiser and schedule (what ``train`` restores on resuming)."""
        return {"generator": trainable_state(self.gen.model),
                "query_model": self.query_model.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}

    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint must match besides the config: the data, index and generator."""
        digest = hashlib.sha256()
        for ex in self.examples:
            digest.update(f"{ex.question}\x00{ex.answers[0]}\x01".encode())
        return {"examples": f"{len(self.examples)}:{digest.hexdigest()[:16]}",
                "collection": f"{_location(self.col)}@{self.passages.generation}",
                "generator": self.gen.name}

    @staticmethod
    def _load_trainable(module: Any, saved: dict[str, Any]) -> None:
        torch = require("torch", "models")
        named = dict(module.named_parameters())
        missing = [name for name in saved if name not in named]
        if missing:
            raise BadInputError(f"the checkpoint has weights this generator lacks, e.g. "
                                f"{missing[0]!r}; resume with the same --generator")
        with torch.no_grad():
            for name, value in saved.items():
                named[name].copy_(value)

    def save(self, output: Path, report: RagTrainReport) -> None:
        """``generator/`` (a model folder, LoRA merged), ``query_encoder/`` and the run log.

        Use them with ``ragmix ask --generator OUT/generator --query-encoder
        OUT/query_encoder -c COLLECTION``.
        """
        output.mkdir(parents=True, exist_ok=True)
        if self.lora is not None:  # training is over: merge in place, no second copy
            self.gen.model = self.lora.merge_and_unload()
            self.lora = None
        self.gen.model.save_pretrained(output / "generator")
        self.gen.tokenizer.save_pretrained(output / "generator")
        self.query_model.save(str(output / "query_encoder"))
        (output / RUN_FILE).write_text(json.dumps({
            "config": asdict(self.config), "collection": _location(self.col),
            "document_encoder": self.col.manifest.encoder, "generator": self.gen.name,
            "examples": len(self.examples), "steps": report.steps,
            "seconds": round(report.seconds, 1), "resumed_from": report.resumed_from,
            "warnings": list(report.warnings), "log": [asdict(r) for r in report.log]},
            indent=1))


def _location(col: Any) -> str:
    """The collection's folder, resolved, or its URL (no password) when it is in a database."""
    return col.location if col.directory is None else str(col.directory.resolve())


def _hit(row: ChunkRow, rank: int, words: int) -> Hit:
    text = " ".join(row.text.split()[:words])
    return Hit(row.chunk_id, row.doc_id, text, 0.0, 0.0, rank + 1, title=row.title)


def _query_model(encoder_name: str) -> Any:
    """The collection's encoder as a trainable SentenceTransformer (the query tower of two)."""
    from ragmix.encoders import load_encoder

    encoder = load_encoder(encoder_name)
    model = getattr(encoder, "query_model", None) or getattr(encoder, "model", None)
    if model is None or not hasattr(model, "preprocess"):
        raise BadInputError(f"the collection's encoder {encoder_name!r} cannot be trained; "
                            "joint training needs a sentence-transformers encoder (minilm or "
                            "a folder)")
    return model
