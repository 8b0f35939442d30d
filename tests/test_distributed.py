"""ragmix.distributed: sharded dense search and Ray ingest, on one real local Ray cluster.

The merge maths runs without Ray; every other test shares one two-CPU cluster
started once for the session (starting one takes seconds). Ray is installed by
``make test`` (the ``ray`` extra), so nothing here is skipped when it is missing.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import write_corpus

from ragmix.distributed import (
    ShardedSearcher,
    connect,
    ingest_documents_with_ray,
    ingest_with_ray,
    merge_topk,
    shard_backend,
    shard_topk,
    sharded_retriever,
    shutdown,
    write_shards,
)
from ragmix.encoders import HashingEncoder
from ragmix.errors import BadInputError, CollectionError, EncoderMismatchError
from ragmix.store import Collection

HANDBOOK = Path(__file__).resolve().parent / "fixtures" / "handbook"
# Ray Data reads its own deprecated settings when it copies its context (Ray 2.60).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
EMPTY = np.finfo(np.float32).min


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session: 2 CPUs, 512 MiB object store, no dashboard."""
    import ray

    connect(num_cpus=2, object_store_memory=512 * 1024 * 1024)
    assert ray.is_initialized()
    yield ray
    shutdown()


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _flat(ids: np.ndarray, vectors: np.ndarray):
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    return index


def _reference(ids, vectors, queries, k, allowed=None):
    """One flat index's top-k with its ties ordered by the smaller id (searched to the end)."""
    index = _flat(ids, vectors)
    params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    scores, found = index.search(queries, max(k, len(ids)), params=params)  # (q, >= k) each
    empty = found < 0
    order = np.lexsort((np.where(empty, np.iinfo(np.int64).max, found), -scores, empty), axis=-1)
    return (np.take_along_axis(scores, order, 1)[:, :k], np.take_along_axis(found, order, 1)[:, :k])


def _sharded(tmp_path, ids, vectors, queries, k, n_shards, allowed=None):
    shards = write_shards(ids, vectors, tmp_path / f"s{n_shards}", n_shards)
    parts = [shard_topk(faiss.read_index(str(p), faiss.IO_FLAG_MMAP), queries, k, allowed)
             for p in shards.paths()]
    return merge_topk(parts[::-1], k)  # any order of shards merges the same


# -- the merge, without Ray ------------------------------------------------------
@pytest.mark.parametrize("n_queries", [3, 40])  # below and above FAISS's BLAS threshold (20)
@pytest.mark.parametrize("n_shards", [1, 2, 5])
def test_merged_topk_is_one_flat_index_topk(tmp_path, n_queries, n_shards) -> None:
    rng = np.random.default_rng(n_shards)
    vectors, queries = _unit(rng, 3000, 32), _unit(rng, n_queries, 32)
    ids = rng.choice(10**6, size=3000, replace=False)  # ids with gaps, in no order
    flat_scores, flat_ids = _flat(ids, vectors).search(queries, 10)  # no ties here
    scores, found = _sharded(tmp_path, ids, vectors, queries, 10, n_shards)
    assert np.array_equal(found, flat_ids)
    assert np.array_equal(scores, flat_scores)  # bit for bit


def test_ties_go_to_the_smaller_id_whatever_the_shards(tmp_path) -> None:
    rng = np.random.default_rng(7)
    base = _unit(rng, 700, 16)
    vectors = np.concatenate([base, base, base])  # every score tied three ways, 1024+ apart
    ids = np.arange(len(vectors), dtype=np.int64)
    queries = _unit(rng, 25, 16)
    want = _reference(ids, vectors, queries, 10)
    for n_shards in (1, 2, 3, 4):
        got = _sharded(tmp_path, ids, vectors, queries, 10, n_shards)
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0]), n_shards


def test_allowed_ids_and_short_results(tmp_path) -> None:
    rng = np.random.default_rng(3)
    vectors, queries = _unit(rng, 400, 8), _unit(rng, 4, 8)
    ids = np.arange(400, dtype=np.int64) * 2
    allowed = np.array([4, 10, 398, 500, 798, 799])  # 799 is no id; 5 are
    scores, found = _sharded(tmp_path, ids, vectors, queries, 8, 3, allowed)
    want_scores, want_ids = _reference(ids, vectors, queries, 8, allowed)
    assert np.array_equal(found, want_ids) and np.array_equal(scores, want_scores)
    assert (found[:, 5:] == -1).all() and (scores[:, 5:] == EMPTY).all()


