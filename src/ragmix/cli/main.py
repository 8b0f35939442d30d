"""The ``ragmix`` command line: a thin layer over the library.

Examples::

    ragmix index docs/ --collection my-col
    ragmix search "how are documents chunked?" --collection my-col -k 3
    ragmix ask "what does make demo do?" --collection my-col
    ragmix index docs/ -c notes --store postgresql://me@localhost:5432/rag
    ragmix copy my-col "postgresql://me@localhost:5432/rag?collection=notes"
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console

from ragmix._offline import set_offline_defaults
from ragmix.cli.common import (
    collection_option,
    k_option,
    loaded_reranker,
    open_collection,
    source_option,
)
from ragmix.cli.options import (
    CHUNKER_NAMES,
    INDEX_KINDS,
    chunker_options,
    collection_location,
    dtype_option,
    fusion_option,
    index_params,
    pg_creation_options,
    rerank_options,
    retrieval_with_old_mode,
    store_option,
)
from ragmix.cli.quiet import quiet_third_party
from ragmix.errors import RagmixError

set_offline_defaults()

err = Console(stderr=True)
out = Console()


class RagmixGroup(click.Group):
    """Turns ragmix's own errors into one clean line and exit code 1, and keeps other
    libraries' warnings off the output (see ragmix.cli.quiet)."""

    def invoke(self, ctx: click.Context):
        try:
            with quiet_third_party():
                return super().invoke(ctx)
        except RagmixError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=RagmixGroup)
@click.version_option(package_name="ragmix")
def cli() -> None:
    """ragmix: Retrieval-Augmented Generation, offline, with cited answers."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@collection_option
@click.option("--encoder", default="minilm", show_default=True,
              help="minilm, minilm-int8 (ONNX, faster), hashing-DIM, or a local sentence-transformers folder.")
@click.option("--chunker", type=click.Choice(CHUNKER_NAMES), default="words",
              show_default=True, help="words: the paper's disjoint 100-word passages.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Words (words), characters (chars), max characters (recursive) or max "
                   "encoder tokens (semantic) [semantic default: 256].")
@click.option("--overlap", type=click.IntRange(min=0), default=None, help="Overlap (words/chars).")
@click.option("--breakpoint-percentile", default=None,
              type=click.FloatRange(0, 100, min_open=True, max_open=True),
              help="semantic: cut where adjacent sentences are less similar than this "
                   "percentile of a document's sentence boundaries [default: 95].")
@click.option("--index", "index_kind", type=click.Choice(INDEX_KINDS), default=None,
              help="Index type of a new collection: FAISS's [default: flat], or pgvector's "
                   "with --store (hnsw [default], ivf, flat).")
@click.option("--index-option", "index_options", multiple=True, metavar="KEY=VALUE",
              help="Index knob for a new collection, repeatable: M, ef_construction, ef_search "
                   "(hnsw); nlist, nprobe (ivf, ivfpq); m, nbits (ivfpq).")
@store_option
@pg_creation_options
@click.option("--max-bytes", type=click.IntRange(min=1), default=20_000_000, show_default=True,
              help="Skip files larger than this (per row for .jsonl).")
@dtype_option
@click.option("--ray", "use_ray", is_flag=True,
              help="Embed on a Ray cluster (the ray extra; see docs/scale-out.md).")
@click.option("--address", default=None, metavar="ADDR",
              help="With --ray: an existing cluster's address [default: a local one].")
@click.option("--ray-actors", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --ray: embedding actors.")
def index(paths, collection_dir, encoder, chunker, chunk_size, overlap, breakpoint_percentile,
          index_kind, index_options, store, halfvec, keyword, max_bytes, dtype, use_ray, address,
          ray_actors):
    """Index files and folders (.txt .md .html .pdf, BEIR .jsonl) into a collection.

    Re-running adds new files and replaces changed ones; unchanged ones are skipped.

    \b
    ragmix index docs/ -c my-col
    ragmix index docs/ -c notes --store postgresql://me@localhost:5432/rag
    ragmix index corpus/ -c big --ray --address ray://head:10001
    """
    from ragmix.chunking import make_chunker
    from ragmix.cli.progress import RichProgress
    from ragmix.store import Collection
    from ragmix.store.collection import check_encoder_name
    from ragmix.store.home import home_for

    ctx = click.get_current_context()
    for name, flag in (("address", "--address"), ("ray_actors", "--ray-actors")):
        if not use_ray and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{flag} applies with --ray only")
    collection_dir = collection_location(collection_dir, store)
    home = home_for(collection_dir)
    if home.exists():
        creation_only = {"chunker": "--chunker", "chunk_size": "--chunk-size",
                         "overlap": "--overlap", "index_kind": "--index",
                         "breakpoint_percentile": "--breakpoint-percentile",
                         "index_options": "--index-option", "halfvec": "--halfvec",
                         "keyword": "--keyword"}
        given = [flag for name, flag in creation_only.items()
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} only apply when a collection is created; {collection_dir} "
                "already exists (see ragmix info)")
        if ctx.get_parameter_source("encoder") is click.core.ParameterSource.COMMANDLINE:
            check_encoder_name(collection_dir, encoder)
        col = Collection.open(collection_dir, dtype=dtype)
    else:
        options = chunker_options(chunker, encoder, chunk_size, overlap, breakpoint_percentile)
        with err.status(f"loading encoder {encoder}"):
            col = Collection.create(collection_dir, encoder=encoder,
                                    chunker=make_chunker(chunker, **options), index=index_kind,
                                    index_params=index_params(home, index_options, halfvec,
                                                               keyword),
                                    dtype=dtype)
    with col, RichProgress(err) as progress:
        if use_ray:
            from ragmix.distributed import ingest_with_ray

            report = ingest_with_ray(col, list(paths), address=address, concurrency=ray_actors,
                                     dtype=dtype, max_bytes=max_bytes, progress=progress)
        else:
            report = col.add(list(paths), progress=progress, max_bytes=max_bytes)
    err.print(
        f"[green]indexed[/] {report.added} new, {report.updated} updated, "
        f"{report.unchanged} unchanged documents; {report.chunks} chunks in {report.seconds:.1f}s"
    )
    if report.skipped:
        err.print(f"[yellow]skipped {len(report.skipped)} file(s):[/]")
        for item in report.skipped:
            err.print(f"  {item.source}: {item.reason}")


@cli.command()
@collection_option
@click.option("--encoder", required=True,
              help="The new encoder: a folder from ragmix train retriever, minilm, hashing-DIM.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the re-embedded collection (the source is left as it is).")
@dtype_option
def reembed(collection_dir, encoder, out_dir, dtype):
    """Copy a collection with every passage embedded by another encoder.

    An interrupted run resumes when started again with the same options.
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.store.reembed import reembed as run

    with err.status(f"loading encoder {encoder}"):
        from ragmix.encoders import load_encoder

        enc = load_encoder(encoder, dtype=dtype)
    with RichProgress(err) as progress:
        col = run(collection_dir, out_dir, enc, progress=progress)
    with col:
        chunks = col.store.count_chunks()
    err.print(f"[green]re-embedded[/] {chunks} chunks with {enc.name} into {out_dir}")


