"""``ragmix eval``: retrieval and QA quality on benchmark data, as a table and report files.

Examples::

    ragmix eval retrieval --data-dir ../shared/data/scifact -r bm25 -r hybrid
    ragmix eval retrieval --corpus corpus.jsonl --queries queries.jsonl \\
        --qrels qrels/test.tsv --collection scifact-col --out eval-results/scifact
    ragmix eval qa --questions ../shared/data/squad-open/dev-questions.jsonl \\
        --corpus ../shared/data/squad-open/paragraphs.jsonl --limit 500 -r bm25 \\
        -m stuff -m rag-sequence -m rag-token --decoding grounded --decoding free
"""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from ragmix.cli.options import (
    dtype_option,
    fusion_option,
    query_encoder_option,
    rerank_options,
    rerank_model_label,
    reranker_from_options,
    retrieval_option,
    retrieval_with_old_mode,
    scoring_option,
)
from ragmix.cli.qa_options import qa_decoding_option, qa_mode_option, qa_runs
from ragmix.modes import DEFAULT_GENERATOR

err = Console(stderr=True)
out = Console()

DEFAULT_EVAL_MODES = ("dense", "bm25", "hybrid")

encoder_option = click.option(
    "--encoder", default="minilm", show_default=True,
    help="minilm, hashing-DIM or a local folder; used when the collection is built.")
