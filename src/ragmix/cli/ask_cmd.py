"""``ragmix ask``: answer a question from a collection, with its sources and citations."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import asdict

import click
from rich.console import Console

from ragmix.cli.common import (
    collection_option,
    err,
    k_option,
    loaded_reranker,
    open_collection,
    source_option,
)
from ragmix.cli.options import (
    GENERATION_MODES,
    dtype_option,
    fusion_option,
    marginal_options,
    min_confidence_option,
    query_encoder_option,
    rerank_options,
    retrieval_option,
    store_option,
)
from ragmix.modes import (
    ASK_DEFAULT_MODE,
    DEFAULT_GENERATOR,
    GROUNDED_MODES,
    ask_decoding,
)

out = Console()


@click.command()
@click.argument("question")
@collection_option
@click.option("--mode", "-m", type=click.Choice(GENERATION_MODES), default=ASK_DEFAULT_MODE,
              show_default=True,
              help="stuff: the top-k passages in one prompt; rag-sequence / rag-token: the "
                   "paper's marginals over the passages, sources by posterior.")
@retrieval_option
@k_option
@source_option
@fusion_option
@rerank_options
@marginal_options
@click.option("--generator", default=DEFAULT_GENERATOR, show_default=True, envvar="RAGMIX_GENERATOR",
              help="smollm2-squad (SmolLM2 with ragmix's SQuAD reader adapter), smollm2 "
                   "(as packaged) or a local Hugging Face model folder.")
@query_encoder_option
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Answer length cap [default: 200 for stuff, 32 for rag-*].")
@click.option("--explain", is_flag=True,
              help="Show which passage each answer token leaned on (rag-* modes).")
@click.option("--explain-png", type=click.Path(dir_okay=False), default=None,
              help="Also save the per-token posterior heat map as a PNG (implies --explain).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer and sources as JSON.")
@min_confidence_option
@store_option
@dtype_option
def ask(question, collection_dir, mode, retrieval, k, source, fusion, rerank, rerank_model,
        rerank_depth, rerank_weight, tau, beams, decoding, scoring, generator, query_encoder,
        max_new_tokens, explain, explain_png, as_json, min_confidence, store, dtype):
    """Answer QUESTION from the collection, with its sources.

    \b
    ragmix ask "How do I delete documents?" -c my-col
    ragmix ask "How do I delete documents?" -c my-col --mode rag-token --explain
    """
    from ragmix.generation import load_generator

    explain = explain or explain_png is not None
    decoding = _checked_decoding(mode, decoding, explain)
    with open_collection(collection_dir, query_encoder, dtype=dtype, store=store) as col:
        with err.status(f"loading generator {generator}"):
            gen = load_generator(generator, dtype=dtype)
        reranker = loaded_reranker(rerank, rerank_model, rerank_weight, dtype, col)
        searcher = col.searcher(fusion=fusion, source=source, rerank=reranker,
                                rerank_depth=rerank_depth)
        if reranker is not None and tau is None:
            tau = reranker.tau  # the reranker's scores, not the first stage's
        stream = None if as_json else (lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
        rag, answer = _answer(question, searcher, gen, mode=mode, decoding=decoding,
                              retrieval=retrieval, k=k, tau=tau, beams=beams, scoring=scoring,
                              max_new_tokens=max_new_tokens, min_confidence=min_confidence,
                              explain=explain, stream=stream)
    if as_json:
        click.echo(json.dumps(asdict(answer), indent=2))
    else:
        _print_answer(answer, rag.min_confidence, explain)
    if explain_png is not None:
        from ragmix.marginal.explain import plot_token_posteriors

        err.print(f"wrote {plot_token_posteriors(answer, explain_png)}")


def _answer(question, searcher, gen, *, mode, decoding, retrieval, k, tau, beams, scoring,
            max_new_tokens, min_confidence, explain, stream):
    """(the answerer, its answer): "stuff" streams its tokens as they come; the marginals
    decode first, then print the answer whole."""
    from ragmix.generation import RAG

    if mode == "stuff":
        grounded = decoding == "grounded"
        rag = RAG(searcher, gen, k=k, mode=retrieval, max_new_tokens=max_new_tokens or 200,
                  grounded=grounded, beams=beams or 4, scoring=scoring,
                  min_confidence=min_confidence)
        with err.status("decoding (grounded)") if grounded else contextlib.nullcontext():
            return rag, rag.ask(question, on_token=stream)
    from ragmix.marginal.model import MarginalRAG

    rag = MarginalRAG(searcher, gen, mode=mode, k=k, retrieval=retrieval, tau=tau,
                      beams=beams, scoring=scoring,
                      decoding="thorough" if decoding == "free" else decoding,
                      max_new_tokens=max_new_tokens or 32, min_confidence=min_confidence)
    with err.status(f"decoding ({mode})"):
        answer = rag.ask(question, explain=explain)
    if stream is not None:
        stream(answer.text)
    return rag, answer


def _print_answer(answer, min_confidence, explain: bool) -> None:
    """The confidence, the quoted spans, the sources and (with --explain) the token view."""
    from ragmix.cli.render import (
        confidence_line,
        quote_view,
        sources_table,
        token_heatmap,
        token_table,
    )

    click.echo()
    if answer.confidence is not None:
        out.print(confidence_line(answer, min_confidence))
    if answer.quotes:
        out.print(quote_view(answer))
    out.print(sources_table(answer))
    if explain and answer.tokens:
        out.print(token_heatmap(answer))
        out.print(token_table(answer))


def _checked_decoding(mode: str, asked: str | None, explain: bool) -> str:
    """The decoding `ask` uses for ``mode`` (``ask_decoding``), or a usage error."""
    decoding = ask_decoding(mode, asked)
    if explain and (mode == "stuff" or decoding == "grounded"):
        raise click.UsageError("--explain needs --mode rag-sequence or rag-token with free "
                               "decoding (--decoding thorough, fast or free); grounded answers "
                               "show their quotes instead")
    if decoding == "grounded" and mode not in GROUNDED_MODES:
        raise click.UsageError(f"--decoding grounded works with --mode "
                               f"{' or '.join(GROUNDED_MODES)}, not {mode}")
    if mode == "stuff" and decoding not in ("grounded", "free"):
        raise click.UsageError(f"--decoding {asked} is RAG-Sequence's; --mode stuff takes "
                               "--decoding grounded or free")
    return decoding