@cli.command()
@click.argument("query")
@collection_option
@retrieval_with_old_mode(default="hybrid")
@k_option
@source_option
@fusion_option
@rerank_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@store_option
@dtype_option
def search(query, collection_dir, retrieval, k, source, fusion, rerank, rerank_model,
           rerank_depth, rerank_weight, as_json, store, dtype):
    """Retrieve the top-k passages for QUERY.

    \b
    ragmix search "how are documents chunked?" -c my-col -k 3
    ragmix search "how are documents chunked?" -c my-col -r bm25
    ragmix search "how are documents chunked?" -c my-col --rerank late-interaction
    """
    from ragmix.cli.render import hits_table

    with open_collection(collection_dir, dtype=dtype, store=store) as col:
        reranker = loaded_reranker(rerank, rerank_model, rerank_weight, dtype, col)
        hits = col.search(query, k, mode=retrieval, source=source, fusion=fusion, rerank=reranker,
                          rerank_depth=rerank_depth)
    if as_json:
        click.echo(json.dumps([asdict(h) for h in hits], indent=2))
    elif not hits:
        err.print("no passages matched")
    else:
        out.print(hits_table(hits))


@cli.command()
@collection_option
@click.option("--json", "as_json", is_flag=True)
@store_option
def info(collection_dir, as_json, store):
    """Show a collection's counts, settings and size."""
    with open_collection(collection_dir, store=store) as col:
        data = col.info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        out.print(f"[bold]{key:>14}[/]  {value}")


@cli.command()
@click.argument("patterns", nargs=-1, required=True)
@collection_option
@store_option
def delete(patterns, collection_dir, store):
    """Delete documents whose path or id matches any of PATTERNS (globs)."""
    with open_collection(collection_dir, store=store) as col:
        removed = col.delete(list(patterns))
    if not removed:
        raise click.ClickException(f"no document matches {', '.join(patterns)}")
    err.print(f"deleted {len(removed)} document(s)")
    for doc_id in removed:
        err.print(f"  {doc_id}")


def _register_subgroups() -> None:
    from ragmix.cli.ask_cmd import ask
    from ragmix.cli.copy_cmd import copy
    from ragmix.cli.eval_cmd import eval_group
    from ragmix.cli.rerank_cmd import rerank_store
    from ragmix.cli.serve_cmd import serve
    from ragmix.cli.train_cmd import train_group
    from ragmix.cli.train_late_cmd import late_interaction_command
    from ragmix.cli.train_reranker_cmd import reranker_command
    from ragmix.cli.tune_cmd import tune

    train_group.add_command(reranker_command)
    train_group.add_command(late_interaction_command)
    cli.add_command(ask)
    cli.add_command(copy)
    cli.add_command(eval_group)
    cli.add_command(rerank_store)
    cli.add_command(serve)
    cli.add_command(train_group)
    cli.add_command(tune)


_register_subgroups()


def main() -> None:
    cli(prog_name="ragmix")