out_option = click.option("--out", "out_dir", type=click.Path(file_okay=False),
                          default="eval-results", show_default=True,
                          help="Folder for results.json and report.md.")


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval (BEIR layout) and question answering (SQuAD/NQ-open JSONL)."""


def _beir_paths(data_dir, split, corpus, queries, qrels):
    """(corpus, queries, qrels) paths from --data-dir or the three explicit options."""
    from ragmix.evaluation.datasets import beir_paths

    explicit = {"--corpus": corpus, "--queries": queries, "--qrels": qrels}
    if data_dir is not None:
        given = [flag for flag, value in explicit.items() if value is not None]
        if given:
            raise click.UsageError(f"--data-dir replaces {', '.join(given)}; give one or the other")
        return beir_paths(data_dir, split)
    missing = [flag for flag, value in explicit.items() if value is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or give --data-dir DIR)")
    return Path(corpus), Path(queries), Path(qrels)


def _default_collection(out_dir: str, corpus: Path, encoder: str) -> Path:
    """OUT/collection-DATASET-ENCODER: one per corpus, reused by later runs."""
    from ragmix.encoders import canonical_name

    dataset = corpus.resolve().parent.name or "corpus"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{dataset}-{canonical_name(encoder)}").strip("-")
    return Path(out_dir) / f"collection-{slug}"


def metrics_table(results: dict[str, dict[str, float]], columns, *, title: str) -> Table:
    """One row per mode, one column per metric, plus mean latency."""
    from ragmix.evaluation.report import column_label

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1, 0, 0))  # fits 80 columns
    table.add_column("mode", no_wrap=True)
    for column in (*map(column_label, columns), "ms/q"):
        table.add_column(column, justify="right", no_wrap=True)
    for mode, values in results.items():
        table.add_row(mode, *(f"{values[c]:.3f}" for c in columns),
                      f"{values['ms/q']:.1f}")
    return table


def _indexed(col_dir: Path, corpus: Path, encoder: str, dtype: str):
    """The collection in ``col_dir``, built from or brought up to date with ``corpus``."""
    from ragmix.cli.progress import RichProgress
    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.store.manifest import MANIFEST_NAME

    ctx = click.get_current_context()
    explicit_encoder = ctx.get_parameter_source("encoder") is click.core.ParameterSource.COMMANDLINE
    exists = (col_dir / MANIFEST_NAME).exists()
    err.print(f"{'updating' if exists else 'building'} collection {col_dir}")
    with RichProgress(err) as progress:
        col, indexed = index_corpus(col_dir, corpus, progress=progress, dtype=dtype,
                                    encoder=encoder if explicit_encoder or not exists else None)
    if indexed.skipped:
        err.print(f"[yellow]{len(indexed.skipped)} corpus row(s) not indexed[/], e.g. "
                  f"{indexed.skipped[0].source}: {indexed.skipped[0].reason}")
    return col


@eval_group.command("retrieval")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False),
              help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")
@click.option("--split", default="test", show_default=True, help="Qrels split with --data-dir.")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False),
              help="BEIR corpus.jsonl (_id, title, text).")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False),
              help="BEIR queries.jsonl (_id, text).")
@click.option("--qrels", type=click.Path(exists=True, dir_okay=False),
              help="Judgements: BEIR TSV (query-id, corpus-id, score) or TREC qrels.")
@retrieval_with_old_mode(multiple=True,
                         help_text="Retrieval mode; repeat to compare several "
                                   f"[default: {', '.join(DEFAULT_EVAL_MODES)}].")
@fusion_option
@click.option("--collection", "-c", "collection_dir", type=click.Path(file_okay=False),
              help="Collection of the corpus: built if missing, reused (and completed) if "
                   "present [default: OUT/collection-DATASET-ENCODER].")
@encoder_option
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N judged queries (a quick run).")
@rerank_options
@out_option
@dtype_option
def retrieval(data_dir, split, corpus, queries, qrels, retrieval, fusion, collection_dir,
              encoder, limit, rerank, rerank_model, rerank_depth, rerank_weight, out_dir, dtype):
    """nDCG@10, MRR@10 and recall@1/5/10/20/100 of each retrieval mode on BEIR data.

    Documents are ranked at their best chunk; the numbers match trec_eval's.
    Writes OUT/results.json (with per-query values), OUT/report.md, and the
    plots OUT/recall_at_k.png and OUT/latency.png.

    \b
    ragmix eval retrieval --data-dir ../shared/data/scifact -r bm25
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.dtypes import resolve_dtype
    from ragmix.evaluation.datasets import judged_queries, load_qrels, load_queries
    from ragmix.evaluation.report import RETRIEVAL_COLUMNS
    from ragmix.evaluation.retrieval_eval import run_retrieval_eval
    from ragmix.evaluation.retrieval_metrics import latency_summary

    dtype = resolve_dtype(dtype)
    corpus, queries_path, qrels_path = _beir_paths(data_dir, split, corpus, queries, qrels)
    judgements = load_qrels(qrels_path)
    texts = judged_queries(load_queries(queries_path), judgements)
    if limit is not None:
        judgements = dict(list(judgements.items())[:limit])
    col_dir = (Path(collection_dir) if collection_dir
               else _default_collection(out_dir, corpus, encoder))
    col = _indexed(col_dir, corpus, encoder, dtype)
    with col:
        reranker = reranker_from_options(rerank, rerank_model, rerank_weight, dtype, col)
        with RichProgress(err) as progress:
            result = run_retrieval_eval(
                col, texts, judgements, out_dir,
                modes=retrieval or DEFAULT_EVAL_MODES,  # SPLADE encodes the corpus: when asked
                fusion=fusion, reranker=reranker, rerank_depth=rerank_depth,
                data={"corpus": corpus, "queries": queries_path, "qrels": qrels_path,
                      "limit": limit},
                settings={"dtype": dtype, "rerank": rerank,
                          "rerank_model": rerank_model_label(rerank_model),
                          # a spec's own @WEIGHTs say it (in "rerank") when it has them
                          "rerank_weight": (rerank_weight if rerank and not {"@", ","} & set(rerank)
                                            else None)},
                progress=progress)
    if result.plots_skipped:
        err.print(f"[yellow]no plots:[/] {result.plots_skipped}")
    rows = {mode: {**r.metrics, "ms/q": latency_summary(r.latency_s.values())["mean"]}
            for mode, r in result.reports.items()}
    out.print(metrics_table(rows, RETRIEVAL_COLUMNS,
                            title=f"{result.n_queries} queries, {result.documents} documents"))
    err.print(f"wrote {result.results_path} and {result.report_path}")


def _qa_collection(collection_dir, corpus, encoder: str, out_dir: str, dtype: str,
                   query_encoder: str | None):
    """The collection eval qa answers from: --corpus indexed into it first, and with
    --query-encoder's tower for the queries."""
    from ragmix.store import Collection

    if corpus is not None:
        col_dir = Path(collection_dir) if collection_dir else _default_collection(
            out_dir, Path(corpus), encoder)
        col = _indexed(col_dir, Path(corpus), encoder, dtype)
    elif collection_dir is not None:
        col = Collection.open(collection_dir, dtype=dtype)
    else:
        raise click.UsageError("give --collection DIR, --corpus FILE, or both")
    if query_encoder is not None:
        from ragmix.encoders import load_encoder

        try:
            col.use_query_encoder(load_encoder(query_encoder, dtype=dtype))
        except BaseException:
            col.close()
            raise
    return col