def test_write_shards_says_what_is_wrong(tmp_path) -> None:
    vectors = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(BadInputError, match="cannot cut 3 vectors into 4 shards"):
        write_shards(np.arange(3), vectors, tmp_path, 4)
    with pytest.raises(BadInputError, match="ids must be unique"):
        write_shards(np.array([1, 1, 2]), vectors, tmp_path, 2)
    with pytest.raises(CollectionError, match="write the shards with shard_backend"):
        ShardedSearcher.open(tmp_path / "nothing")


def test_without_the_extra_the_error_names_the_install(monkeypatch) -> None:
    from ragmix.distributed.cluster import ray_module
    from ragmix.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like
    with pytest.raises(MissingExtraError, match=r"pip install 'ragmix\[ray\]'"):
        ray_module()


# -- sharded search on Ray actors ------------------------------------------------
@pytest.fixture(scope="module")
def handbook_collection(tmp_path_factory):
    col = Collection.create(tmp_path_factory.mktemp("hb") / "col", encoder="hashing-128")
    col.add([HANDBOOK], commit_chunks=4)
    yield col
    col.close()


def test_sharded_searcher_matches_the_collection(ray_cluster, handbook_collection, tmp_path):
    col = handbook_collection
    shards = shard_backend(col.backend, tmp_path / "shards", 3, read_batch=5)
    queries = col.encoder.encode_queries(["bees in winter", "flat tyre", "tides", "yeast"])
    allowed = col.backend.chunk_ids("*chess*")
    with ShardedSearcher.open(tmp_path / "shards", num_cpus=0.5) as searcher:
        assert len(searcher) == col.backend.count_chunks() and searcher.dim == 128
        assert np.array_equal(searcher.ids(), col.backend.chunk_ids())
        for k in (1, 5, len(searcher) + 3):
            got, want = searcher.search(queries, k), _reference(
                col.backend.chunk_ids(), col.backend.embeddings(col.backend.chunk_ids()),
                queries, k)
            assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])
        got = searcher.search(queries, 3, allowed_ids=allowed)
        assert set(got[1][got[1] >= 0].tolist()) <= set(allowed.tolist())
        assert np.array_equal(got[1], col.backend.vector_search(queries, 3, allowed_ids=allowed)[1])
        for mode in ("dense", "hybrid"):  # the retriever plugs into hybrid search unchanged
            query = "how do bees survive the winter?"
            hits = col.hits(sharded_retriever(col, searcher, mode=mode).retrieve(query, 4))
            _same_ranking(hits, col.search(query, 4, mode=mode))
        with pytest.raises(BadInputError, match="read-only"):
            searcher.add(np.array([1]), queries[:1])
        with pytest.raises(BadInputError, match=r"shape \(q, 128\)"):
            searcher.search(queries[0], 3)
    assert shards.generation == col.backend.generation


def _same_ranking(got, want) -> None:
    """Equal scores rank by rank, and equal ids wherever a score is not tied (FAISS orders
    a collection's own ties as it met them; the shards order them by id)."""
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-6)
    scores = [round(h.score, 5) for h in want]
    for rank, (a, b) in enumerate(zip(got, want)):
        if scores.count(scores[rank]) == 1:
            assert a.chunk_id == b.chunk_id, rank


# -- ingest with Ray Data --------------------------------------------------------
def _snapshot(col: Collection) -> tuple[list, np.ndarray, np.ndarray, int]:
    ids = col.backend.chunk_ids()
    docs = [(d.doc_id, d.content_hash, d.n_chunks) for d in col.documents()]
    return docs, ids, col.backend.embeddings(ids.tolist()), col.backend.generation


class _Recorder:
    """A Progress that records what it is told and can fail after some commits."""

    def __init__(self, fail_after_commits: int | None = None) -> None:
        self.stages: list[str] = []
        self.embedded = 0
        self.commits = 0
        self.fail_after = fail_after_commits

    def start(self, stage: str, total: int | None) -> None:
        self.stages.append(stage)

    def advance(self, stage: str, n: int = 1) -> None:
        if stage == "embedding":
            self.embedded += n
            self.commits += 1
            if self.commits == self.fail_after:
                raise KeyboardInterrupt("simulated crash after a commit")


