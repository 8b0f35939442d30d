"""``ragmix train late-interaction``: fine-tune a ColBERT-style MaxSim reranker.

Examples::

    ragmix train late-interaction --beir ../shared/data/scifact --out models/scifact-colbert
    ragmix train late-interaction --squad ../shared/data/squad-open/train-v1.1.json.gz \\
        --limit 3000 --out models/squad-colbert
    ragmix search "..." -c COL --rerank late-interaction --rerank-model models/scifact-colbert
"""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.console import Console

from ragmix.cli.options import dtype_option

err = Console(stderr=True)


@click.command("late-interaction")
@click.option("--beir", "beir_dir", type=click.Path(file_okay=False, exists=True),
              help="BEIR folder: queries.jsonl, corpus.jsonl, qrels/SPLIT.tsv.")
@click.option("--split", default="train", show_default=True, help="BEIR qrels split to train on.")
@click.option("--squad", "squad_file", type=click.Path(dir_okay=False, exists=True),
              help="SQuAD v1.1 JSON (.json or .json.gz): each question's paragraph is its positive.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the trained model (--rerank-model takes it).")
@click.option("--base", default="minilm", show_default=True,
              help="Starting model: minilm (packaged), a sentence-transformers folder, or a "
                   "late-interaction folder to train further.")
@click.option("--negatives", default="bm25", show_default=True,
              help="Hard negatives: bm25, model (the shared encoder's dense embedding), "
                   "bm25,model or none (in-batch only).")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=1, show_default=True,
              help="Hard negatives per query, per source, per step.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Train exactly this many steps instead (as many epochs as that takes).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Queries per step (in-batch negatives).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="GradCache chunk: lower it if memory runs short.")
@click.option("--lr", type=float, default=3e-5, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Softmax temperature over MaxSim sums (ColBERT: 1).")
@click.option("--learn-temperature", is_flag=True, help="Learn the temperature (CLIP-style).")
@click.option("--dim", type=click.IntRange(min=0), default=128, show_default=True,
              help="Width of the learned token projection (ColBERT: 128); 0 keeps the "
                   "encoder's own (384 for MiniLM).")
@click.option("--query-length", type=click.IntRange(min=2), default=32, show_default=True,
              help="Query tokens kept.")
@click.option("--max-seq-length", type=click.IntRange(min=8), default=256, show_default=True,
              help="Passage tokens kept.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on a seeded sample of this many queries.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Steps between checkpoints (OUT/checkpoints, deleted when training ends).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT's last checkpoint, if any.")
@dtype_option
def late_interaction_command(beir_dir, split, squad_file, out_dir, base, negatives,
                             hard_negatives, epochs, steps, batch_size, chunk_size, lr,
                             temperature, learn_temperature, dim, query_length, max_seq_length,
                             limit, seed, checkpoint_every, resume, dtype):
    """Train MaxSim over per-token vectors (ColBERT) with InfoNCE, in-batch and hard negatives.

    An interrupted run resumes from its last checkpoint when started again
    with the same options.
    """
    from ragmix.cli.train_cmd import _negatives  # here: train_cmd imports this module
    from ragmix.cli.training_ui import training_bars, training_set
    from ragmix.rerank.late_interaction import LateInteractionSettings
    from ragmix.training.late_interaction import late_interaction_trainer
    from ragmix.training.retriever_config import RetrieverTrainConfig

    data = training_set(err, beir_dir, split, squad_file, limit, seed)
    if steps is not None:  # enough epochs for the steps; training stops at them
        per_epoch = math.ceil(sum(len(p.positives) for p in data.pairs) / batch_size)
        epochs = math.ceil(steps / per_epoch)
    config = RetrieverTrainConfig(
        epochs=epochs, batch_size=batch_size, chunk_size=chunk_size, lr=lr,
        temperature=temperature, learn_temperature=learn_temperature,
        negatives=_negatives(negatives), hard_negatives=hard_negatives,
        max_seq_length=max_seq_length, dtype=dtype, seed=seed)
    settings = LateInteractionSettings(dim=dim or None, query_length=query_length)
    err.print(f"{len(data.pairs)} queries, {len(data.corpus)} passages; negatives: "
              f"in-batch{''.join(' + ' + n for n in config.negatives)}; "
              f"{f'{dim}-d projection' if dim else 'no projection'}")
    trainer = late_interaction_trainer(base, data, config, settings=settings)
    bars, progress = training_bars(err, temperature=lambda: trainer.temperature, tau_digits=3)
    with bars:  # ragmix's errors (a checkpoint made with other options) become one line
        report = trainer.train(out_dir, resume=resume, checkpoint_every=checkpoint_every,
                               max_steps=steps, progress=progress)
    first, last = report.log[0].loss, report.log[-1].loss
    resumed = f" (resumed from step {report.resumed_from})" if report.resumed_from else ""
    err.print(f"trained {report.steps} steps{resumed} in {report.seconds:.0f} s, loss "
              f"{first:.3f} -> {last:.3f}; saved to {Path(out_dir)}")
    err.print(f"use it: ragmix search QUERY -c COL --rerank late-interaction "
              f"--rerank-model {out_dir}")