@eval_group.command("qa")
@click.option("--questions", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL: question plus answers (SQuAD-open) or answer (NQ-open).")
@click.option("--collection", "-c", "collection_dir", type=click.Path(file_okay=False),
              help="Collection to answer from "
                   "[default with --corpus: OUT/collection-DATASET-ENCODER].")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False),
              help="BEIR-style corpus.jsonl to index into the collection first.")
@encoder_option
@qa_mode_option
@qa_decoding_option
@retrieval_option
@fusion_option
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Passages given to the generator.")
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), default=None,
              help="rag-*: temperature of the prior p(z|x) [default: 0.05 dense, 1 bm25, "
                   "0.1 hybrid].")
@click.option("--beams", type=click.IntRange(min=1), default=None,
              help="rag-*: beam size [default: 4 for rag-sequence and grounded, 1 for rag-token].")
@scoring_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Sample N questions.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit sample.")
@click.option("--generator", default=DEFAULT_GENERATOR, show_default=True, envvar="RAGMIX_GENERATOR",
              help="smollm2-squad (SmolLM2 with ragmix's SQuAD reader adapter), smollm2 "
                   "(as packaged) or a local Hugging Face model folder.")
@query_encoder_option
@click.option("--no-generate", is_flag=True, help="Measure answer recall@k only (no generator).")
@click.option("--regex", is_flag=True, help="Gold answers are regular expressions (CuratedTREC).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@rerank_options
@out_option
@dtype_option
def qa(questions, collection_dir, corpus, encoder, modes, decodings, retrieval, fusion, k, tau,
       beams, scoring, limit, seed, generator, query_encoder, no_generate, regex, max_new_tokens,
       rerank, rerank_model, rerank_depth, rerank_weight, out_dir, dtype):
    """Exact match, token F1, contains and answer recall@1/5/10/20 of each generation mode.

    Every --mode runs with each --decoding it has (one row each, named MODE[-DECODING]:
    stuff-grounded, rag-sequence-fast), on the same sampled questions; answer recall
    comes from the --retrieval mode (default hybrid). Answers are written to
    OUT/.journal as they finish: after a crash, the same command resumes where it stopped.

    \b
    ragmix eval qa --questions ../shared/data/squad-open/dev-questions.jsonl \\
        --corpus ../shared/data/squad-open/paragraphs.jsonl --limit 200 -r bm25 \\
        -m stuff -m rag-sequence --decoding grounded --decoding free
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.dtypes import resolve_dtype
    from ragmix.evaluation.qa_eval import QASample, run_qa_eval

    dtype = resolve_dtype(dtype)
    runs = () if no_generate else qa_runs(modes, decodings)
    sample = QASample.load(questions, limit=limit, seed=seed)
    col = _qa_collection(collection_dir, corpus, encoder, out_dir, dtype, query_encoder)
    try:
        reranker = reranker_from_options(rerank, rerank_model, rerank_weight, dtype, col)
    except BaseException:
        col.close()
        raise
    with col:
        gen = None
        if not no_generate:
            from ragmix.generation import load_generator

            with err.status(f"loading generator {generator}"):
                gen = load_generator(generator, dtype=dtype)
        with RichProgress(err) as progress:
            result = run_qa_eval(
                col, gen, sample, out_dir, runs=runs, retrieval=retrieval, fusion=fusion, k=k,
                tau=tau, beams=beams, scoring=scoring, max_new_tokens=max_new_tokens,
                regex=regex, reranker=reranker, rerank_depth=rerank_depth,
                generator_name=generator, query_encoder=query_encoder,
                rerank_model=rerank_model_label(rerank_model),
                dtype=dtype, progress=progress,
                on_resume=lambda name, path: err.print(f"resuming {name} from {path}"))
    if result.plots_skipped:
        err.print(f"[yellow]no plots:[/] {result.plots_skipped}")
    out.print(_qa_table(result))
    err.print(f"wrote {result.results_path} and {result.report_path}")


def _qa_table(result) -> Table:
    """One row per run, one column per metric any run has."""
    names = list(dict.fromkeys(n for r in result.reports.values() for n in r.metrics))
    table = Table(title=f"{result.n_questions} questions", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    short = {"retrieval_ms": "ret ms", "s_per_question": "s/q", "em": "EM", "f1": "F1"}
    for column in ("mode", *names):
        table.add_column(short.get(column, column.replace("answer_recall", "AR")),
                         justify="right", no_wrap=True)
    for mode, report in result.reports.items():
        table.add_row(mode, *(f"{report.metrics[n]:.3f}" if n in report.metrics else "-"
                              for n in names))
    return table
