"""ANN auto-tuning: the smallest ``ef_search`` / ``nprobe`` that reaches a recall@k target.

:func:`tune_search` measures recall@k of a collection's vector search against
exact search (a blocked brute-force inner product over every stored embedding)
at several values of the index's search knob, returns the smallest value whose
recall on a tuning sample of queries reaches the target, and measures that value
on a disjoint held-out sample. :func:`save_tuning` makes it the collection's
setting (its manifest; nothing is rebuilt). The knob of each index kind:

- FAISS ``hnsw``: ``ef_search``, from k to min(n, :data:`FAISS_MAX_EF_SEARCH`)
  (below k a search holds fewer candidates than it returns);
- FAISS ``ivf`` and ``ivfpq``: ``nprobe``, from 1 to nlist (every list);
- PostgreSQL ``hnsw``: ``ef_search``, from k to 1000 (pgvector's limit);
  PostgreSQL ``ivf``: ``nprobe`` (``ivfflat.probes``), from 1 to nlist;
- ``flat`` is exact: :class:`NothingToTuneError`.

"Reaches" means the tuning recall less :data:`Z` standard errors of its mean
reaches the target, so that the value holds on other queries like them, not
just on these. The search assumes recall does not fall as the knob grows (IVF
probes a superset of lists; HNSW nearly always): it doubles the value until the
target is met, then bisects between the last miss and that value. IVF-PQ can
break that assumption (more lists bring more compressed-code candidates for its
re-scored shortlist), and its codes can cap recall below the target:
:class:`RecallUnreachableError` names the best recall measured and the fix.

Queries are the collection's own passages by default: a seeded sample of stored
embeddings. A passage is its own nearest neighbour, so each is searched for
k + 1 hits and itself is dropped from both the approximate and the exact lists:
what is measured is the recall of its k other nearest passages. Passages are
still easier queries than real ones, being nodes of the graph they search: on
3000 clustered vectors an HNSW ef_search tuned to 0.95 on passages gave 0.93 on
new queries from the same clusters (IVF: no gap), and on SQuAD-open 0.82 on real
questions (see :mod:`ragmix.store.tune_queries`, whose passage windows ``ragmix
tune`` embeds by default). Give query vectors (``queries=``, searched for k as
given) when you have them.

On PostgreSQL, a small table may be searched by an exact sequential scan instead
of the index at a high ``ef_search`` (pgvector's cost estimate grows with it: on
3000 rows from about 400), so recall there reads 1.0, as it does for any search
that gets the same plan.

A hit is a returned passage whose inner product reaches the k-th exact one
(less :data:`TIE_TOLERANCE`), so a tie at the boundary is not a miss; this is
ann-benchmarks' definition of recall (Aumüller et al., 2020) and relies on the
:class:`~ragmix.store.backend.PassageIndex` promise that scores are exact.

Example::

    with Collection.open("big-col") as col:  # an ivf collection
        result = tune_search(col.backend, recall=0.95)
        save_tuning(col, result)  # the manifest's index gets {"nprobe": result.value}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ragmix.errors import BadInputError, RagmixError
from ragmix.store.backend import EMPTY_SCORE, StoreBackend
from ragmix.store.ingest import Progress

if TYPE_CHECKING:
    from ragmix.store.collection import Collection

# An HNSW search visits about ef_search * M vectors: at 4096 with M=32, a flat scan's
# worth of 130k. A graph that needs more is better rebuilt with a larger M.
FAISS_MAX_EF_SEARCH = 4096
EXACT_BLOCK = 8192  # stored embeddings per exact-search block: (q, 8192) float32 scores
# Relative: the same float32 inner product summed in another order (FAISS, pgvector,
# numpy) differs by ~1e-7; a looser bound would count real near-misses as ties.
TIE_TOLERANCE = 1e-6
# The tuning recall must clear the target by this many standard errors: the smallest
# value whose mean alone reaches it gives other queries less than the target about
# half the time; two standard errors (~0.006 for 1000 queries) make that rare.
Z = 2.0


class NothingToTuneError(RagmixError):
    """The index searches exactly (``flat``): recall is 1 at any setting."""


@dataclass(frozen=True)
class KnobPoint:
    """One measured setting: recall@k on the tuning sample, its standard error, ms per query."""

    value: int
    recall: float  # the mean over the tuning queries of each one's recall@k
    stderr: float  # the standard error of that mean: std / sqrt(queries)
    ms_per_query: float  # wall time of the batch / queries


class RecallUnreachableError(RagmixError):
    """No value of the knob reaches the target; ``best`` is the highest recall measured."""

    def __init__(self, message: str, *, best: KnobPoint, curve: tuple[KnobPoint, ...]) -> None:
        super().__init__(message)
        self.best, self.curve = best, curve


@dataclass(frozen=True)
class TuneResult:
    """The smallest knob value reaching ``target`` on the tuning sample, and what it measured."""

    kind: str  # the index kind: hnsw, ivf or ivfpq
    knob: str  # "ef_search" or "nprobe"
    value: int  # the chosen value
    previous: int  # the collection's value before tuning
    target: float
    k: int
    z: float  # ``recall - z * stderr`` on the tuning sample reaches ``target`` at ``value``
    recall: float  # recall@k at ``value`` on the tuning sample
    holdout_recall: float | None  # the same on the held-out sample; None without one
    curve: tuple[KnobPoint, ...]  # every value measured, ascending
    n_tune: int  # tuning queries
    n_holdout: int  # held-out queries
    queries: str  # "passages" (stored embeddings, self dropped) or "given"


@dataclass(frozen=True)
class _Knob:
    kind: str
    name: str
    current: int
    low: int
    high: int
    search: Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]  # (q, k, value)


def _knob_of(backend: StoreBackend, k_search: int) -> _Knob:
    """The search knob of ``backend``'s index, its range and a search at a given value."""
    from ragmix.store.embedded import EmbeddedBackend

    def search(name: str) -> Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]:
        # Both backends take the knob per call, beyond the StoreBackend protocol.
        return lambda q, k, value: backend.vector_search(  # type: ignore[call-arg]
            q, k, **{name: value})

    if isinstance(backend, EmbeddedBackend):
        index = backend.views.dense(persist=False)
        kind, params = index.kind, index.effective_params
        if kind == "hnsw":
            high = max(min(len(index), FAISS_MAX_EF_SEARCH), k_search)
            return _Knob(kind, "ef_search", params["ef_search"], k_search, high,
                         search("ef_search"))
        if kind in ("ivf", "ivfpq"):
            return _Knob(kind, "nprobe", params["nprobe"], 1, params["nlist"], search("nprobe"))
        raise NothingToTuneError(f"index kind {kind!r} searches exactly: recall is 1, nothing "
                                 "to tune (hnsw, ivf and ivfpq have a knob)")
    from ragmix.store.pg.backend import PgBackend
    from ragmix.store.pg.search import MAX_EF_SEARCH

    if isinstance(backend, PgBackend):
        s = backend.settings
        if s.kind == "hnsw":
            low = min(k_search, MAX_EF_SEARCH)
            return _Knob("hnsw", "ef_search", s.ef_search, low, MAX_EF_SEARCH,
                         search("ef_search"))
        if s.kind == "ivf":
            return _Knob("ivf", "nprobe", s.nprobe, 1, s.nlist, search("nprobe"))
        raise NothingToTuneError(f"PostgreSQL index kind {s.kind!r} searches exactly: recall "
                                 "is 1, nothing to tune (hnsw and ivf have a knob)")
    raise BadInputError(f"tuning knows the embedded and PostgreSQL backends, not {backend!r}")


