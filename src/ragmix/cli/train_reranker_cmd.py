"""``ragmix train reranker``: train a cross-encoder on your queries, with mined hard negatives.

Examples::

    ragmix train reranker --beir ../shared/data/scifact --out models/scifact-reranker
    ragmix train reranker --squad ../shared/data/squad-open/train-v1.1.json.gz --limit 5000 \\
        --loss bce --out models/squad-reranker
    ragmix search "..." -c col --rerank cross-encoder --rerank-model models/scifact-reranker
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ragmix.cli.options import dtype_option
from ragmix.training.reranker_config import LOSSES, MINING

err = Console(stderr=True)


@click.command("reranker")
@click.option("--beir", "beir_dir", type=click.Path(file_okay=False, exists=True),
              help="BEIR folder: queries.jsonl, corpus.jsonl, qrels/SPLIT.tsv.")
@click.option("--split", default="train", show_default=True, help="BEIR qrels split to train on.")
@click.option("--squad", "squad_file", type=click.Path(dir_okay=False, exists=True),
              help="SQuAD v1.1 JSON (.json or .json.gz): a question's paragraph is its positive.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the trained cross-encoder (Hugging Face format).")
@click.option("--base", default="minilm", show_default=True,
              help="Starting model: minilm (packaged, gets a new scoring head), a local "
                   "Hugging Face / sentence-transformers folder, or a cross-encoder to go on with.")
@click.option("--loss", type=click.Choice(LOSSES), default="listwise", show_default=True,
              help="bce: pointwise (positive 1, negatives 0); listwise: softmax over each "
                   "query's [positive, negatives].")
@click.option("--negatives", type=click.IntRange(min=1), default=7, show_default=True,
              help="Hard negatives per query per step.")
@click.option("--mine", type=click.Choice(MINING), default="hybrid", show_default=True,
              help="Where hard negatives come from: hybrid (dense + BM25 fused), bm25 or dense.")
@click.option("--mine-encoder", default="minilm", show_default=True,
              help="The dense side of mining: minilm, hashing-DIM or a sentence-transformers "
                   "folder (say, one from ragmix train retriever).")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Train this many steps instead of --epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Queries per step.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Queries per forward pass: lower it if memory runs short (same maths, other "
                   "dropout masks).")
@click.option("--lr", type=float, default=3e-5, show_default=True)
@click.option("--max-length", type=click.IntRange(min=8), default=256, show_default=True,
              help="Tokens per (query, passage) pair; passages are cut to fit.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on a seeded sample of this many queries.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Steps between checkpoints (OUT/checkpoints, deleted when training ends).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT's last checkpoint, or start over.")
@dtype_option
def reranker_command(beir_dir, split, squad_file, out_dir, base, loss, negatives, mine,
                     mine_encoder, epochs, steps, batch_size, chunk_size, lr, max_length, limit,
                     seed, checkpoint_every, resume, dtype):
    """Train a cross-encoder reranker (BCE or listwise) on hard negatives from hybrid retrieval.

    An interrupted run resumes from its last checkpoint when started again
    with the same options. The result loads with --rerank cross-encoder
    --rerank-model OUT.
    """
    from ragmix.cli.training_ui import one_source, training_bars, training_set
    from ragmix.training.reranker import RerankerTrainer
    from ragmix.training.reranker_config import RerankerTrainConfig

    one_source(beir_dir, squad_file)
    config = RerankerTrainConfig(
        loss=loss, negatives=negatives, epochs=epochs, steps=steps, batch_size=batch_size,
        chunk_size=chunk_size, lr=lr, max_length=max_length, mine=mine, dtype=dtype, seed=seed)
    data = training_set(err, beir_dir, split, squad_file, limit, seed)
    err.print(f"{len(data.pairs)} queries, {len(data.corpus)} passages; {config.loss} loss, "
              f"{config.negatives} {config.mine} negatives per query")
    with err.status(f"loading {base}"):
        trainer = RerankerTrainer(base, data, config, mine_encoder=mine_encoder)
    bars, progress = training_bars(err)
    with bars:
        report = trainer.train(out_dir, resume=resume, checkpoint_every=checkpoint_every,
                               progress=progress)
    resumed = f" (resumed from step {report.resumed_from})" if report.resumed_from else ""
    if report.log:
        err.print(f"trained {report.steps} steps{resumed} in {report.seconds:.0f} s, loss "
                  f"{report.log[0].loss:.3f} -> {report.log[-1].loss:.3f}; "
                  f"{report.mined:.1f} mined negatives per query; saved to {Path(out_dir)}")
    err.print(f"use it: ragmix search QUERY -c COLLECTION --rerank cross-encoder "
              f"--rerank-model {out_dir}")

