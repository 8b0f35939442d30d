"""``ragmix eval``: retrieval and QA quality on benchmark data, as a table and report files.

Examples::

    ragmix eval retrieval --data-dir ../shared/data/scifact --mode bm25 --mode hybrid
    ragmix eval retrieval --corpus corpus.jsonl --queries queries.jsonl \\
        --qrels qrels/test.tsv --collection scifact-col --out eval-results/scifact
    ragmix eval qa --questions ../shared/data/squad-open/dev-questions.jsonl \\
        --corpus ../shared/data/squad-open/paragraphs.jsonl --limit 500 --retrieval bm25 \
        --mode stuff --mode rag-sequence --mode rag-token
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import click

from ragmix.modes import DEFAULT_GENERATOR
from rich import box
from rich.console import Console
from rich.table import Table

from ragmix.cli.options import (
    MODES,
    dtype_option,
    fusion_option,
    query_encoder_option,
    rerank_options,
    reranker_from_options,
    retrieval_option,
    scoring_option,
)
from ragmix.modes import QA_MODES, split_qa_mode
from ragmix.retrieval.retrievers import DEFAULT_FUSION

err = Console(stderr=True)
out = Console()

mode_option = click.option("--mode", "-m", "modes", type=click.Choice(MODES), multiple=True,
                           help="Retrieval mode; repeat to compare several.")
qa_mode_option = click.option(
    "--mode", "-m", "modes", type=click.Choice(QA_MODES), multiple=True,
    help="How the generator uses the passages, and its decoding: rag-sequence-fast is "
         "RAG-Sequence with fast decoding, *-grounded answers with a verbatim span "
         "[default: stuff]; repeat to compare several.")
encoder_option = click.option(
    "--encoder", default="minilm", show_default=True,
    help="minilm, hashing-DIM or a local folder; used when the collection is built.")
out_option = click.option("--out", "out_dir", type=click.Path(file_okay=False),
                          default="eval-results", show_default=True,
                          help="Folder for results.json and report.md.")

DEFAULT_EVAL_MODES = ("dense", "bm25", "hybrid")


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


def _collection_meta(col_dir: Path, info: dict) -> dict:
    return {"path": str(col_dir), **{key: info[key] for key in
            ("encoder", "documents", "chunks", "chunker", "index")}}


def _label(mode: str, fusion: str) -> str:
    return mode if mode != "hybrid" or fusion == DEFAULT_FUSION else f"hybrid-{fusion}"


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
@mode_option
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
def retrieval(data_dir, split, corpus, queries, qrels, modes, fusion, collection_dir, encoder,
              limit, rerank, rerank_model, rerank_depth, rerank_weight, out_dir, dtype):
    """nDCG@10, MRR@10 and recall@1/5/10/20/100 of each mode (default: all) on BEIR data.

    Documents are ranked at their best chunk; the numbers match trec_eval's.
    Writes OUT/results.json (with per-query values), OUT/report.md, and the
    plots OUT/recall_at_k.png and OUT/latency.png.

    \b
    ragmix eval retrieval --data-dir ../shared/data/scifact --mode bm25
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.dtypes import resolve_dtype
    from ragmix.evaluation.datasets import judged_queries, load_qrels, load_queries
    from ragmix.evaluation.report import (
        RETRIEVAL_COLUMNS,
        retrieval_markdown,
        retrieval_results,
        run_info,
        write_report,
    )
    from ragmix.evaluation.retrieval_metrics import latency_summary
    from ragmix.evaluation.run_retrieval import CHUNKS_PER_DOC, evaluate_retrieval

    dtype = resolve_dtype(dtype)
    corpus, queries_path, qrels_path = _beir_paths(data_dir, split, corpus, queries, qrels)
    judgements = load_qrels(qrels_path)
    texts = judged_queries(load_queries(queries_path), judgements)
    if limit is not None:
        judgements = dict(list(judgements.items())[:limit])
    modes = modes or DEFAULT_EVAL_MODES  # SPLADE encodes the corpus: only when asked

    col_dir = (Path(collection_dir) if collection_dir
               else _default_collection(out_dir, corpus, encoder))
    col = _indexed(col_dir, corpus, encoder, dtype)
    reports = {}
    with col:
        reranker = reranker_from_options(rerank, rerank_model, rerank_weight, dtype, col)
        searcher = col.searcher(fusion=fusion, rerank=reranker, rerank_depth=rerank_depth)
        with RichProgress(err) as progress:
            for mode in modes:
                label = _label(mode, fusion) + ("" if reranker is None else f"+{reranker.name}")
                reports[label] = evaluate_retrieval(
                    searcher, texts, judgements, mode=mode, progress=progress)
        info = col.info()

    meta = {
        **run_info(),
        "data": {"corpus": str(corpus), "queries": str(queries_path), "qrels": str(qrels_path),
                 "judged_queries": len(judgements), "limit": limit},
        "collection": _collection_meta(col_dir, info),
        "settings": {"k": 100, "chunk_depth": 100 * CHUNKS_PER_DOC, "fusion": fusion,
                     "pooling": "max over chunks", "dtype": dtype,
                     "rerank": rerank, "rerank_model": rerank_model,
                     "rerank_depth": rerank_depth if rerank else None,
                     "rerank_weight": rerank_weight if rerank else None},
    }
    plots = _write_plots(out_dir, {mode: r.metrics for mode, r in reports.items()},
                         {mode: r.latency_s.values() for mode, r in reports.items()},
                         prefix="recall", what="query (search only)")
    results_path, report_path = write_report(
        out_dir, retrieval_results(reports, meta), retrieval_markdown(reports, meta) + plots)
    rows = {mode: {**r.metrics, "ms/q": latency_summary(r.latency_s.values())["mean"]}
            for mode, r in reports.items()}
    out.print(metrics_table(rows, RETRIEVAL_COLUMNS,
                            title=f"{len(judgements)} queries, {info['documents']} documents"))
    err.print(f"wrote {results_path} and {report_path}")


