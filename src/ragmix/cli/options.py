"""Command-line options shared by several commands, their choices taken from the registries."""

from __future__ import annotations

import click

from ragmix.chunking import CHUNKERS
from ragmix.dtypes import DTYPES, ENV_VAR
from ragmix.index import INDEX_KINDS
from ragmix.modes import ASK_DECODINGS, DECODINGS, DEFAULT_SCORING, GENERATION_MODES, SCORINGS
from ragmix.retrieval.retrievers import DEFAULT_FUSION, FUSIONS, MODES

CHUNKER_NAMES = tuple(CHUNKERS)

fusion_option = click.option(
    "--fusion", type=click.Choice(FUSIONS), default=DEFAULT_FUSION, show_default=True,
    help="Hybrid fusion: min-max weighted scores (0.5 each) or Reciprocal Rank Fusion (k=60).",
)


retrieval_option = click.option(
    "--retrieval", "-r", type=click.Choice(MODES), default="hybrid", show_default=True,
    help="Retrieval mode.",
)


scoring_option = click.option(
    "--scoring", type=click.Choice(SCORINGS), default=DEFAULT_SCORING, show_default=True,
    help="How grounded decoding ranks spans: renormalised over the allowed tokens "
         "(constrained), the model's own probability (raw), per token (mean), or how much "
         "the question raises it (pmi).")


def _confidence(value):
    """'auto' or a number in [0, 1]."""
    if value is None or value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a number in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise click.BadParameter(f"{value} is outside [0, 1]")
    return number


min_confidence_option = click.option(
    "--min-confidence", default="auto", show_default=True, callback=lambda c, p, v: _confidence(v),
    help="Grounded answers below this calibrated confidence say the collection does not say "
         "(and still list the closest passages). auto: the threshold chosen on SQuAD train "
         "questions for this generator and mode; 0: always answer.")


def marginal_options(fn):
    """--decoding, --beams and --tau: the settings of RAG-Sequence and RAG-Token."""
    fn = click.option("--tau", type=click.FloatRange(min=0, min_open=True), default=None,
                      help="Temperature of the prior p(z|x) = softmax(score / tau) "
                           "[default: 0.05 dense, 1 bm25, 0.1 hybrid].")(fn)
    fn = click.option("--beams", type=click.IntRange(min=1), default=None,
                      help="Beam size [default: 4 for rag-sequence, 1 (greedy) for rag-token].")(fn)
    fn = scoring_option(fn)
    fn = click.option("--decoding", type=click.Choice(ASK_DECODINGS), default=None,
                      help="grounded: answer only with a verbatim span of the passages "
                           "(stuff, rag-sequence), quoted exactly. free: generate freely "
                           "(stuff cites [n]; for rag-sequence it means thorough). "
                           "RAG-Sequence's free decoding scores every beam answer under every "
                           "passage (thorough) or only where it was proposed (fast) "
                           "[default: grounded for stuff and rag-sequence, free for "
                           "rag-token].")(fn)
    return fn


__all__ = ["CHUNKER_NAMES", "DECODINGS", "FUSIONS", "GENERATION_MODES", "INDEX_KINDS", "MODES",
           "fusion_option", "marginal_options", "min_confidence_option", "retrieval_option", "scoring_option"]


query_encoder_option = click.option(
    "--query-encoder", default=None, type=click.Path(file_okay=False, exists=True),
    help="A query tower fine-tuned on this collection (OUT/query_encoder from ragmix train rag).")

dtype_option = click.option(
    "--dtype", type=click.Choice(DTYPES), default="auto", show_default=True, envvar=ENV_VAR,
    help="What the models compute in: auto (bfloat16 where the CPU has AMX, else "
         f"float32), float32 or bfloat16 (${ENV_VAR}).")
