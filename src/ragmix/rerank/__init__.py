"""Second-stage rerankers: re-score the first stage's top hits with a sharper model.

    from ragmix import Collection
    from ragmix.rerank import RerankedSearch, load_reranker

    col = Collection.open("my-col")
    reranker = load_reranker("late-interaction")
    hits = col.search("how are documents chunked?", 5, rerank=reranker, rerank_depth=50)
    # or behind RAG / MarginalRAG / evaluate_retrieval:
    searcher = RerankedSearch(col.searcher(), reranker, depth=50)
    # several in turn over the same top 50, each fused with the one before it:
    chain = load_rerank_chain("query-likelihood@0.7,late-interaction@0.3")

The names (:data:`ragmix.modes.RERANKERS`) are the ones ``--rerank`` takes.
Models load lazily and need the ``models`` extra (torch, transformers).
"""

from __future__ import annotations

from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.modes import DEFAULT_RERANK_DEPTH, RERANKERS
from ragmix.rerank.base import PassageScorer, RerankedSearch, Reranker, ScoreReranker, renumbered
from ragmix.rerank.chain import RerankChain, load_rerank_chain, parse_rerank_spec


def load_scorer(name: str, *, model: str | Path | None = None, dtype: str = "auto",
                store: str | Path | None = None) -> PassageScorer:
    """The relevance model ``name`` (one of :data:`RERANKERS`), from ``model`` where given.

    - cross-encoder: ``model`` is a folder written by ``ragmix train reranker``
      or any local sentence-transformers CrossEncoder folder (required: no
      cross-encoder weights are packaged);
    - late-interaction: ``model`` is a folder written by ``ragmix train
      late-interaction``, or a local BERT or sentence-transformers folder
      (default: the packaged all-MiniLM-L6-v2, untrained for MaxSim);
      ``store`` is a directory that keeps passages' token vectors between
      queries and processes (:class:`~ragmix.rerank.token_store.TokenStore`,
      one per model: :func:`~ragmix.rerank.late_interaction.model_fingerprint`
      names it);
    - query-likelihood: ``model`` is a generator name or local model folder
      (default: the packaged SmolLM2-135M-Instruct, "smollm2").

    ``store`` is for late-interaction only: the other two read query and
    passage together, so there is nothing per passage to keep, and giving
    one is an error rather than a silently unused directory.
    """
    if store is not None and name in RERANKERS and name != "late-interaction":
        raise BadInputError(f"store={str(store)!r} keeps late-interaction token vectors; the "
                            f"{name} reranker scores query and passage together and has nothing "
                            "to store: drop store, or use --rerank late-interaction")
    if name == "cross-encoder":
        if model is None:
            raise BadInputError("the cross-encoder reranker needs a model folder "
                                "(--rerank-model PATH): train one with `ragmix train reranker`, "
                                "or give a local sentence-transformers CrossEncoder folder")
        from ragmix.rerank.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer(model, dtype=dtype)
    if name == "late-interaction":
        from ragmix.rerank.late_interaction import LateInteractionScorer

        return LateInteractionScorer(model, dtype=dtype, store=store)
    if name == "query-likelihood":
        from ragmix.generation import load_generator
        from ragmix.rerank.query_likelihood import QueryLikelihoodScorer

        return QueryLikelihoodScorer(load_generator(str(model or "smollm2"), dtype=dtype))
    raise BadInputError(f"unknown reranker {name!r}: give one of {', '.join(RERANKERS)}")


def token_store_dir(root: str | Path, model: str | Path | None = None, *,
                    dtype: str = "auto") -> Path:
    """Where a late-interaction model's passage token vectors are kept under ``root`` (a
    collection's folder, a server's data folder): one directory per model fingerprint, so a
    retrained model starts a new store."""
    from ragmix.rerank.late_interaction import model_fingerprint

    return Path(root) / "rerank" / "late-interaction" / model_fingerprint(model, dtype=dtype)[:16]


def load_reranker(name: str, *, model: str | Path | None = None, weight: float = 1.0,
                  dtype: str = "auto", store: str | Path | None = None) -> Reranker:
    """The reranker ``name`` (see :func:`load_scorer`); ``weight`` < 1 fuses in the first stage."""
    return ScoreReranker(load_scorer(name, model=model, dtype=dtype, store=store), weight=weight)


__all__ = ["token_store_dir", "DEFAULT_RERANK_DEPTH", "RERANKERS", "PassageScorer",
           "RerankedSearch", "RerankChain", "Reranker", "ScoreReranker", "load_rerank_chain", "load_reranker",
           "load_scorer", "parse_rerank_spec", "renumbered"]
