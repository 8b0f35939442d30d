"""``ragmix rerank-store``: a collection's late-interaction token vectors, computed once."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ragmix.cli.options import dtype_option

err = Console(stderr=True)
BATCH = 512  # chunk rows read from the collection at a time


def passage_texts(col) -> list[str]:
    """Every chunk's text in a collection, in chunk-id order."""
    ids = [int(i) for i in col.backend.chunk_ids()]
    texts: list[str] = []
    for at in range(0, len(ids), BATCH):
        rows = col.backend.chunk_rows(ids[at: at + BATCH])
        texts.extend(rows[i].text for i in ids[at: at + BATCH] if i in rows)
    return texts


@click.command("rerank-store")
@click.option("--collection", "-c", "collection_dir", envvar="RAGMIX_COLLECTION", default=".ragmix",
              show_default=True, type=click.Path(file_okay=False, exists=True),
              help="Collection directory ($RAGMIX_COLLECTION).")
@click.option("--rerank-model", default=None, metavar="PATH",
              help="A folder from ragmix train late-interaction [default: the packaged MiniLM].")
@dtype_option
def rerank_store(collection_dir, rerank_model, dtype):
    """Store every passage's late-interaction token vectors (float16) in the collection.

    Then `--rerank late-interaction` encodes only the query: reranking the top 50
    costs milliseconds, not a forward pass over 50 passages. Passages added later
    are stored the first time they are reranked; run again to store them at once.

    \b
    ragmix rerank-store -c my-col
    ragmix search "how are documents chunked?" -c my-col --rerank late-interaction
    """
    from ragmix.rerank import token_store_dir
    from ragmix.rerank.late_interaction import LateInteractionScorer
    from ragmix.store import Collection

    with Collection.open(collection_dir, dtype=dtype) as col:
        texts = passage_texts(col)
    where = token_store_dir(collection_dir, rerank_model, dtype=dtype)
    scorer = LateInteractionScorer(rerank_model, dtype=dtype, store=where)
    columns = (TextColumn("storing token vectors"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("", total=len(texts))
        encoded = scorer.warm(texts, progress=lambda done, total: bar.update(
            task, completed=done, total=total))
    err.print(f"[green]stored[/] {encoded} new passages ({len(texts) - encoded} already there) "
              f"in {where}")