def test_ray_ingest_resumes_after_a_crash_and_stores_what_local_ingest_stores(
        ray_cluster, tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus", 10, words_per_file=300)
    with Collection.create(tmp_path / "local", encoder="hashing-64") as local:
        local.add([corpus], commit_chunks=8)
        want = _snapshot(local)
    with Collection.create(tmp_path / "ray", encoder="hashing-64") as col:
        with pytest.raises(KeyboardInterrupt):  # the driver dies after its second commit
            ingest_with_ray(col, [corpus], concurrency=2, batch_size=4, commit_chunks=8,
                            num_cpus=0.5, progress=_Recorder(fail_after_commits=2))
        stored = col.backend.count_documents()
        assert 0 < stored < 10  # whole documents only, as committed
        progress = _Recorder()
        report = ingest_with_ray(col, [corpus], concurrency=1, batch_size=4, commit_chunks=8,
                                 num_cpus=0.5,
                                 encoder_factory=functools.partial(HashingEncoder, 64),
                                 progress=progress)
        assert (report.unchanged, report.added) == (stored, 10 - stored)  # skipped by hash
        got = _snapshot(col)
        assert col.search("marker3", 1, mode="hybrid")[0].source.endswith("doc0003.md")
    assert got[0] == want[0]  # the same documents, content hashes and chunk counts
    assert np.array_equal(got[1], want[1])  # the same chunk ids: commits in the same groups
    np.testing.assert_allclose(got[2], want[2], atol=1e-6)
    assert got[3] == want[3]  # and as many commits
    assert progress.embedded == report.chunks
    assert progress.stages[-2:] == ["embedding", "updating indexes"]


def test_ray_ingest_with_nothing_to_do_starts_no_actors(tmp_path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        report = ingest_documents_with_ray(col, [], concurrency=1)
        assert report.chunks == 0 and col.backend.generation == 0


def test_ray_ingest_rejects_another_encoder(ray_cluster, tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus", 1)
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        with pytest.raises(Exception, match="give an encoder_factory") as info:
            ingest_with_ray(col, [corpus], concurrency=1, num_cpus=0.5,
                            encoder_factory=functools.partial(HashingEncoder, 32))
        assert col.backend.count_documents() == 0
    assert EncoderMismatchError.__name__ in str(info.value)
    with pytest.raises(BadInputError, match="concurrency must be an integer > 0, got 0"):
        ingest_with_ray(col, [corpus], concurrency=0)


@pytest.mark.models
def test_ray_ingest_with_the_packaged_minilm(ray_cluster, tmp_path) -> None:
    """The int8 ONNX all-MiniLM-L6-v2 (packaged): an actor loads it in seconds, torch's in tens."""
    with Collection.create(tmp_path / "local", encoder="minilm-int8") as local:
        local.add([HANDBOOK])
        want = _snapshot(local)
    with Collection.create(tmp_path / "ray", encoder="minilm-int8") as col:
        ingest_with_ray(col, [HANDBOOK], concurrency=1, num_cpus=1)
        got = _snapshot(col)
        top = col.search("what stops a bee colony from dying in the cold season?", 1, mode="dense")
    assert got[0] == want[0] and np.array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], atol=1e-5)
    assert top[0].source.endswith("beekeeping.md")


def test_cli_index_with_ray_stores_what_local_index_stores(ray_cluster, tmp_path) -> None:
    from click.testing import CliRunner

    from ragmix.cli.main import cli

    corpus = write_corpus(tmp_path / "corpus", 4, words_per_file=150)
    runner = CliRunner()
    for name, extra in (("local", []), ("ray", ["--ray", "--ray-actors", "1"])):
        result = runner.invoke(cli, ["index", str(corpus), "-c", str(tmp_path / name),
                                     "--encoder", "hashing-64", *extra])
        assert result.exit_code == 0, result.output
        assert "indexed 4 new" in result.output
    with Collection.open(tmp_path / "local") as local, Collection.open(tmp_path / "ray") as col:
        ids = local.backend.chunk_ids()
        assert np.array_equal(col.backend.chunk_ids(), ids)
        np.testing.assert_allclose(col.backend.embeddings(ids), local.backend.embeddings(ids),
                                   atol=1e-6)


def test_cli_ray_options_need_ray(tmp_path) -> None:
    from click.testing import CliRunner

    from ragmix.cli.main import cli

    corpus = write_corpus(tmp_path / "corpus", 1)
    result = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(tmp_path / "c"),
                                      "--address", "ray://head:10001"])
    assert result.exit_code == 2 and "--address applies with --ray only" in result.output
