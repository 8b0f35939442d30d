"""Contract tests for VectorIndex implementations, run on every FaissIndex kind.

Another VectorIndex subclasses ``VectorIndexContract`` and provides ``make_index``
(and ``kind``, used to pick the recall and exactness expectations).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("faiss")

from ragmix.errors import BadInputError  # noqa: E402
from ragmix.index import INDEX_KINDS, FaissIndex, VectorIndex  # noqa: E402
from ragmix.index.faiss_index import EXACT_FILTER_MAX  # noqa: E402
from ragmix.index.knobs import _DEFAULTS, auto_nlist, default_m  # noqa: E402

EMPTY_SCORE = np.finfo(np.float32).min

# Kinds whose scores are exact inner products; ivfpq scores 8-byte codes.
EXACT_SCORES = ("flat", "hnsw", "ivf")

# How many of the index's results must hold the exact top-10 (recall 10@R >= 0.9).
# ivfpq keeps 8 bytes per 64-d vector (m=8, nbits=8): measured 10@10 is only ~0.3 on
# these clusters, but ~1.0 at R=100, so ivfpq is a shortlist generator to re-rank.
RECALL_DEPTH = {"flat": 10, "hnsw": 10, "ivf": 10, "ivfpq": 100}


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """These indexes are tiny: OpenMP start-up and spin-waiting on a shared box cost
    more than threads gain (measured 4x slower with 2 threads on 2 busy cores)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 unit vectors around 50 fixed Gaussian centres."""
    centres = np.random.default_rng(1234).normal(size=(50, dim))  # (50, dim), same for all calls
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim))  # (n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact MIPS: (q, dim), (n,), (n, dim) -> scores (q, k), ids (q, k)."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T  # (q, n)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (q, k)
    return np.take_along_axis(scores, top, axis=1), ids[top]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each row of ``exact`` (q, 10) found in the same row of ``found`` (q, R)."""
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)  # (300, 16)
    ids = (np.arange(300) * 3 + 7).astype(np.int64)  # non-contiguous, like chunk ids
    return ids, vectors


@pytest.fixture(scope="module")
def clusters():
    vectors = clustered(5000, 64, seed=1)  # (5000, 64)
    queries = clustered(100, 64, seed=2)  # (100, 64)
    ids = (np.arange(5000) * 2 + 1).astype(np.int64)
    return ids, vectors, queries


_BUILT: dict[str, str] = {}  # kind -> saved path; HNSW takes seconds to build


@pytest.fixture
def clustered_index(kind, make_index, clusters, tmp_path_factory):
    """A fresh copy (via save/load) of the 5,000-vector index, built once per kind."""
    if kind not in _BUILT:
        ids, vectors, _ = clusters
        index = make_index(64)
        index.add(ids, vectors)
        path = str(tmp_path_factory.mktemp(kind) / "index.faiss")
        index.save(path)
        _BUILT[kind] = path
    return type(make_index(64)).load(_BUILT[kind])


