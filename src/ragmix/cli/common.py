"""What several ``ragmix`` commands share: the collection, -k and --source options,
opening a collection, and loading a reranker under a status line."""

from __future__ import annotations

import click
from rich.console import Console

from ragmix.cli.options import collection_location, reranker_from_options

err = Console(stderr=True)

collection_option = click.option(
    "--collection", "-c", "collection_dir", envvar="RAGMIX_COLLECTION", default=".ragmix",
    show_default=True, type=click.Path(file_okay=False),
    help="Collection directory, or its name with --store ($RAGMIX_COLLECTION).",
)
k_option = click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=5,
                        show_default=True, help="Number of passages.")
source_option = click.option("--source", default=None,
                             help="Only passages whose document path or id matches this glob.")


def open_collection(collection_dir: str, query_encoder: str | None = None, *, dtype: str = "auto",
                    store: str | None = None):
    """The collection at ``collection_dir`` (a name with ``store``), its query encoder
    replaced by ``query_encoder`` if given."""
    from ragmix.store import Collection

    collection_dir = collection_location(collection_dir, store)
    if query_encoder is None:
        return Collection.open(collection_dir, dtype=dtype)
    from ragmix.encoders import load_encoder

    return Collection.open(collection_dir, query_encoder=load_encoder(query_encoder, dtype=dtype),
                           dtype=dtype)


def loaded_reranker(rerank, model, weight, dtype, col):
    """The --rerank options' reranker (or None) over ``col``, loaded under a status line."""
    if rerank is None:
        return reranker_from_options(rerank, model, weight, dtype)
    with err.status(f"loading reranker {rerank}"):
        return reranker_from_options(rerank, model, weight, dtype, col)
