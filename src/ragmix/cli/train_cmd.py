"""``ragmix train``: fine-tune the retriever (DPR) on your queries and passages.

Examples::

    ragmix train retriever --beir ../shared/data/scifact --out models/scifact-minilm
    ragmix train retriever --squad ../shared/data/squad-open/train-v1.1.json.gz \\
        --limit 5000 --negatives bm25,model --two-tower --out models/squad-dpr
    ragmix index corpus/ --encoder models/scifact-minilm --collection trained-col
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn

from ragmix.cli.options import dtype_option

err = Console(stderr=True)


@click.group("train")
def train_group() -> None:
    """Fine-tune ragmix's models on your data."""


def _negatives(text: str) -> tuple[str, ...]:
    from ragmix.training.retriever_config import NEGATIVE_KINDS

    kinds = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if kinds in ((), ("none",)):
        return ()
    bad = [k for k in kinds if k not in NEGATIVE_KINDS]
    if bad:
        raise click.BadParameter(f"{bad[0]!r}; use a comma list of {', '.join(NEGATIVE_KINDS)} "
                                 "or 'none' (in-batch negatives only)", param_hint="--negatives")
    return kinds


@train_group.command("retriever")
@click.option("--beir", "beir_dir", type=click.Path(file_okay=False, exists=True),
              help="BEIR folder: queries.jsonl, corpus.jsonl, qrels/SPLIT.tsv.")
@click.option("--split", default="train", show_default=True, help="BEIR qrels split to train on.")
@click.option("--squad", "squad_file", type=click.Path(dir_okay=False, exists=True),
              help="SQuAD v1.1 JSON (.json or .json.gz): each question's paragraph is its positive.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the trained model (sentence-transformers format).")
@click.option("--base", default="minilm", show_default=True,
              help="Starting model: minilm (packaged) or a sentence-transformers folder.")
@click.option("--negatives", default="bm25", show_default=True,
              help="Hard negatives: bm25, model, bm25,model or none (in-batch only).")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=1, show_default=True,
              help="Hard negatives per query, per source, per step.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Queries per step (in-batch negatives).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="GradCache chunk: lower it if memory runs short (same maths, other dropout masks).")
@click.option("--lr", type=float, default=3e-5, show_default=True)
@click.option("--temperature", type=float, default=0.05, show_default=True)
@click.option("--learn-temperature", is_flag=True, help="Learn the temperature (CLIP-style).")
@click.option("--two-tower", is_flag=True, help="Separate query and passage encoders (DPR).")
@click.option("--max-seq-length", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on a seeded sample of this many queries.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Steps between checkpoints (OUT/checkpoints, deleted when training ends).")
@click.option("--no-resume", is_flag=True, help="Start over even if OUT has checkpoints.")
@dtype_option
def retriever_command(beir_dir, split, squad_file, out_dir, base, negatives, hard_negatives,
                      epochs, batch_size, chunk_size, lr, temperature, learn_temperature,
                      two_tower, max_seq_length, limit, seed, checkpoint_every, no_resume, dtype):
    """Train a bi-encoder contrastively (InfoNCE) with in-batch and hard negatives.

    An interrupted run resumes from its last checkpoint when started again
    with the same options.
    """
    from ragmix.cli.training_ui import one_source, training_bars, training_set
    from ragmix.training.retriever import RetrieverTrainer
    from ragmix.training.retriever_config import RetrieverTrainConfig

    one_source(beir_dir, squad_file)
    config = RetrieverTrainConfig(
        epochs=epochs, batch_size=batch_size, chunk_size=chunk_size, lr=lr,
        temperature=temperature, learn_temperature=learn_temperature,
        negatives=_negatives(negatives), hard_negatives=hard_negatives, two_tower=two_tower,
        max_seq_length=max_seq_length, dtype=dtype, seed=seed)
    data = training_set(err, beir_dir, split, squad_file, limit, seed)
    err.print(f"{len(data.pairs)} queries, {len(data.corpus)} passages; negatives: "
              f"in-batch{''.join(' + ' + n for n in config.negatives)}")
    trainer = RetrieverTrainer(base, data, config)
    bars, progress = training_bars(err, temperature=lambda: trainer.temperature)
    with bars:
        report = trainer.train(out_dir, resume=not no_resume,
                               checkpoint_every=checkpoint_every, progress=progress)
    first, last = report.log[0].loss, report.log[-1].loss
    resumed = f" (resumed from step {report.resumed_from})" if report.resumed_from else ""
    err.print(f"trained {report.steps} steps{resumed} in {report.seconds:.0f} s, loss "
              f"{first:.3f} -> {last:.3f}; saved to {Path(out_dir)}")
    err.print(f"use it: ragmix index PATH --encoder {out_dir}   or   ragmix reembed "
              f"--collection DIR --encoder {out_dir} --out NEW_DIR")


@train_group.command("rag")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Questions with answers: QA JSONL (SQuAD-open, NQ-open) or SQuAD v1.1 JSON.")
@click.option("--collection", "-c", "collection_dir", required=True,
              type=click.Path(file_okay=False, exists=True),
              help="The frozen index to retrieve from (built with a sentence-transformers encoder).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoints/, generator/, query_encoder/, ragmix_rag.json.")
@click.option("--mode", type=click.Choice(("rag-sequence", "rag-token")), default="rag-sequence",
              show_default=True, help="Which marginal likelihood to train.")
@click.option("--generator", default="smollm2", show_default=True,
              help="smollm2 (packaged) or a local Hugging Face model folder.")
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--lr", type=float, default=None,
              help="Generator learning rate [default: 1e-3 with LoRA, 2e-5 with --full].")