class VectorIndexContract:
    @pytest.fixture
    def make_index(self):
        raise NotImplementedError("subclasses return a factory: dim -> empty index")

    def test_is_a_vector_index(self, make_index):
        index = make_index(16)
        assert isinstance(index, VectorIndex)
        assert index.dim == 16 and len(index) == 0
        assert index.ids().dtype == np.int64 and index.ids().shape == (0,)

    def test_add_len_ids(self, make_index, small):
        ids, vectors = small
        index = make_index(16)
        index.add(ids[:200], vectors[:200])
        index.add(ids[200:], vectors[200:])
        assert len(index) == 300
        assert np.array_equal(np.sort(index.ids()), np.sort(ids))

    def test_search_on_empty_index(self, make_index, small):
        scores, found = make_index(16).search(small[1][:2], 3)
        assert found.shape == (2, 3) and (found == -1).all()
        assert scores.dtype == np.float32 and (scores == EMPTY_SCORE).all()

    def test_k_larger_than_n(self, make_index, small):
        ids, vectors = small
        index = make_index(16)
        index.add(ids[:5], vectors[:5])
        scores, found = index.search(vectors[:3], 8)
        assert scores.shape == found.shape == (3, 8)
        assert scores.dtype == np.float32 and found.dtype == np.int64
        assert (found[:, 5:] == -1).all() and (scores[:, 5:] == EMPTY_SCORE).all()
        for row in found:
            assert sorted(row[:5]) == sorted(ids[:5])

    def test_results_sorted_best_first(self, make_index, small):
        ids, vectors = small
        index = make_index(16)
        index.add(ids, vectors)
        scores, found = index.search(vectors[:10], 5)
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        assert set(found.ravel()) <= set(ids)

    def test_remove(self, make_index, small):
        ids, vectors = small
        index = make_index(16)
        index.add(ids, vectors)
        removed = ids[::3]
        index.remove(np.concatenate([removed, [999_999]]))  # unknown ids are ignored
        assert len(index) == 300 - len(removed)
        assert not np.isin(index.ids(), removed).any()
        _, found = index.search(vectors, 10)
        assert not np.isin(found, removed).any()
        index.remove(np.array([], dtype=np.int64))
        index.add(removed[:2], vectors[:2])  # removed ids can come back
        assert len(index) == 302 - len(removed)

    def test_allowed_ids(self, kind, make_index, small):
        ids, vectors = small
        index = make_index(16)
        index.add(ids, vectors)
        allowed = ids[::4]  # 75 ids: few enough for every kind to search them exhaustively
        scores, found = index.search(vectors[:20], 10, allowed_ids=allowed)
        assert np.isin(found, allowed).all()  # every slot filled, each with an allowed id
        assert all(len(set(row)) == 10 for row in found)
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        if kind in EXACT_SCORES:
            mask = np.isin(ids, allowed)
            exact_scores, exact_ids = brute_force(vectors[:20], ids[mask], vectors[mask], 10)
            assert np.array_equal(found, exact_ids)
            np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
        else:  # every list probed: the full ranking by code scores, disallowed ids dropped
            nlist = index.effective_params["nlist"]
            _, ranking = index.search(vectors[:20], len(ids), nprobe=nlist)  # (20, 300)
            kept = [row[np.isin(row, allowed)][:10] for row in ranking]
            assert np.array_equal(found, np.array(kept))
        _, none = index.search(vectors[:2], 4, allowed_ids=np.array([], dtype=np.int64))
        assert (none == -1).all()
        # the filter sees later adds and removals
        index.remove(allowed[:5])
        _, found = index.search(vectors[:20], 10, allowed_ids=allowed)
        assert np.isin(found, allowed[5:]).all()
        fresh = np.array([10_000, 10_001, 10_002])
        index.add(fresh, vectors[:3] * 2)
        _, found = index.search(vectors[:3], 3, allowed_ids=np.concatenate([fresh, [77_777]]))
        assert all(sorted(row) == fresh.tolist() for row in found)

    def test_save_load_round_trip(self, make_index, small, tmp_path):
        ids, vectors = small
        index = make_index(16)
        index.add(ids, vectors)
        path = str(tmp_path / "index.bin")
        index.save(path)
        index.save(path)  # overwriting is fine
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        loaded = type(index).load(path)
        assert len(loaded) == len(index) and loaded.dim == 16
        assert np.array_equal(np.sort(loaded.ids()), np.sort(ids))
        for a, b in zip(index.search(vectors[:10], 7), loaded.search(vectors[:10], 7)):
            assert np.array_equal(a, b)

    def test_bad_inputs(self, make_index, small):
        ids, vectors = small
        index = make_index(16)
        with pytest.raises(BadInputError, match=r"got \(3,\) and \(2, 16\)"):
            index.add(ids[:3], vectors[:2])
        with pytest.raises(BadInputError, match="unique"):
            index.add(np.array([1, 1]), vectors[:2])
        with pytest.raises(BadInputError, match=">= 0"):
            index.add(np.array([-1, 2]), vectors[:2])
        with pytest.raises(BadInputError, match="NaN"):
            index.add(np.array([1]), np.full((1, 16), np.nan, dtype=np.float32))
        index.add(ids[:10], vectors[:10])
        with pytest.raises(BadInputError, match="already in the index"):
            index.add(ids[5:6], vectors[5:6])
        with pytest.raises(BadInputError, match=r"shape \(q, 16\)"):
            index.search(vectors[0], 3)
        with pytest.raises(BadInputError, match="k must be"):
            index.search(vectors[:1], 0)

    def test_recall_on_clusters(self, kind, clustered_index, clusters):
        ids, vectors, queries = clusters
        depth = RECALL_DEPTH[kind]
        exact_scores, exact_ids = brute_force(queries, ids, vectors, 10)
        scores, found = clustered_index.search(queries, depth)
        if kind == "flat":
            assert np.array_equal(found, exact_ids)
            np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
        assert recall(found, exact_ids) >= 0.9

    def test_recall_after_removing_a_third(self, kind, clustered_index, clusters):
        ids, vectors, queries = clusters
        removed = np.random.default_rng(3).choice(ids, size=len(ids) // 3, replace=False)
        clustered_index.remove(removed)
        keep = ~np.isin(ids, removed)
        assert len(clustered_index) == keep.sum()
        exact_scores, exact_ids = brute_force(queries, ids[keep], vectors[keep], 10)
        scores, found = clustered_index.search(queries, RECALL_DEPTH[kind])
        assert not np.isin(found, removed).any()
        if kind == "flat":
            assert np.array_equal(found, exact_ids)
            np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
        assert recall(found, exact_ids) >= 0.9

    @pytest.mark.parametrize("step", [2, 100])  # 2,500 or 50 of the 5,000 ids allowed
    def test_allowed_ids_on_clusters(self, kind, clustered_index, clusters, step):
        ids, vectors, queries = clusters
        allowed = ids[::step]
        mask = np.isin(ids, allowed)
        exact_scores, exact_ids = brute_force(queries, ids[mask], vectors[mask], 10)
        depth = RECALL_DEPTH[kind]
        scores, found = clustered_index.search(queries, depth, allowed_ids=allowed)
        assert np.isin(found[found >= 0], allowed).all()
        if kind == "flat" or len(allowed) <= EXACT_FILTER_MAX:
            # searched exhaustively: every slot is filled while allowed ids remain
            filled = min(depth, len(allowed))
            assert np.isin(found[:, :filled], allowed).all() and (found[:, filled:] == -1).all()
        # Above EXACT_FILTER_MAX, hnsw/ivf/ivfpq filter during the ANN traversal, which
        # promises no full rows; recall below bounds how many slots may stay empty.
        if kind == "flat":
            assert np.array_equal(found, exact_ids)
            np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
        assert recall(found, exact_ids) >= 0.9


class TestFaissIndex(VectorIndexContract):
    @pytest.fixture(params=INDEX_KINDS)
    def kind(self, request):
        return request.param

    @pytest.fixture
    def make_index(self, kind):
        return lambda dim: FaissIndex(kind, dim)

    def test_search_knobs_per_call(self, kind, small):
        ids, vectors = small
        index = FaissIndex(kind, 16)
        index.add(ids, vectors)
        default = index.search(vectors[:5], 4)
        if kind == "hnsw":
            assert np.array_equal(index.search(vectors[:5], 4, ef_search=128)[1], default[1])
            index.search(vectors[:5], 4, ef_search=4)
        if kind in ("ivf", "ivfpq"):
            assert np.array_equal(index.search(vectors[:5], 4, nprobe=16)[1], default[1])
            index.search(vectors[:5], 4, nprobe=1, allowed_ids=ids[:50])
        if kind != "hnsw":
            with pytest.raises(BadInputError, match="ef_search applies"):
                index.search(vectors[:1], 4, ef_search=8)
        if kind not in ("ivf", "ivfpq"):
            with pytest.raises(BadInputError, match="nprobe applies"):
                index.search(vectors[:1], 4, nprobe=8)

    def test_few_allowed_ids_are_searched_exactly(self, kind, clustered_index, clusters):
        ids, vectors, queries = clusters
        allowed = ids[3::250]  # 20 ids: ANN traversal alone would miss most of them
        mask = np.isin(ids, allowed)
        exact_scores, exact_ids = brute_force(queries, ids[mask], vectors[mask], 25)
        scores, found = clustered_index.search(queries, 25, allowed_ids=allowed[::-1])
        assert (found[:, 20:] == -1).all() and (scores[:, 20:] == EMPTY_SCORE).all()
        if kind == "ivfpq":  # every list probed, but scores come from 8-byte codes
            assert all(set(row[:20]) == set(allowed) for row in found)
        else:
            assert np.array_equal(found[:, :20], exact_ids[:, :20])
            np.testing.assert_allclose(scores[:, :20], exact_scores[:, :20], atol=1e-5)

    def test_params_restored_by_load(self, kind, small, tmp_path):
        ids, vectors = small
        knobs = {
            "flat": {},
            "hnsw": {"ef_search": 3, "M": 8},
            "ivf": {"nprobe": 1, "nlist": 8},
            "ivfpq": {"nprobe": 1, "nlist": 8, "m": 4, "nbits": 6},
        }[kind]
        index = FaissIndex(kind, 16, **knobs)
        index.add(ids, vectors)
        index.save(str(tmp_path / "i.faiss"))
        loaded = FaissIndex.load(str(tmp_path / "i.faiss"))
        assert loaded.kind == kind and loaded.params == index.params
        assert loaded.effective_params == index.effective_params
        assert all(loaded.params[name] == value for name, value in knobs.items())
        override = {"hnsw": {"ef_search": 3}, "ivf": {"nprobe": 1}, "ivfpq": {"nprobe": 1}}.get(
            kind, {}
        )
        for a, b in zip(loaded.search(vectors[:20], 5), loaded.search(vectors[:20], 5, **override)):
            assert np.array_equal(a, b)


def test_registry_matches_implementation():
    assert INDEX_KINDS == tuple(_DEFAULTS)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("lsh", {}, "unknown index kind 'lsh'; choose one of: flat, hnsw, ivf, ivfpq"),
        ("ivf", {"nprobe": 0}, "nprobe must be an integer > 0, got 0"),
        ("hnsw", {"M": 1}, "M must be an integer >= 2, got 1"),
        ("flat", {"nprobe": 4}, "unknown parameter 'nprobe' for kind 'flat'"),
        ("ivfpq", {"m": 5}, "m must divide dim 64, got m=5"),
        ("ivfpq", {"nbits": 17}, "nbits must be <= 16"),
    ],
)
def test_constructor_validation(kind, params, message):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
        FaissIndex(kind, 64, **params)