def _write_plots(out_dir, metrics_by_mode, seconds_by_mode, *, prefix: str, what: str) -> str:
    """Draw recall_at_k.png and latency.png into OUT; return the report's Markdown for them.

    Without matplotlib the plots are skipped with a note: the numbers matter more.
    """
    from ragmix.errors import MissingExtraError
    from ragmix.evaluation.plots import LATENCY_PNG, RECALL_PNG, plot_latency_histogram, \
        plot_recall_curves

    try:
        label = "answer recall@k" if prefix == "answer_recall" else "recall@k"
        plot_recall_curves(metrics_by_mode, Path(out_dir) / RECALL_PNG, prefix=prefix,
                           title=label, ylabel=label)
        plot_latency_histogram(seconds_by_mode, Path(out_dir) / LATENCY_PNG,
                               title=f"Latency per {what}")
    except MissingExtraError as exc:
        err.print(f"[yellow]no plots:[/] {exc}")
        return ""
    return f"## Plots\n\n![{label}]({RECALL_PNG})\n\n![latency]({LATENCY_PNG})\n"


def _journal_path(out_dir: str | Path, mode: str, run_key: dict) -> Path:
    """Where a QA run journals its answers: one file per mode and run, under OUT/.journal."""
    digest = hashlib.sha1(json.dumps(run_key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(out_dir) / ".journal" / f"qa-{mode}-{digest}.jsonl"


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
def qa(questions, collection_dir, corpus, encoder, modes, retrieval, fusion, k, tau, beams,
       scoring, limit, seed, generator, query_encoder, no_generate, regex, max_new_tokens,
       rerank, rerank_model, rerank_depth, rerank_weight, out_dir, dtype):
    """Exact match, token F1, contains and answer recall@1/5/10/20 of each generation mode.

    The same sampled questions for every mode; answer recall comes from the
    --retrieval mode (default hybrid). Answers are written to OUT/.journal as
    they finish: after a crash, the same command resumes where it stopped.

    \b
    ragmix eval qa --questions ../shared/data/squad-open/dev-questions.jsonl \\
        --corpus ../shared/data/squad-open/paragraphs.jsonl --limit 200 --mode bm25
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.dtypes import resolve_dtype
    from ragmix.evaluation.datasets import load_qa
    from ragmix.evaluation.report import qa_markdown, qa_results, run_info, write_report
    from ragmix.evaluation.run_qa import evaluate_qa, sample_questions
    from ragmix.store import Collection

    dtype = resolve_dtype(dtype)
    examples = sample_questions(load_qa(questions), limit, seed)
    if corpus is not None:
        col_dir = Path(collection_dir) if collection_dir else _default_collection(
            out_dir, Path(corpus), encoder)
        col = _indexed(col_dir, Path(corpus), encoder, dtype)
    elif collection_dir is not None:
        col_dir, col = Path(collection_dir), Collection.open(collection_dir, dtype=dtype)
    else:
        raise click.UsageError("give --collection DIR, --corpus FILE, or both")
    if query_encoder is not None:
        from ragmix.encoders import load_encoder

        try:
            col.use_query_encoder(load_encoder(query_encoder, dtype=dtype))
        except BaseException:
            col.close()
            raise
    modes = (retrieval,) if no_generate else (modes or ("stuff",))
    reports = {}
    try:
        reranker = reranker_from_options(rerank, rerank_model, rerank_weight, dtype, col)
    except BaseException:
        col.close()
        raise
    if reranker is not None and tau is None:
        tau = reranker.tau
    with col:
        gen = None
        if not no_generate:
            from ragmix.generation import load_generator

            with err.status(f"loading generator {generator}"):
                gen = load_generator(generator, dtype=dtype)
        run_key = {"collection": str(col_dir.resolve()), "questions": str(Path(questions).resolve()),
                   "limit": limit, "seed": seed, "fusion": fusion, "query_encoder": query_encoder,
                   "dtype": dtype, "rerank": reranker and reranker.name,
                   "rerank_model": rerank_model, "rerank_depth": rerank_depth}
        journals = {mode: _journal_path(out_dir, mode, run_key) for mode in modes}
        for mode, path in journals.items():
            if path.exists():
                err.print(f"resuming {mode} from {path}")
        with RichProgress(err) as progress:
            for mode in modes:
                generation, decoding = split_qa_mode(mode)
                reports[mode] = evaluate_qa(
                    col.searcher(fusion=fusion, rerank=reranker, rerank_depth=rerank_depth),
                    gen, examples, mode=retrieval, k=k, regex=regex,
                    max_new_tokens=max_new_tokens, progress=progress,
                    generation="stuff" if no_generate else generation, tau=tau, beams=beams,
                    decoding=decoding, scoring=scoring, journal=journals[mode])
        info = col.info()
    meta = {**run_info(),
            "data": {"questions": str(questions), "n_questions": len(examples), "limit": limit,
                     "seed": seed, "regex": regex},
            "collection": _collection_meta(col_dir, info),
            "settings": {"k": k, "retrieval": retrieval, "fusion": fusion, "tau": tau,
                         "beams": beams, "scoring": scoring, "max_new_tokens": max_new_tokens,
                         "generator": None if no_generate else generator,
                         "query_encoder": query_encoder, "dtype": dtype,
                         "rerank": reranker and reranker.name, "rerank_depth": rerank_depth}}
    plots = _write_plots(out_dir, {mode: r.metrics for mode, r in reports.items()},
                         {mode: [q.retrieval_s + (q.generation_s or 0.0) for q in r.results]
                          for mode, r in reports.items()},
                         prefix="answer_recall",
                         what="question (retrieval only)" if no_generate else "question")
    results_path, report_path = write_report(
        out_dir, qa_results(reports, meta), qa_markdown(reports, meta) + plots)
    for path in journals.values():  # the report holds every answer now
        path.unlink(missing_ok=True)
    names = list(dict.fromkeys(n for r in reports.values() for n in r.metrics))
    table = Table(title=f"{len(examples)} questions", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1, 0, 0))
    short = {"retrieval_ms": "ret ms", "s_per_question": "s/q", "em": "EM", "f1": "F1"}
    for column in ("mode", *names):
        table.add_column(short.get(column, column.replace("answer_recall", "AR")),
                         justify="right", no_wrap=True)
    for mode, report in reports.items():
        table.add_row(mode, *(f"{report.metrics[n]:.3f}" if n in report.metrics else "-"
                              for n in names))
    out.print(table)
    err.print(f"wrote {results_path} and {report_path}")
