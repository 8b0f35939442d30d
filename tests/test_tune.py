"""ANN auto-tuning (ragmix.store.tune, ragmix tune): the smallest ef_search / nprobe reaching
a recall@10 target, checked against brute-force scans, on both backends."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmix.cli.main import cli
from ragmix.errors import BadInputError
from ragmix.store import Collection, pg, tune
from ragmix.store.pg.home import location_of
from ragmix.store.tune import (
    NothingToTuneError,
    RecallUnreachableError,
    drop_self,
    exact_top_k,
    query_recalls,
    save_tuning,
    smallest_reaching,
    tune_search,
)
from ragmix.types import Chunk, Document

DIM, N, K = 32, 3000, 10
_names = itertools.count()


class StoredOnly:
    """An encoder that is never called: the vectors are put into the store directly."""

    name, dim = "table-32", DIM

    def encode_queries(self, texts):
        raise AssertionError("tuning on stored passages must not embed anything")

    encode_documents = encode_queries


def clustered(n: int, seed: int) -> np.ndarray:
    """(n, DIM) unit vectors around 50 fixed centres: neighbours that an ANN index can miss."""
    centres = np.random.default_rng(0).standard_normal((50, DIM))  # (50, DIM)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 50, n)] + 0.35 * rng.standard_normal((n, DIM))  # (n, DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


PASSAGES = clustered(N, seed=1)  # chunk i + 1 holds PASSAGES[i]


def make(location, kind: str, **params) -> Collection:
    col = Collection.create(location, encoder=StoredOnly(), index=kind, index_params=params)
    with col.backend.batch() as batch:
        for i, vector in enumerate(PASSAGES):
            text = f"p{i}"
            batch.put(Document(text, text, source="synthetic"),
                      [Chunk(text, 0, 0, len(text), text)], vector[None])
    col.backend.refresh()
    return col


def brute_recalls(col: Collection, queries: np.ndarray, **knob: int) -> np.ndarray:
    """(q,) recall@K of each query under col's vector search at ``knob``, by a plain loop: a
    found chunk counts if it is in the exact top K or ties the K-th exact score (float32)."""
    full = queries @ PASSAGES.T  # (q, N); chunk id i + 1 is PASSAGES[i]
    _, found = col.backend.vector_search(queries, K, **knob)  # (q, K)
    recalls = []
    for row, ids in zip(full, found.tolist()):
        exact = set((np.argsort(-row)[:K] + 1).tolist())
        kth = np.sort(row)[-K]
        recalls.append(sum(i in exact or (i > 0 and row[i - 1] >= kth - 1e-6) for i in ids) / K)
    return np.array(recalls)


def brute_recall(col: Collection, queries: np.ndarray, **knob: int) -> float:
    return float(brute_recalls(col, queries, **knob).mean())


def lower_bound(recalls: np.ndarray) -> float:
    """The mean less Z standard errors: what tune_search compares with the target."""
    return float(recalls.mean() - tune.Z * recalls.std(ddof=1) / np.sqrt(len(recalls)))


# -- the pure parts ---------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.integers(0, 12),
       st.floats(0, 1))
def test_smallest_reaching_is_the_first_hit_of_a_linear_scan(steps, low, target):
    recalls = sorted(steps)  # a non-decreasing recall curve over low .. high
    high = low + len(recalls) - 1
    calls: list[int] = []

    def evaluate(value: int) -> float:
        calls.append(value)
        return recalls[value - low]

    scan = next((v for v in range(low, high + 1) if recalls[v - low] >= target), None)
    assert smallest_reaching(evaluate, low, high, target) == scan
    assert all(low <= v <= high for v in calls)


def test_exact_top_k_in_blocks_matches_a_full_sort(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "EXACT_BLOCK", 7)  # many blocks, a ragged last one
    with make(tmp_path / "flat", "flat") as col:
        queries = clustered(20, seed=2)
        scores, ids = exact_top_k(col.backend, queries, K)
    full = queries @ PASSAGES.T  # (20, N)
    assert ids.tolist() == (np.argsort(-full, axis=1)[:, :K] + 1).tolist()
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :K], rtol=1e-6)


def test_drop_self_and_recall_count_ties_and_skip_the_query_itself():
    scores = np.array([[1.0, 0.8, 0.5], [0.9, 0.7, 0.7]])
    ids = np.array([[4, 2, 9], [3, 5, 6]])
    s, i = drop_self(scores, ids, np.array([4, 8]), 2)
    assert i.tolist() == [[2, 9], [3, 5]] and s.tolist() == [[0.8, 0.5], [0.9, 0.7]]
    # 6 ties the 2nd exact score (5's): a hit; an empty slot (-1) never is
    true_s, true_i = np.array([[0.9, 0.7], [0.9, 0.7]]), np.array([[3, 5], [3, 5]])
    found_s, found_i = np.array([[0.9, 0.7], [0.9, 0.7]]), np.array([[3, 6], [3, -1]])
    assert query_recalls(found_s, found_i, true_s, true_i).tolist() == [1.0, 0.5]
    # a near miss (1e-4 below the K-th score) is a miss
    assert query_recalls(np.array([[0.9, 0.6999]]), np.array([[3, 6]]), true_s[:1],
                         true_i[:1]).tolist() == [0.5]


# -- the embedded backend ---------------------------------------------------------
@pytest.mark.parametrize(("kind", "params", "knob", "target"), [
    ("hnsw", {"M": 4, "ef_search": 10}, "ef_search", 0.97),
    ("ivf", {"nprobe": 1}, "nprobe", 0.99),
])
def test_tune_picks_the_smallest_value_that_reaches_the_target(tmp_path, kind, params, knob,
                                                               target):
    queries = clustered(300, seed=3)
    with make(tmp_path / kind, kind, **params) as col:
        assert brute_recall(col, queries) < target  # the knob as built is too low
        result = tune_search(col.backend, recall=target, k=K, sample=300, holdout=0,
                             queries=queries)
        assert (result.kind, result.knob, result.previous) == (kind, knob, params[knob])
        # the same recall by a plain loop, and every smaller value misses the target
        chosen = brute_recalls(col, queries, **{knob: result.value})
        assert chosen.mean() == pytest.approx(result.recall)
        assert lower_bound(chosen) >= target and result.z == tune.Z
        low = K if kind == "hnsw" else 1  # ef_search below k is not tried
        for value in range(low, result.value):
            assert lower_bound(brute_recalls(col, queries, **{knob: value})) < target, value
        # z=0: the first value whose mean alone reaches the target
        literal = tune_search(col.backend, recall=target, sample=300, holdout=0,
                              queries=queries, z=0).value
        assert literal <= result.value and brute_recall(col, queries, **{knob: literal}) >= target
        assert all(brute_recall(col, queries, **{knob: v}) < target for v in range(low, literal))
        assert [p.value for p in result.curve] == sorted({p.value for p in result.curve})
        assert result.holdout_recall is None and result.n_holdout == 0


@pytest.mark.parametrize(("kind", "params"), [("hnsw", {"M": 4, "ef_search": 10}),
                                              ("ivf", {"nprobe": 1})])
def test_the_tuned_value_reaches_the_target_on_held_out_queries(tmp_path, kind, params):
    with make(tmp_path / kind, kind, **params) as col:
        # on passages: held-out passages
        result = tune_search(col.backend, recall=0.95, sample=500, holdout=500, seed=0)
        assert result.queries == "passages" and (result.n_tune, result.n_holdout) == (500, 500)
        assert result.recall >= 0.95 and result.holdout_recall >= 0.95
        # on queries: held-out ones, and new queries the tuning never saw
        result = tune_search(col.backend, recall=0.95, sample=400, holdout=400,
                             queries=clustered(800, seed=7))
        assert result.queries == "given" and result.holdout_recall >= 0.95
        assert brute_recall(col, clustered(500, seed=4), **{result.knob: result.value}) >= 0.95


def test_save_tuning_persists_and_a_reopened_collection_searches_with_it(tmp_path):
    location = tmp_path / "hnsw"
    queries = clustered(100, seed=5)
    with make(location, "hnsw", M=4, ef_search=10) as col:
        result = tune_search(col.backend, recall=0.97, sample=300, holdout=100)
        tuned = col.backend.vector_search(queries, K, ef_search=result.value)
        save_tuning(col, result)
        assert col.manifest.index["ef_search"] == result.value  # the open handle too
        assert col.backend.views.dense(persist=False).params["ef_search"] == result.value
    manifest = json.loads((location / "manifest.json").read_text())
    assert manifest["index"] == {"kind": "hnsw", "M": 4, "ef_search": result.value}
    sidecar = json.loads((location / "dense.faiss.json").read_text())
    assert sidecar["params"]["ef_search"] == 10  # the saved view is not rewritten ...
    with Collection.open(location) as col:  # ... the manifest's knob wins when it loads
        assert col.backend.views.dense(persist=False).params["ef_search"] == result.value
        plain = col.backend.vector_search(queries, K)
    assert plain[1].tolist() == tuned[1].tolist()


def test_a_flat_index_has_nothing_to_tune(tmp_path):
    with make(tmp_path / "flat", "flat") as col:
        with pytest.raises(NothingToTuneError, match="'flat' searches exactly"):
            tune_search(col.backend)
    result = CliRunner().invoke(cli, ["tune", "-c", str(tmp_path / "flat")])
    assert result.exit_code == 0, result.output
    assert "'flat' searches exactly: recall is 1, nothing to tune" in words(result.output)


def test_an_ivfpq_target_its_codes_cannot_reach_raises_naming_the_fix(tmp_path):
    with make(tmp_path / "ivfpq", "ivfpq", m=1, nbits=2, nlist=8) as col:
        with pytest.raises(RecallUnreachableError, match="larger m") as caught:
            tune_search(col.backend, recall=0.99, sample=200, holdout=0)
    err = caught.value
    assert err.best.recall < 0.99 and err.best.recall == max(p.recall for p in err.curve)
    assert f"{err.best.recall:.3f}" in str(err) and "tried up to 8" in str(err)


def test_bad_options_are_named(tmp_path):
    with make(tmp_path / "ivf", "ivf") as col:
        for options, message in [({"recall": 1.5}, "recall must be in"),
                                  ({"k": 0}, "k must be"), ({"k": N}, "lower k"),
                                  ({"queries": np.zeros((3, 5))}, r"shape \(q >= 1, 32\)")]:
            with pytest.raises(BadInputError, match=message):
                tune_search(col.backend, **options)


# -- the CLI ----------------------------------------------------------------------
def words(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_cli_tune_prints_the_curve_and_saves_unless_dry_run(tmp_path):
    location = tmp_path / "ivf"
    make(location, "ivf", nprobe=1).close()
    before = (location / "manifest.json").read_bytes()
    runner = CliRunner()
    args = ["tune", "-c", str(location), "--recall", "0.95", "--sample", "300",
            "--holdout", "200", "--passage-vectors"]  # StoredOnly cannot embed queries
    dry = runner.invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "chosen" in dry.output and "held-out recall@10" in words(dry.output)
    assert "dry run: nothing saved" in words(dry.output)
    assert (location / "manifest.json").read_bytes() == before
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    value = json.loads((location / "manifest.json").read_text())["index"]["nprobe"]
    assert value > 1 and f"nprobe={value} (was 1)" in words(done.output)


def indexed_hnsw(tmp_path):
    """(location, corpus folder) of a small hashing-encoder HNSW collection built by the CLI."""
    corpus = write_corpus(tmp_path / "corpus", 12, words_per_file=120)
    location = tmp_path / "col"
    indexed = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(location), "--encoder",
                                       "hashing-256", "--index", "hnsw", "--chunk-size", "20"])
    assert indexed.exit_code == 0, indexed.output
    return location, corpus


def test_cli_tune_embeds_a_queries_file_with_the_collection_encoder(tmp_path):
    location, corpus = indexed_hnsw(tmp_path)
    runner = CliRunner()
    queries = tmp_path / "queries.txt"
    queries.write_text("marker3 retrieval\n\nvector index fusion\nmarker7 dense\n")
    result = runner.invoke(cli, ["tune", "-c", str(location), "--queries", str(queries),
                                 "--holdout", "1", "--recall", "0.9", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "recall@10 on 2 tuning queries" in words(result.output)


def test_cli_tune_defaults_to_windows_of_passages_embedded_as_queries(tmp_path):
    location, corpus = indexed_hnsw(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["tune", "-c", str(location), "--sample", "40", "--holdout",
                                 "20", "--recall", "0.9", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "recall@10 on 40 tuning queries" in words(result.output)
    assert "windows of the collection's passages" in words(result.output)
    both = runner.invoke(cli, ["tune", "-c", str(location), "--passage-vectors", "--queries",
                               str(corpus / "doc0000.md")])
    assert both.exit_code == 2 and "give one" in words(both.output)


def test_window_queries_are_seeded_windows_of_stored_passages(tmp_path):
    from ragmix.store.tune_queries import window_queries

    location = tmp_path / "col"
    col = Collection.create(location, encoder="hashing-64")
    col.add([write_corpus(tmp_path / "corpus", 5, words_per_file=60)])
    texts = [row.text for row in col.backend.chunk_rows(
        [int(i) for i in col.backend.chunk_ids()]).values()]
    queries = window_queries(col.backend, 30, seed=3)
    assert queries == window_queries(col.backend, 30, seed=3)
    assert len(queries) == 30 and all(6 <= len(q.split()) <= 12 for q in queries)
    assert all(any(q in " ".join(t.split()) for t in texts) for q in queries)
    col.close()


# -- PostgreSQL (the real server of tests/pg_server.py) ---------------------------
@pytest.fixture
def pg_location(pg_url, monkeypatch, tmp_path):
    """A factory of locations of fresh PostgreSQL collections, dropped at teardown."""
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path / "cache"))
    names: list[str] = []

    def fresh() -> str:
        names.append(f"tune_{next(_names)}")
        return location_of(pg_url, names[-1])

    yield fresh
    with pg.connect(pg_url) as conn:
        for name in names:
            pg.drop_schema(conn, name)


def test_pg_hnsw_tunes_ef_search_and_keeps_it_in_the_meta_table(pg_location):
    location = pg_location()
    queries = clustered(200, seed=6)
    # 0.95: reached well below ef_search ~400, where on 3000 rows the planner starts to
    # prefer an exact sequential scan to the index (pgvector's cost grows with ef_search)
    with make(location, "hnsw", M=4, ef_construction=16, ef_search=10) as col:
        assert brute_recall(col, queries) < 0.95
        result = tune_search(col.backend, recall=0.95, queries=queries, sample=200, holdout=0)
        assert (result.knob, result.previous) == ("ef_search", 10)
        chosen = brute_recalls(col, queries, ef_search=result.value)
        assert chosen.mean() == pytest.approx(result.recall) and lower_bound(chosen) >= 0.95
        assert lower_bound(brute_recalls(col, queries, ef_search=result.value - 1)) < 0.95
        save_tuning(col, result)
        assert col.backend.settings.ef_search == result.value
    with Collection.open(location) as col:
        assert col.manifest.index["ef_search"] == result.value
        assert col.backend.settings.ef_search == result.value
        with pytest.raises(BadInputError, match="nprobe does not apply"):
            col.backend.vector_search(queries, K, nprobe=3)