def test_auto_sizes():
    assert default_m(64) == 8 and default_m(384) == 48 and default_m(100) == 10
    assert auto_nlist(5000) == 128 and auto_nlist(100) == 2 and auto_nlist(1) == 1
    assert FaissIndex("ivfpq", 64).params["m"] == 8


def test_ivfpq_shrinks_codebooks_for_a_small_first_add():
    vectors = clustered(100, 64, seed=5)
    index = FaissIndex("ivfpq", 64)
    index.add(np.arange(100), vectors)
    assert index.effective_params["nbits"] == 6  # 2**6 = 64 <= 100 < 128
    assert index.effective_params["nlist"] == 2
    assert index.params["nbits"] == 8 and index.params["nlist"] is None
    _, found = index.search(vectors[:5], 1)
    assert (found[:, 0] >= 0).all()


def test_ivfpq_needs_two_vectors_to_train():
    with pytest.raises(BadInputError, match="at least 2 vectors"):
        FaissIndex("ivfpq", 8).add(np.array([0]), np.ones((1, 8), dtype=np.float32))
    single = FaissIndex("ivf", 8)  # plain IVF trains one list from one vector
    single.add(np.array([0]), np.ones((1, 8), dtype=np.float32))
    assert single.search(np.ones((1, 8), dtype=np.float32), 2)[1].tolist() == [[0, -1]]


