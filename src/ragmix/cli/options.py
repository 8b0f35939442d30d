"""Command-line options shared by several commands, their choices taken from the registries."""

from __future__ import annotations

import functools
from typing import Any

import click
from click.core import ParameterSource

from ragmix.chunking import CHUNKERS
from ragmix.dtypes import DTYPES, ENV_VAR
from ragmix.index import INDEX_KINDS
from ragmix.modes import (
    ASK_DECODINGS,
    DECODINGS,
    DEFAULT_RERANK_DEPTH,
    DEFAULT_SCORING,
    GENERATION_MODES,
    RERANKERS,
    SCORINGS,
)
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

MODE_IS_RETRIEVAL = "--mode is now --retrieval/-r for the retrieval mode"


def retrieval_with_old_mode(*, multiple: bool = False, default: str | None = None,
                            help_text: str = "Retrieval mode."):
    """--retrieval/-r, plus the old spelling --mode/-m as a hidden, deprecated alias.

    ``search`` and ``eval retrieval`` named the retrieval mode --mode, as ``ask`` names the
    generation mode; old scripts keep working, warned once on stderr. The command
    receives ``retrieval`` only.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def command(*args, retrieval, old_mode, **kwargs):
            if old_mode:
                ctx = click.get_current_context()
                if ctx.get_parameter_source("retrieval") is not ParameterSource.DEFAULT:
                    raise click.UsageError("give the retrieval mode as --retrieval/-r; the old "
                                           "--mode/-m is the same option, not both")
                click.echo(MODE_IS_RETRIEVAL, err=True)
                retrieval = old_mode
            return fn(*args, retrieval=retrieval, **kwargs)

        command = click.option("--mode", "-m", "old_mode", type=click.Choice(MODES),
                               multiple=multiple, default=None, hidden=True)(command)
        return click.option("--retrieval", "-r", "retrieval", type=click.Choice(MODES),
                            multiple=multiple, default=default,
                            show_default=default is not None and not multiple,
                            help=help_text)(command)
    return decorate


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
                           "[default: 0.05 dense, 1 bm25, 0.1 hybrid, 2 splade, 0.1 hybrid-splade].")(fn)
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
           "fusion_option", "marginal_options", "min_confidence_option", "retrieval_option",
           "retrieval_with_old_mode", "scoring_option"]


query_encoder_option = click.option(
    "--query-encoder", default=None, type=click.Path(file_okay=False, exists=True),
    help="A query tower fine-tuned on this collection (OUT/query_encoder from ragmix train rag).")

dtype_option = click.option(
    "--dtype", type=click.Choice(DTYPES), default="auto", show_default=True, envvar=ENV_VAR,
    help="What the models compute in: auto (bfloat16 where the CPU has AMX, else "
         f"float32), float32 or bfloat16 (${ENV_VAR}).")

store_option = click.option(
    "--store", default=None, envvar="RAGMIX_STORE", metavar="URL",
    help="Keep the collection in PostgreSQL (>= 13, pgvector >= 0.8): "
         "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB; --collection is then its name in that "
         "database ($RAGMIX_STORE). A --collection of postgresql://...?collection=NAME works "
         "alone.")


def collection_location(collection: str, store: str | None) -> str:
    """Where --collection and --store point: a directory, or a PostgreSQL collection URL."""
    from ragmix.store.home import is_url

    if store is None or is_url(collection):
        return collection
    if not is_url(store):
        raise click.BadParameter(f"expected postgresql://USER@HOST:PORT/DB, got {store!r}",
                                 param_hint="--store")
    if "collection=" in store:
        return store
    from ragmix.store.pg.home import location_of

    return location_of(store, collection)


def pg_creation_options(fn):
    """--halfvec and --keyword: how a new PostgreSQL collection stores and searches."""
    fn = click.option("--keyword", type=click.Choice(("bm25", "tsvector")), default=None,
                      help="PostgreSQL keyword search: bm25 (bm25s over the texts, a cached view "
                           "rebuilt when the collection changes; the default) or tsvector "
                           "(PostgreSQL full text search, ts_rank_cd: no IDF).")(fn)
    fn = click.option("--halfvec", is_flag=True,
                      help="PostgreSQL: index float16 copies of the vectors (half the index "
                           "size; scores stay float32).")(fn)
    return fn


def parse_index_options(pairs: tuple[str, ...]) -> dict[str, int]:
    """``("nprobe=32", "nlist=256")`` -> ``{"nprobe": 32, "nlist": 256}``."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            raise click.BadParameter(f"expected KEY=INTEGER, got {pair!r}", param_hint="--index-option")
        params[key.strip()] = int(value)
    return params


