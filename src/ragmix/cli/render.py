"""Terminal rendering of hits and answers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from ragmix.types import Answer, Hit


def _where(hit: Hit) -> str:
    """The file name for a file, the document id for a corpus row."""
    if hit.source and hit.doc_id == hit.source:
        return Path(hit.source).name
    return hit.doc_id


def hits_table(hits: Sequence[Hit], *, width: int = 160) -> Table:
    table = Table(show_lines=False)
    for column in ("#", "score", "p(z|x)", "source", "passage"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        text = " ".join(hit.text.split())
        table.add_row(str(hit.rank), f"{hit.score:.3f}", f"{hit.prob:.2f}", _where(hit),
                      text[:width] + ("…" if len(text) > width else ""))
    return table


def sources_table(answer: Answer) -> Table:
    """One line per passage the generator saw; the cited ones marked."""
    cited = set(answer.cited)
    table = Table(title="sources", title_justify="left", expand=True)
    table.add_column("", no_wrap=True)
    table.add_column("#", no_wrap=True)
    table.add_column("score", no_wrap=True)
    table.add_column("p(z|x)", no_wrap=True)
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("passage", no_wrap=True, overflow="ellipsis", ratio=1)
    for hit in answer.hits:
        table.add_row("cited" if hit.rank in cited else "", f"[{hit.rank}]", f"{hit.score:.3f}",
                      f"{hit.prob:.2f}", _where(hit), " ".join(hit.text.split()))
    return table
