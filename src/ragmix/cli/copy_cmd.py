"""``ragmix copy``: a collection to another place or backend, vectors as stored."""

from __future__ import annotations

import click
from rich.console import Console

from ragmix.cli.options import INDEX_KINDS, index_params, pg_creation_options

err = Console(stderr=True)


@click.command()
@click.argument("source")
@click.argument("target")
@click.option("--index", "index_kind", type=click.Choice(INDEX_KINDS), default=None,
              help="Index type of a new TARGET [default: flat in a directory, hnsw in "
                   "PostgreSQL].")
@click.option("--index-option", "index_options", multiple=True, metavar="KEY=VALUE",
              help="Index knob for a new TARGET, repeatable (as for ragmix index).")
@pg_creation_options
def copy(source, target, index_kind, index_options, halfvec, keyword):
    """Copy a collection to another place or backend; vectors are copied, not recomputed.

    SOURCE and TARGET are directories or postgresql://USER@HOST:PORT/DB?collection=NAME.
    Run again, an interrupted copy resumes.

    \b
    ragmix copy my-col "postgresql://me@localhost:5432/rag?collection=notes"
    ragmix copy "postgresql://me@localhost:5432/rag?collection=notes" back-home
    """
    from ragmix.cli.progress import RichProgress
    from ragmix.store.copy import copy_collection
    from ragmix.store.home import home_for

    params = index_params(home_for(target), index_options, halfvec, keyword)
    with RichProgress(err) as progress:
        n = copy_collection(source, target, index=index_kind, index_params=params,
                            progress=progress)
    err.print(f"[green]copied[/] {n} chunks to {home_for(target).location}")
