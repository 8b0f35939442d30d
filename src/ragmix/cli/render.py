"""Terminal rendering of hits and answers."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from ragmix.types import Answer, Hit


def _where(hit: Hit) -> str:
    return hit.title or hit.source or hit.doc_id


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
    cited = set(answer.cited)
    table = Table(title="sources")
    for column in ("", "#", "score", "p(z|x)", "source", "passage"):
        table.add_column(column, overflow="fold")
    for hit in answer.hits:
        text = " ".join(hit.text.split())
        table.add_row("cited" if hit.rank in cited else "", f"[{hit.rank}]", f"{hit.score:.3f}",
                      f"{hit.prob:.2f}", f"{_where(hit)}", text[:120] + ("…" if len(text) > 120 else ""))
    return table