def test_load_errors(tmp_path):
    with pytest.raises(BadInputError, match="no FAISS index"):
        FaissIndex.load(str(tmp_path / "missing.faiss"))


def test_single_queries_run_on_one_thread_and_restore_the_setting() -> None:
    import faiss

    from ragmix.index.faiss_files import threads_for
    from ragmix.index.faiss_index import FaissIndex

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        with threads_for(1):
            assert faiss.omp_get_max_threads() == 1
        assert faiss.omp_get_max_threads() == 2
        with threads_for(64):
            assert faiss.omp_get_max_threads() == 2
        index = FaissIndex("flat", 4)
        index.add(np.arange(3), np.eye(4, dtype=np.float32)[:3])
        scores, ids = index.search(np.eye(4, dtype=np.float32)[:1], 2)
        assert ids[0, 0] == 0 and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_reserve_then_batches_equals_adding_at_once(kind, small):
    """reserve() sizes the stored vectors once (flat, hnsw; the others ignore it): what the
    index holds and finds is what it would without it, whatever was added before."""
    ids, vectors = small
    params = {"nlist": 4} if kind in ("ivf", "ivfpq") else {}
    if kind == "ivfpq":
        params["m"] = 4
    plain, reserved = FaissIndex(kind, 16, **params), FaissIndex(kind, 16, **params)
    plain.add(ids, vectors)
    reserved.add(ids[:100], vectors[:100])
    reserved.reserve(len(ids))
    reserved.reserve(10)  # below its size: nothing happens
    for start in range(100, len(ids), 60):
        reserved.add(ids[start : start + 60], vectors[start : start + 60])
    assert len(reserved) == len(ids) and np.array_equal(np.sort(reserved.ids()), ids)
    if kind in ("flat", "hnsw"):  # same vectors in the same order: the same results
        want, got = plain.search(vectors[:20], 5), reserved.search(vectors[:20], 5)
        assert np.array_equal(want[1], got[1]) and np.array_equal(want[0], got[0])
