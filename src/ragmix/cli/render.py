"""Terminal rendering of hits and answers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

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


# one colour per passage in heat maps and tables; passages past the last reuse them
COLOURS = ("green", "magenta", "cyan", "yellow", "blue", "red", "bright_green", "bright_magenta")


def sources_table(answer: Answer) -> Table:
    """One line per passage the generator saw: cited ones marked, or by posterior p(z|x,y)."""
    if answer.posterior:
        return _posterior_table(answer)
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


def _posterior_table(answer: Answer) -> Table:
    table = Table(title=f"sources by posterior ({answer.mode})", title_justify="left",
                  expand=True)
    for column in ("#", "p(z|x)", "p(z|x,y)", "source"):
        table.add_column(column, no_wrap=True, overflow="ellipsis",
                         max_width=40 if column == "source" else None)
    table.add_column("passage", no_wrap=True, overflow="ellipsis", ratio=1)
    for i in sorted(range(len(answer.hits)), key=lambda i: -answer.posterior[i]):
        hit = answer.hits[i]
        colour = COLOURS[i % len(COLOURS)]
        table.add_row(f"[{colour}][{hit.rank}][/]", f"{answer.prior[i]:.2f}",
                      f"{answer.posterior[i]:.2f}", _where(hit), " ".join(hit.text.split()))
    return table


def confidence_line(answer: Answer, threshold: float | None) -> Text:
    """The calibrated confidence, and for an abstaining answer the guess it withheld."""
    bar = "" if threshold is None else f" (threshold {threshold:.2f})"
    if not answer.abstained:
        return Text(f"confidence {answer.confidence:.2f}{bar}", style="dim")
    return Text(f"best guess, withheld: {answer.guess!r}, confidence {answer.confidence:.2f}"
                f"{bar}; the closest passages:", style="dim")


def quote_view(answer: Answer, *, context: int = 80) -> Text:
    """Where a grounded answer stands: each quoted passage with the span highlighted.

    ``context`` characters of the passage are shown on either side.
    """
    out = Text()
    for quote in answer.quotes:
        hit = answer.hits[quote.hit - 1]
        before = _squeeze(hit.text[max(0, quote.start - context) : quote.start]).lstrip()
        after = _squeeze(hit.text[quote.end : quote.end + context]).rstrip()
        out.append(f"[{hit.rank}] {_where(hit)} (chars {quote.doc_start}-{quote.doc_end}): ",
                   style="bold")
        out.append(("…" if quote.start > context else "") + before)
        out.append(_squeeze(hit.text[quote.start : quote.end]), style="bold reverse")
        out.append(after + ("…" if quote.end + context < len(hit.text) else "") + "\n")
    return out


def _squeeze(text: str) -> str:
    """White space runs as one space, the ends kept (so the pieces join as in the text)."""
    return re.sub(r"\s+", " ", text)


def token_heatmap(answer: Answer) -> Text:
    """The answer with each token coloured by the passage it leaned on most.

    Bold when that passage's posterior for the token is above 0.5, dim below
    0.25; the colours are those of the sources table.
    """
    text = Text()
    for token, row in zip(answer.tokens, answer.token_posteriors):
        best = max(range(len(row)), key=row.__getitem__)
        style = COLOURS[best % len(COLOURS)]
        if row[best] > 0.5:
            style += " bold"
        elif row[best] < 0.25:
            style += " dim"
        text.append(token, style=style)
    return text


def token_table(answer: Answer) -> Table:
    """Per answer token, the posterior of each passage (columns [1]..[K])."""
    table = Table(title="p(z | x, y≤i) per answer token", title_justify="left")
    table.add_column("token", no_wrap=True)
    for i, hit in enumerate(answer.hits):
        table.add_column(f"[{COLOURS[i % len(COLOURS)]}][{hit.rank}][/]", justify="right")
    for token, row in zip(answer.tokens, answer.token_posteriors):
        best = max(range(len(row)), key=row.__getitem__)
        table.add_row(repr(token), *(f"[bold]{p:.2f}[/]" if i == best else f"{p:.2f}"
                                     for i, p in enumerate(row)))
    return table
