"""Rerankers in turn over the same candidates: ``query-likelihood@0.7,late-interaction@0.3``.

A chain's spec names rerankers (:data:`ragmix.modes.RERANKERS`), each with an
optional fusion weight after ``@`` (default 1: that reranker's scores alone),
separated by commas. The first re-scores the first stage's candidates, fused
with the first stage's scores at its weight; each next one re-scores the same
candidates, fused with the scores of the one before it. So
``query-likelihood@0.7,late-interaction@0.3`` ranks by 0.3 MaxSim + 0.7 of
(0.7 query likelihood + 0.3 first stage), each part min-max normalised over the
candidates: the pipeline that reaches SQuAD-open R@1 0.829 / R@5 0.950 over
hybrid-splade's top 50 in BENCHMARKS.md.

>>> [(s.name, s.weight) for s in parse_rerank_spec("query-likelihood@0.7,late-interaction@0.3")]
[('query-likelihood', 0.7), ('late-interaction', 0.3)]
>>> parse_rerank_spec("colbert")
Traceback (most recent call last):
...
ragmix.errors.BadInputError: unknown reranker 'colbert' in --rerank 'colbert': give \
one of cross-encoder, late-interaction, query-likelihood, each with an optional @WEIGHT \
in [0, 1], comma-separated (e.g. query-likelihood@0.7,late-interaction@0.3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.modes import RERANKERS
from ragmix.rerank.base import Reranker
from ragmix.types import Hit

EXAMPLE = "query-likelihood@0.7,late-interaction@0.3"


@dataclass(frozen=True)
class RerankStage:
    """One reranker of a chain and its share when fused with the scores before it."""

    name: str
    weight: float = 1.0


def parse_rerank_spec(spec: str) -> tuple[RerankStage, ...]:
    """The stages of ``NAME[@WEIGHT][,NAME[@WEIGHT]...]``; errors name the bad part."""
    if not isinstance(spec, str) or not spec.strip():
        raise BadInputError(f"--rerank needs a reranker name, got {spec!r}: {_how()}")
    stages = []
    for part in spec.split(","):
        name, at, weight = part.strip().partition("@")
        name = name.strip()
        if name not in RERANKERS:
            raise BadInputError(f"unknown reranker {name!r} in --rerank {spec!r}: {_how()}")
        value = 1.0
        if at:
            try:
                value = float(weight)
            except ValueError:
                value = float("nan")
            if not 0.0 <= value <= 1.0:
                raise BadInputError(f"weight {weight!r} of {name} in --rerank {spec!r} must be "
                                    f"a number in [0, 1]: {_how()}")
        stages.append(RerankStage(name, value))
    return tuple(stages)


def _how() -> str:
    return (f"give one of {', '.join(RERANKERS)}, each with an optional @WEIGHT in [0, 1], "
            f"comma-separated (e.g. {EXAMPLE})")


class RerankChain:
    """A :class:`Reranker` that runs ``rerankers`` in turn over the same candidates.

    Each but the last re-ranks all of them (its scores become the next one's
    first stage, the hits' ``retrieval_score`` stays the first stage's); the
    last keeps the best ``k``. ``tau`` is the last reranker's.
    """

    def __init__(self, rerankers: Sequence[Reranker]) -> None:
        if not rerankers:
            raise BadInputError("a rerank chain needs at least one reranker")
        for reranker in rerankers:
            if not isinstance(reranker, Reranker):
                raise BadInputError(f"{reranker!r} is not a Reranker (name, rerank)")
        self.rerankers = tuple(rerankers)

    @property
    def name(self) -> str:
        return ",".join(r.name for r in self.rerankers)

    @property
    def tau(self) -> float:
        return float(getattr(self.rerankers[-1], "tau", 1.0))

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if k <= 0:
            raise BadInputError(f"k must be > 0, got {k}")
        current = list(hits)
        for reranker in self.rerankers[:-1]:
            current = reranker.rerank(query, current, len(current)) if current else []
        return self.rerankers[-1].rerank(query, current, k)


def with_weight(spec: str, weight: float) -> str:
    """``spec`` with a ``--rerank-weight`` other than 1 applied: allowed for one reranker
    without its own @WEIGHT only (a chain gives each its share)."""
    stages = parse_rerank_spec(spec)
    if weight == 1.0:
        return spec
    if len(stages) > 1 or "@" in spec:
        raise BadInputError(f"a rerank weight (--rerank-weight {weight:g}) applies to one "
                            f"reranker without "
                            f"@WEIGHT; give each reranker of --rerank {spec!r} its share as "
                            "NAME@WEIGHT instead")
    if not 0.0 <= weight <= 1.0:
        raise BadInputError(f"rerank weight must be in [0, 1], got {weight!r}")
    return f"{spec}@{weight!r}"  # repr: the exact float parses back


# --rerank-model as chain_models takes it: none, one model, or one per reranker
ModelSpec = str | os.PathLike | Sequence[str | os.PathLike | None] | None


def chain_models(spec: str, models: ModelSpec = (),
                 ) -> list[tuple[RerankStage, str | os.PathLike | None]]:
    """Each stage of ``spec`` with its model: ``models`` is none (every reranker's default),
    one model (a path or name, for a one-reranker spec), or one per stage in order (None or
    'default': that stage's default). A cross-encoder stage without a model is refused
    here, before anything loads."""
    stages = parse_rerank_spec(spec)
    models = [models] if isinstance(models, (str, os.PathLike)) else list(models or ())
    if models and len(models) != len(stages):
        raise BadInputError(f"--rerank {spec!r} has {len(stages)} reranker(s) but "
                            f"{len(models)} --rerank-model values: give one per reranker, in "
                            "order ('default' for a reranker's own model), or none")
    chosen = [None if m in (None, "default") else m for m in models] or [None] * len(stages)
    for stage, model in zip(stages, chosen):
        if stage.name == "cross-encoder" and model is None:
            from ragmix.rerank import load_scorer

            load_scorer("cross-encoder")  # raises the error that says where a model comes from
    return list(zip(stages, chosen))


def chain_stages(spec: str, models: ModelSpec = (), *, dtype: str = "auto",
                 store_root: str | Path | None = None,
                 ) -> list[tuple[RerankStage, str | os.PathLike | None, Path | None]]:
    """(stage, model, token store or None) for each reranker of ``spec``: everything checked
    and every store chosen (a late-interaction model is read for its fingerprint), nothing
    loaded. ``models``: see :func:`chain_models`; with ``store_root`` (a collection's or a
    server's folder) late interaction keeps its passages' token vectors there
    (:func:`~ragmix.rerank.token_store_dir`)."""
    from ragmix.rerank import token_store_dir

    return [(stage, model, token_store_dir(store_root, model, dtype=dtype)
             if store_root is not None and stage.name == "late-interaction" else None)
            for stage, model in chain_models(spec, models)]


def build_chain(stages: Sequence[tuple[RerankStage, str | os.PathLike | None, Path | None]],
                *, dtype: str = "auto") -> Reranker:
    """Load what :func:`chain_stages` chose: the one reranker, or a :class:`RerankChain`."""
    from ragmix.rerank import load_reranker

    rerankers = [load_reranker(stage.name, model=model, weight=stage.weight, dtype=dtype,
                               store=store) for stage, model, store in stages]
    return rerankers[0] if len(rerankers) == 1 else RerankChain(rerankers)


def load_rerank_chain(spec: str, *, models: ModelSpec = (), dtype: str = "auto",
                      store_root: str | Path | None = None) -> Reranker:
    """The reranker (one stage) or :class:`RerankChain` that ``spec`` names
    (:func:`chain_stages`, then :func:`build_chain`)."""
    return build_chain(chain_stages(spec, models, dtype=dtype, store_root=store_root),
                       dtype=dtype)
