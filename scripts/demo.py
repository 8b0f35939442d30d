"""`make demo`: index ragmix's own user guide (docs/) and answer questions with sources."""

from __future__ import annotations

import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from rich.console import Console  # noqa: E402

from ragmix.cli.progress import RichProgress  # noqa: E402
from ragmix.cli.render import (  # noqa: E402
    confidence_line,
    quote_view,
    sources_table,
    token_heatmap,
)
from ragmix.generation import load_generator  # noqa: E402
from ragmix.marginal.model import MarginalRAG  # noqa: E402
from ragmix.store import Collection  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# SmolLM2-135M is a small model: it answers short factual questions best. The last
# question is not about ragmix: the answer says the collection does not say.
QUESTIONS = (
    "How do I run ragmix's test suite?",
    "Which language model writes the answers out of the box?",
    "How many processes can write to the same collection at once?",
    "What is the capital of France?",
)
RAG_TOKEN_QUESTION = "What is the default generator model?"


def main() -> None:
    console = Console()
    directory = ROOT / ".demo" / "collection"
    console.rule("[bold]ragmix demo: indexing docs/")
    col = Collection.open_or_create(directory)
    with RichProgress(console) as progress:
        report = col.add([ROOT / "docs"], progress=progress)
    console.print(
        f"{report.added} new, {report.updated} updated, {report.unchanged} unchanged documents, "
        f"{report.chunks} chunks embedded; collection at {directory.relative_to(ROOT)}"
    )
    with console.status("loading SmolLM2-135M-Instruct with ragmix's reader adapter "
                        "(the first time converts it, ~30 s)"):
        began = time.perf_counter()
        generator = load_generator("smollm2-squad")
    console.print(f"generator loaded in {time.perf_counter() - began:.1f}s")
    # What `ragmix ask` does by default: RAG-Sequence over k=5 passages, grounded
    # decoding (the answer is a verbatim span of a retrieved passage, and the demo shows
    # exactly where it stands; see docs/generation.md), spans scored by the reader
    # (ragmix.modes.DEFAULT_SCORING), and a calibrated confidence below which the
    # answer says the collection does not say.
    rag = MarginalRAG(col, generator, mode="rag-sequence", k=5, decoding="grounded")
    for question in QUESTIONS:
        console.rule(f"[bold]Q: {question}")
        answer = rag.ask(question)
        console.print(f"[bold]A:[/] {answer.text or '(no span of the passages answers it)'}")
        if answer.confidence is not None:
            console.print(confidence_line(answer, rag.min_confidence))
        console.print(quote_view(answer))
        console.print(sources_table(answer))
    # The paper's RAG-Token, decoded freely: each answer token drawn from the mixture over
    # the passages, and the sources ranked by the posterior p(z|x,y).
    question = RAG_TOKEN_QUESTION
    console.rule(f"[bold]RAG-Token (free decoding): {question}")
    answer = MarginalRAG(col, generator, mode="rag-token", k=3, max_new_tokens=24).ask(question)
    console.print(answer.text)
    console.print(sources_table(answer))
    console.print("which passage each token leaned on (colours as in the table):")
    console.print(token_heatmap(answer))
    col.close()


if __name__ == "__main__":
    main()