def index_params(home: Any, pairs: tuple[str, ...], halfvec: bool,
                  keyword: str | None) -> dict[str, object]:
    """--index-option pairs, plus --halfvec / --keyword for a PostgreSQL collection."""
    params: dict[str, object] = dict(parse_index_options(pairs))
    if (halfvec or keyword) and home.directory is not None:
        raise click.UsageError("--halfvec and --keyword apply to PostgreSQL collections "
                               "(--store URL); a directory's index is FAISS's")
    if halfvec:
        params["storage"] = "halfvec"
    if keyword:
        params["keyword"] = keyword
    return params


class RerankSpec(click.ParamType):
    """``NAME[@WEIGHT][,NAME[@WEIGHT]...]``: one reranker, or a chain of them in turn."""

    name = "RERANKER"

    def convert(self, value, param, ctx):
        from ragmix.errors import BadInputError
        from ragmix.rerank.chain import parse_rerank_spec

        try:
            parse_rerank_spec(value)
        except BadInputError as exc:
            self.fail(str(exc), param, ctx)
        return value


def rerank_options(fn):
    """--rerank, --rerank-model, --rerank-depth, --rerank-weight: a second stage of retrieval."""
    fn = click.option("--rerank-weight", type=click.FloatRange(0, 1), default=1.0, show_default=True,
                      help="The reranker's share when fused with the first stage's scores "
                           "(min-max, as hybrid fuses): 1 ranks by the reranker alone. A "
                           "chain gives each reranker's share as NAME@WEIGHT instead.")(fn)
    fn = click.option("--rerank-depth", type=click.IntRange(min=1), default=DEFAULT_RERANK_DEPTH,
                      show_default=True, help="How many first-stage hits the reranker re-scores.")(fn)
    fn = click.option("--rerank-model", default=None, metavar="PATH", multiple=True,
                      help="The reranker's model: a folder from ragmix train reranker or a local "
                           "CrossEncoder (cross-encoder, required), a MaxSim folder from ragmix train "
                           "late-interaction (default: packaged MiniLM), a generator name or folder "
                           "(query-likelihood, default: smollm2). For a chain, once per reranker "
                           "in order ('default' keeps a reranker's own), or not at all.")(fn)
    fn = click.option("--rerank", type=RerankSpec(), default=None,
                      help=f"Re-score the top --rerank-depth hits with a sharper model: "
                           f"{', '.join(RERANKERS)} (a cross-encoder, ColBERT-style late "
                           "interaction, the question's likelihood under a language model). "
                           "Several, comma-separated, each NAME@WEIGHT, run in turn over the same "
                           "hits, each fused with the one before it: "
                           "query-likelihood@0.7,late-interaction@0.3.")(fn)
    return fn


def reranker_from_options(rerank: str | None, models: tuple[str, ...] | str | None,
                          weight: float, dtype: str, collection: Any = None):
    """The reranker (or chain) the --rerank options name, or None; the others need --rerank.

    Late interaction over a directory ``collection`` keeps its passages' token vectors in
    the collection (``ragmix rerank-store`` fills them at once), so a passage is encoded once.
    """
    from ragmix.errors import BadInputError
    from ragmix.rerank.chain import load_rerank_chain, with_weight

    if rerank is None:
        if models or weight != 1.0:
            raise click.UsageError("--rerank-model and --rerank-weight need --rerank NAME")
        return None
    try:
        rerank = with_weight(rerank, weight)
    except BadInputError as exc:
        raise click.UsageError(str(exc)) from exc
    directory = getattr(getattr(collection, "home", None), "directory", None)
    return load_rerank_chain(rerank, models=models, dtype=dtype, store_root=directory)


def rerank_model_label(models: tuple[str, ...] | str | None) -> str | None:
    """--rerank-model as results files record it: the one model, or the chain's, comma-separated."""
    if isinstance(models, str) or models is None:
        return models
    return ",".join(models) if models else None


def chunker_options(chunker: str, encoder: str, size: int | None, overlap: int | None,
                    percentile: float | None) -> dict[str, object]:
    """make_chunker's options from ragmix index's --chunk-size, --overlap and
    --breakpoint-percentile; the semantic chunker embeds with the collection's --encoder."""
    from ragmix.chunking import sized_options

    if overlap is not None and chunker in ("recursive", "semantic"):
        raise click.UsageError("--overlap applies to the words and chars chunkers only")
    if percentile is not None and chunker != "semantic":
        raise click.UsageError("--breakpoint-percentile applies to the semantic chunker only")
    return sized_options(chunker, size=size, overlap=overlap, encoder=encoder,
                         percentile=percentile)