@click.option("--query-lr", type=float, default=1e-5, show_default=True)
@click.option("--tau", type=float, default=0.05, show_default=True,
              help="Temperature of the prior p(z|x) over dense scores.")
@click.option("--full", is_flag=True, help="Fine-tune every generator weight (default: LoRA).")
@click.option("--lora-r", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--top-layers", type=click.IntRange(min=1), default=None,
              help="Adapt only the top N decoder layers: much cheaper steps on CPU "
                   "(e.g. 10 of SmolLM2's 30) [default: all].")
@click.option("--freeze-query-encoder", is_flag=True, help="Train the generator only.")
@click.option("--passage-words", type=click.IntRange(min=1), default=128, show_default=True,
              help="Cut passages to this many words in the prompts (cost grows with length).")
@click.option("--max-answer-tokens", type=click.IntRange(min=2), default=24, show_default=True)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on a seeded sample of this many questions.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-resume", is_flag=True, help="Start over even if OUT has checkpoints.")
@dtype_option
def rag_command(pairs_file, collection_dir, out_dir, mode, generator, k, steps, batch_size, lr,
                query_lr, tau, full, lora_r, top_layers, freeze_query_encoder, passage_words,
                max_answer_tokens, label_smoothing, checkpoint_every, limit, seed, no_resume,
                dtype):
    """Fine-tune the generator and the query encoder end to end (the paper's RAG training).

    Only (question, answer) pairs are needed: the passages are latent. The
    document encoder and the index stay frozen. Re-running resumes from the
    last checkpoint.

    \b
    ragmix train rag --pairs ../shared/data/squad-open/train-v1.1.json.gz \\
        -c squad-col --out runs/squad --limit 2000 --steps 300
    ragmix ask "..." -c squad-col --mode rag-sequence \\
        --generator runs/squad/generator --query-encoder runs/squad/query_encoder
    """
    import random

    from ragmix.generation import load_generator
    from ragmix.store import Collection
    from ragmix.training.pairs import load_qa_pairs
    from ragmix.training.rag import RagTrainer
    from ragmix.training.rag_config import RagTrainConfig

    config = RagTrainConfig(
        mode=mode, k=k, tau=tau, steps=steps, batch_size=batch_size,
        lr=lr if lr is not None else (2e-5 if full else 1e-3), query_lr=query_lr, lora=not full,
        lora_r=lora_r, lora_alpha=2 * lora_r, top_layers=top_layers,
        train_query_encoder=not freeze_query_encoder,
        passage_words=passage_words, max_answer_tokens=max_answer_tokens,
        label_smoothing=label_smoothing, checkpoint_every=checkpoint_every, dtype=dtype,
        seed=seed)
    examples = load_qa_pairs(pairs_file)
    if limit is not None and limit < len(examples):
        examples = random.Random(seed).sample(examples, limit)
    with Collection.open(collection_dir) as col:
        with err.status(f"loading generator {generator} and the query encoder"):
            trainer = RagTrainer(col, load_generator(generator), examples, config)
        err.print(f"{len(examples)} questions, {steps} steps of {batch_size}, k={k}, {mode}, "
                  f"{'full' if full else f'LoRA r={lora_r}'}"
                  f"{'' if freeze_query_encoder else ' + query encoder'}")
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}  H(z|x) {task.fields[h]:.2f}  "
                                   "AR@k {task.fields[ar]:.2f}  top-1 moved "
                                   "{task.fields[moved]:.0%}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err)
        task = None

        def progress(event: str, **info) -> None:
            nonlocal task
            if event == "start":
                task = bars.add_task("training", total=info["total"], completed=info["done"],
                                     loss=float("nan"), h=0.0, ar=0.0, moved=0.0)
                if info["done"]:
                    err.print(f"resuming from step {info['done']}")
            elif event == "warning":
                err.print(f"[yellow]warning:[/] {info['text']}")
            elif event == "step" and task is not None:
                s = info["stats"]
                bars.update(task, advance=1, loss=info["loss"], h=s.entropy, ar=s.answer_recall,
                            moved=s.top1_changed)

        with bars:
            report = trainer.train(out_dir, resume=not no_resume, progress=progress)
    err.print(f"trained to step {report.steps} in {report.seconds:.0f} s; saved {out_dir}/generator "
              f"and {out_dir}/query_encoder")
    err.print(f"use them: ragmix ask QUESTION -c {collection_dir} --mode {mode} "
              f"--generator {out_dir}/generator --query-encoder {out_dir}/query_encoder")