def tuned_knob(backend: StoreBackend) -> str:
    """The knob :func:`tune_search` would tune (``ef_search`` or ``nprobe``), checked before
    any query is embedded; :class:`NothingToTuneError` for an exact index."""
    return _knob_of(backend, 1).name


def exact_top_k(backend: StoreBackend, queries: np.ndarray, k: int, *,
                progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products over every stored embedding, read EXACT_BLOCK at a time.

    queries (q, dim) -> scores (q, k) float32, ids (q, k) int64, best first; memory is
    O(q * EXACT_BLOCK), not O(n). Needs at least k stored embeddings.
    """
    ids = backend.chunk_ids()  # (n,)
    q = len(queries)
    best_scores = np.full((q, 0), EMPTY_SCORE, dtype=np.float32)  # (q, <= k)
    best_ids = np.full((q, 0), -1, dtype=np.int64)
    if progress is not None:
        progress.start("exact search", len(ids))
    for start in range(0, len(ids), EXACT_BLOCK):
        block = ids[start:start + EXACT_BLOCK]  # (b,)
        scores = queries @ backend.embeddings(block).T  # (q, dim) @ (dim, b) -> (q, b)
        all_scores = np.concatenate([best_scores, scores], axis=1)  # (q, k + b)
        all_ids = np.concatenate([best_ids, np.broadcast_to(block, scores.shape)], axis=1)
        keep = min(k, all_scores.shape[1])
        top = np.argpartition(-all_scores, keep - 1, axis=1)[:, :keep]  # (q, keep)
        best_scores = np.take_along_axis(all_scores, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
        if progress is not None:
            progress.advance("exact search", len(block))
    order = np.argsort(-best_scores, axis=1, kind="stable")  # (q, k) best first
    return np.take_along_axis(best_scores, order, 1), np.take_along_axis(best_ids, order, 1)


def drop_self(scores: np.ndarray, ids: np.ndarray, self_ids: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best hits other than its own id: (q, k + 1) each, (q,) -> (q, k) each.

    A row without its own id drops its last hit instead.

    >>> s, i = drop_self(np.array([[.9, .8, .7]]), np.array([[5, 3, 4]]), np.array([3]), 2)
    >>> i.tolist(), s.tolist()
    ([[5, 4]], [[0.9, 0.7]])
    """
    is_self = ids == self_ids[:, None]  # (q, k + 1)
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # others first, in order
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def query_recalls(found_scores: np.ndarray, found_ids: np.ndarray, true_scores: np.ndarray,
                  true_ids: np.ndarray) -> np.ndarray:
    """Each query's fraction of its exact top-k found: found (q, k), true (q, k) -> (q,).

    A found hit counts when its id is in the exact list or its score ties the k-th
    exact score (within TIE_TOLERANCE); empty slots (id -1) never count.

    >>> t_s, t_i = np.array([[.9, .5]]), np.array([[1, 2]])
    >>> query_recalls(np.array([[.9, .5]]), np.array([[1, 7]]), t_s, t_i).tolist()  # 7 ties 2
    [1.0]
    >>> query_recalls(np.array([[.9, .4]]), np.array([[1, 7]]), t_s, t_i).tolist()
    [0.5]
    """
    kth = true_scores[:, -1:]  # (q, 1)
    by_id = (found_ids[:, :, None] == true_ids[:, None, :]).any(axis=2)  # (q, k)
    by_tie = found_scores >= kth - TIE_TOLERANCE * np.maximum(1.0, np.abs(kth))  # (q, k)
    return ((found_ids >= 0) & (by_id | by_tie)).mean(axis=1)  # (q,)


def smallest_reaching(evaluate: Callable[[int], float], low: int, high: int,
                      target: float) -> int | None:
    """The smallest value in [low, high] with ``evaluate(value) >= target``, or None.

    Assumes ``evaluate`` does not decrease; tries low, 2 low, 4 low, ... (capped at
    high), then bisects between the last miss and the first hit.

    >>> smallest_reaching(lambda v: min(v / 37, 1.0), 1, 64, 1.0)
    37
    >>> smallest_reaching(lambda v: 0.5, 1, 64, 0.9) is None
    True
    """
    value, missed = low, low - 1
    while evaluate(value) < target:
        if value >= high:
            return None
        missed, value = value, min(max(2 * value, value + 1), high)
    lo, hi = missed + 1, value  # everything <= missed misses; value hits
    while lo < hi:
        mid = (lo + hi) // 2
        if evaluate(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


def tune_search(backend: StoreBackend, *, recall: float = 0.95, k: int = 10, sample: int = 1000,
                holdout: int | None = None, seed: int = 0, queries: np.ndarray | None = None,
                z: float = Z, progress: Progress | None = None) -> TuneResult:
    """The smallest ``ef_search`` / ``nprobe`` whose recall@k reaches ``recall``; see the module.

    ``sample`` tuning queries and ``holdout`` held-out ones (default: as many), disjoint,
    drawn with ``seed`` from the stored passages, or from ``queries`` (q, dim) when
    given; with fewer available, they are split in the same ratio. A value reaches
    the target when its tuning recall less ``z`` standard errors does (``z=0``: the
    mean alone). Nothing is changed: pass the result to :func:`save_tuning`. Raises
    :class:`NothingToTuneError` for an exact index and :class:`RecallUnreachableError`
    when the knob's largest value misses the target.
    """
    holdout = sample if holdout is None else holdout
    _check_options(recall, k, sample, holdout)
    if not z >= 0:
        raise BadInputError(f"z must be >= 0 (standard errors), got {z}")
    k_search = k if queries is not None else k + 1  # +1: the query's own passage, dropped
    knob = _knob_of(backend, k_search)
    vectors, self_ids, n_tune, n_holdout = _queries(backend, queries, k, sample, holdout, seed)
    truth = exact_top_k(backend, vectors, k_search, progress=progress)  # (m, k_search) each
    if self_ids is not None:
        truth = drop_self(*truth, self_ids, k)  # (m, k) each

    def measure(value: int, part: slice) -> KnobPoint:
        start = time.perf_counter()
        scores, ids = knob.search(vectors[part], k_search, value)
        ms = (time.perf_counter() - start) * 1000 / len(vectors[part])
        if self_ids is not None:
            scores, ids = drop_self(scores, ids, self_ids[part], k)
        recalls = query_recalls(scores, ids, truth[0][part], truth[1][part])  # (q,)
        stderr = float(recalls.std(ddof=1) / np.sqrt(len(recalls))) if len(recalls) > 1 else 0.0
        return KnobPoint(value, float(recalls.mean()), stderr, ms)

    tuning = slice(0, n_tune)
    curve: dict[int, KnobPoint] = {}  # value -> what it measured on the tuning sample

    def evaluate(value: int) -> float:
        if value not in curve:
            curve[value] = measure(value, tuning)
            if progress is not None:
                progress.advance(f"tuning {knob.name}")
        return curve[value].recall - z * curve[value].stderr

    if progress is not None:
        progress.start(f"tuning {knob.name}", None)
    value = smallest_reaching(evaluate, knob.low, knob.high, recall)
    points = tuple(sorted(curve.values(), key=lambda p: p.value))
    if value is None:
        best = max(points, key=lambda p: p.recall)
        raise RecallUnreachableError(_unreachable(knob, best, recall, k), best=best, curve=points)
    held = measure(value, slice(n_tune, None)).recall if n_holdout else None
    return TuneResult(kind=knob.kind, knob=knob.name, value=value, previous=knob.current,
                      target=recall, k=k, z=z, recall=curve[value].recall,
                      holdout_recall=held,
                      curve=points, n_tune=n_tune, n_holdout=n_holdout,
                      queries="given" if self_ids is None else "passages")


def _queries(backend: StoreBackend, queries: np.ndarray | None, k: int, sample: int,
             holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """(vectors (m, dim), their own chunk ids (m,) or None, n_tune, n_holdout): the tuning
    queries first, then the held-out ones; sampled passages unless ``queries`` are given."""
    rng = np.random.default_rng(seed)
    n = backend.count_chunks()
    if queries is None:
        if n < k + 1:
            raise BadInputError(f"the collection holds {n} passages; tuning recall@{k} on them "
                                f"needs at least {k + 1} (k besides the query itself); lower k")
        n_tune, n_holdout = _split(n, sample, holdout)
        self_ids = rng.choice(backend.chunk_ids(), n_tune + n_holdout, replace=False)  # (m,)
        return backend.embeddings(self_ids), self_ids, n_tune, n_holdout
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != backend.dim or not len(queries):
        raise BadInputError(f"queries must have shape (q >= 1, {backend.dim}), "
                            f"got {queries.shape}")
    if n < k:
        raise BadInputError(f"the collection holds {n} passages, fewer than k={k}; lower k")
    n_tune, n_holdout = _split(len(queries), sample, holdout)
    return queries[rng.permutation(len(queries))[: n_tune + n_holdout]], None, n_tune, n_holdout


def _check_options(recall: float, k: int, sample: int, holdout: int) -> None:
    if not 0 < recall <= 1:
        raise BadInputError(f"recall must be in (0, 1], got {recall}")
    for name, value, minimum in (("k", k, 1), ("sample", sample, 1), ("holdout", holdout, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BadInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _split(available: int, sample: int, holdout: int) -> tuple[int, int]:
    """(tuning, held-out) query counts from ``available``, in the ratio sample : holdout
    (at least one of each where a held-out sample is asked for and two queries exist).

    >>> _split(5000, 1000, 1000), _split(600, 1000, 500), _split(3, 1000, 1), _split(1, 9, 9)
    ((1000, 1000), (400, 200), (2, 1), (1, 0))
    """
    if available >= sample + holdout:
        return sample, holdout
    n_tune = max(1, round(available * sample / (sample + holdout)))
    if holdout and available > 1:
        n_tune = min(n_tune, available - 1)
    return n_tune, available - n_tune


def _unreachable(knob: _Knob, best: KnobPoint, target: float, k: int) -> str:
    reached = (f"recall@{k} reaches {best.recall:.3f} at best ({knob.name}={best.value}; "
               f"tried up to {knob.high}), below the target {target}")
    if knob.kind == "ivfpq":
        fix = ("its compressed codes cap recall: copy it into a collection with a larger m "
               "(ragmix copy SRC NEW --index ivfpq --index-option m=...) or with --index ivf "
               "or hnsw")
    elif knob.kind == "hnsw":
        fix = ("the graph is too sparse: copy it into a collection with a larger M or "
               "ef_construction (ragmix copy SRC NEW --index hnsw --index-option M=48)")
    else:
        fix = "even probing every list misses it"
    return f"{reached}; {fix}, or lower the target (--recall)"


def save_tuning(col: Collection, result: TuneResult) -> None:
    """Make ``result.value`` the collection's ``ef_search`` / ``nprobe``: in its manifest
    (``manifest.json``, or the meta table in PostgreSQL) and in ``col`` itself.

    Later opens search with it; a process that has the collection open already keeps
    its setting until it reopens it. Nothing is rebuilt.
    """
    index = dict(col.manifest.index)
    kind = index.pop("kind")
    if kind != result.kind:
        raise BadInputError(f"the result tunes a {result.kind!r} index, but {col.location!r} "
                            f"has a {kind!r} index; tune this collection")
    settings = col.home.index_settings(kind, {**index, result.knob: result.value},
                                       col.manifest.dim)  # validated
    manifest = replace(col.manifest, index=settings)
    with col.home.write_lock():
        col.home.save_manifest(manifest)
    col.manifest = manifest
    knob = {result.knob: result.value}
    from ragmix.store.embedded import EmbeddedBackend

    if isinstance(col.backend, EmbeddedBackend):
        col.backend.views.set_search_knobs(**knob)
        return
    from ragmix.store.pg.backend import PgBackend

    if isinstance(col.backend, PgBackend):
        col.backend.settings = col.backend.settings.searching_with(**knob)
