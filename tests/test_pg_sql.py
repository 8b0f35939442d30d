"""The pgvector SQL layer (ragmix.store.pg) against the real server of tests/pg_server.py."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.store import pg
from ragmix.types import Chunk, Document

DIM = 32


@pytest.fixture(scope="module")
def conn(pg_url):
    connection = pg.connect(pg_url)
    yield connection
    connection.close()


@pytest.fixture
def tables(conn, request):
    """A fresh collection named after the test, dropped afterwards."""
    name = request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:48]
    pg.drop_schema(conn, name)
    yield pg.create_schema(conn, pg.CollectionTables(name, dim=DIM))
    pg.drop_schema(conn, name)


def clustered(n: int, dim: int = DIM, *, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """(n, dim) unit vectors around ``n_clusters`` random centres: structure, unlike noise.

    The centres are the same for every ``seed``, so queries fall in the data's clusters.
    """
    centres = np.random.default_rng(dim).standard_normal((n_clusters, dim))  # (c, dim)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, n_clusters, n)] + 0.35 * rng.standard_normal((n, dim))  # (n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def items(vectors: np.ndarray, *, per_doc: int = 1, prefix: str = "d",
          source_of=lambda i: f"src/{i % 50:02d}/doc.txt", text_of=lambda j: f"chunk {j}"):
    """Documents of ``per_doc`` chunks each over ``vectors``, for load_documents."""
    out = []
    for i in range(len(vectors) // per_doc):
        rows = range(i * per_doc, (i + 1) * per_doc)
        texts = [text_of(j) for j in rows]
        body = " ".join(texts)
        doc = Document(f"{prefix}{i}", body, source=source_of(i), title=f"T{i}")
        chunks, start = [], 0
        for position, text in enumerate(texts):
            chunks.append(Chunk(doc.doc_id, position, start, start + len(text), text))
            start += len(text) + 1
        out.append((doc, chunks, vectors[rows.start:rows.stop]))
    return out


def brute_force(x: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) ids of the largest inner products, ties by id."""
    scores = queries @ x.T  # (q, n)
    return np.stack([ids[np.lexsort((ids, -row))[:k]] for row in scores])


# -- connecting and names ---------------------------------------------------------------
def test_connect_checks_the_server(conn):
    info = pg.server_info(conn)
    assert info.server_version_num >= 180000 and info.pgvector >= (0, 8, 0)
    assert conn.autocommit


def test_connect_error_names_the_url_without_its_password():
    with pytest.raises(pg.PostgresStoreError, match=r"me:\*\*\*@127\.0\.0\.1:1/x") as err:
        pg.connect("postgresql://me:secret@127.0.0.1:1/x")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a-b", "a" * 49,
                                  'x"; DROP SCHEMA public; --'])
def test_collection_names_are_checked(name):
    with pytest.raises(BadInputError, match="collection name"):
        pg.CollectionTables(name, dim=4)


def test_schema_round_trip(conn, tables):
    with pytest.raises(pg.PostgresStoreError, match="exists already"):
        pg.create_schema(conn, tables)
    assert pg.open_schema(conn, tables.name) == tables
    assert tables.name in pg.list_collections(conn)
    assert pg.generation(conn, tables) == 0
    with pytest.raises(pg.PostgresStoreError, match="no collection 'absent'"):
        pg.open_schema(conn, "absent")
    with pytest.raises(BadInputError, match="text search configuration 'klingon'"):
        pg.create_schema(conn, pg.CollectionTables("other", dim=4, text_search="klingon"))


# -- loading, generations, deletes ------------------------------------------------------
def test_load_assigns_ascending_ids_and_replaces_whole_documents(conn, tables):
    x = clustered(6)
    first = pg.load_documents(conn, tables, items(x, per_doc=3))
    assert first.tolist() == sorted(first.tolist()) and len(first) == 6
    again = pg.load_documents(conn, tables, items(x[:3], per_doc=3))  # d0 again
    assert again.min() > first.max()
    assert pg.chunk_ids(conn, tables).tolist() == sorted(first[3:].tolist() + again.tolist())
    row = conn.execute(f"SELECT text, start_offset, end_offset, source, title FROM "
                       f"ragmix_{tables.name}.chunks WHERE id = %s", (int(again[1]),)).fetchone()
    assert row == ("chunk 1", 8, 15, "src/00/doc.txt", "T0")
    stored = conn.execute(f"SELECT embedding FROM ragmix_{tables.name}.chunks WHERE id = %s",
                          (int(again[2]),)).fetchone()[0]
    np.testing.assert_array_equal(stored.to_numpy(), x[2])  # float32, bit for bit


def test_a_failed_batch_leaves_nothing(conn, tables):
    good = items(clustered(4))
    bad = items(clustered(2, dim=DIM + 1), prefix="bad")
    with pytest.raises(BadInputError, match=r"shape \(1, 32\), got \(1, 33\)"):
        with conn.transaction():
            pg.load_documents(conn, tables, good)
            pg.bump_generation(conn, tables)
            pg.load_documents(conn, tables, bad)
    assert pg.chunk_ids(conn, tables).size == 0 and pg.generation(conn, tables) == 0
    with conn.transaction():
        pg.load_documents(conn, tables, good)
        assert pg.bump_generation(conn, tables) == 1
    assert pg.generation(conn, tables) == 1 and pg.chunk_ids(conn, tables).size == 4


def test_delete_returns_the_removed_chunks(conn, tables):
    ids = pg.load_documents(conn, tables, items(clustered(6), per_doc=2))
    removed = pg.delete_documents(conn, tables, ["d1", "nope"])
    assert removed.tolist() == ids[2:4].tolist()
    assert pg.chunk_ids(conn, tables).tolist() == ids[[0, 1, 4, 5]].tolist()
    scores, found = pg.vector_search(conn, tables, clustered(6)[2:3], 6, exact=True)
    assert set(found[0].tolist()) == set(ids[[0, 1, 4, 5]].tolist()) | {-1}


# -- vector search ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(conn):
    """2,000 clustered vectors in 2,000 documents (50 sources), with an HNSW index."""
    tables = pg.CollectionTables("recall_hnsw", dim=DIM)
    pg.drop_schema(conn, tables.name)
    pg.create_schema(conn, tables)
    x = clustered(2000, seed=1)
    ids = pg.load_documents(conn, tables, items(x))
    pg.build_index(conn, tables, pg.HnswOptions(m=16, ef_construction=64),
                   maintenance_work_mem="64MB")
    yield tables, x, ids
    pg.drop_schema(conn, tables.name)


def test_hnsw_top_k_equals_exact_top_k(conn, loaded):
    tables, x, ids = loaded
    queries = clustered(20, seed=2)
    truth = brute_force(x, ids, queries, 10)
    exact_scores, exact_ids = pg.vector_search(conn, tables, queries, 10, exact=True)
    np.testing.assert_array_equal(exact_ids, truth)
    np.testing.assert_allclose(exact_scores, np.take_along_axis(
        queries @ x.T, np.searchsorted(ids, truth), axis=1), rtol=1e-5, atol=1e-6)
    scores, found = pg.vector_search(conn, tables, queries, 10, ef_search=400)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-6)
    # At pgvector's default ef_search (40) recall@10 is a little lower; the graph is
    # built with random levels, so it varies between runs.
    _, default = pg.vector_search(conn, tables, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(default, truth)])
    assert recall >= 0.95, recall
    assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"  # SET LOCAL only


def test_search_uses_the_hnsw_index(conn, loaded):
    tables, _, _ = loaded
    plan = conn.execute(
        f"EXPLAIN SELECT id FROM ragmix_{tables.name}.chunks ORDER BY embedding <#> %s LIMIT 10",
        (clustered(1)[0],)).fetchall()
    assert "chunks_embedding_idx" in "\n".join(r[0] for r in plan)
    assert pg.index_options(conn, tables) == pg.HnswOptions(m=16, ef_construction=64)


def test_filtered_search_returns_only_matching_rows_and_fills_k(conn, loaded):
    tables, x, ids = loaded
    queries = clustered(10, seed=3)
    # source src/07/*: 2% of the documents (40 of 2000)
    scores, found = pg.vector_search(conn, tables, queries, 10, source="src/07/*")
    matching = ids[np.arange(len(ids)) % 50 == 7]
    assert (found != -1).all() and set(found.ravel().tolist()) <= set(matching.tolist())
    assert (np.diff(scores, axis=1) <= 0).all()  # re-sorted: best first
    truth = brute_force(x[np.searchsorted(ids, matching)], matching, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9, recall
    # The planner reads this 2,000-row table exactly; on the HNSW index the same call
    # still fills k, by iterative scan (without it, 2% of ef_search = 40 is about 1 row).
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(b"EXPLAIN " + _vector_sql(conn, tables, "source ~ %(source)s"),
                            {"q": queries[0], "k": 10, "shortlist": 10, "source": "x"}).fetchall()
        assert "Index Scan using chunks_embedding_idx" in "\n".join(r[0] for r in plan)
        on_index, found = pg.vector_search(conn, tables, queries, 10, source="src/07/*")
    assert (found != -1).all() and set(found.ravel().tolist()) <= set(matching.tolist())
    assert (np.diff(on_index, axis=1) <= 0).all()
    _, by_doc = pg.vector_search(conn, tables, queries, 5, doc_ids=["d7", "d57", "d99"])
    assert set(by_doc.ravel().tolist()) == {int(ids[7]), int(ids[57]), int(ids[99]), -1}
    assert (by_doc[:, 3:] == -1).all()


def _vector_sql(conn, tables, where: str) -> bytes:
    from psycopg import sql

    from ragmix.store.pg.search import _vector_query

    return _vector_query(tables, sql.SQL(where), exact=False).as_bytes(conn)


@pytest.mark.parametrize("n_allowed", [30, 3000])  # exact below 2000 ids, the index above
def test_allowed_ids_keep_exactly_those_chunks(conn, loaded, n_allowed):
    tables, x, ids = loaded
    allowed = np.random.default_rng(4).choice(ids, size=min(n_allowed, len(ids) - 100),
                                              replace=False)
    allowed = np.concatenate([allowed, [10**9]])  # an id not stored is ignored
    queries = clustered(5, seed=5)
    _, found = pg.vector_search(conn, tables, queries, 10, allowed_ids=allowed)
    assert (found != -1).all() and set(found.ravel().tolist()) <= set(allowed.tolist())


def test_search_checks_its_arguments(conn, loaded):
    tables, _, _ = loaded
    with pytest.raises(BadInputError, match=r"shape \(q, 32\), got \(32,\)"):
        pg.vector_search(conn, tables, np.zeros(DIM), 10)
    with pytest.raises(BadInputError, match="k must be > 0, got 0"):
        pg.vector_search(conn, tables, np.zeros((1, DIM)), 0)
    with pytest.raises(BadInputError, match="ef_search must be in 1..1000, got 5000"):
        pg.vector_search(conn, tables, np.zeros((1, DIM)), 10, ef_search=5000)


def test_ivfflat_with_all_probes_is_exact(conn, tables):
    x = clustered(500, seed=6)
    ids = pg.load_documents(conn, tables, items(x))
    pg.build_index(conn, tables, pg.IvfflatOptions(lists=10))
    queries = clustered(5, seed=7)
    _, found = pg.vector_search(conn, tables, queries, 10, probes=10)
    np.testing.assert_array_equal(found, brute_force(x, ids, queries, 10))
    assert pg.index_options(conn, tables) == pg.IvfflatOptions(lists=10)


def test_halfvec_storage(conn):
    tables = pg.CollectionTables("half_store", dim=DIM, storage="halfvec", text_search=None)
    pg.drop_schema(conn, tables.name)
    pg.create_schema(conn, tables)
    try:
        x = clustered(500, seed=8)
        ids = pg.load_documents(conn, tables, items(x))
        pg.build_index(conn, tables)
        queries = clustered(5, seed=9)
        scores, found = pg.vector_search(conn, tables, queries, 10, ef_search=100)
        # the half-precision index picks a shortlist, the float32 column scores it
        np.testing.assert_array_equal(found, brute_force(x, ids, queries, 10))
        np.testing.assert_allclose(scores, np.take_along_axis(
            queries @ x.T, np.searchsorted(ids, found), axis=1), rtol=0, atol=1e-5)
        assert pg.open_schema(conn, tables.name).storage == "halfvec"
        from ragmix.store.pg.rows import embeddings

        assert embeddings(conn, tables, ids.tolist()).tobytes() == x.tobytes()  # float32 kept
        from ragmix.store.pg.load import to_half

        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT id FROM ragmix_half_store.chunks "
                "ORDER BY embedding_half <#> %s::halfvec LIMIT 10", (to_half(queries[:1])[0],)))
        assert "chunks_embedding_idx" in plan  # the float16 copy is what the index holds
    finally:
        pg.drop_schema(conn, tables.name)


# -- keyword search -------------------------------------------------------------------------
def test_keyword_search_ranks_by_ts_rank_cd(conn, tables):
    texts = ["the cat sat on the mat", "dogs and cats", "a dog barked",
             "cats cats cats everywhere", "nothing relevant"]
    pg.load_documents(conn, tables, items(clustered(5), text_of=lambda j: texts[j]))
    pg.build_keyword_index(conn, tables)
    hits = pg.keyword_search(conn, tables, "Cats!", 10)
    chunk_of = dict(zip(pg.chunk_ids(conn, tables).tolist(), texts))
    assert {chunk_of[h.chunk_id] for h in hits} == {texts[0], texts[1], texts[3]}
    assert chunk_of[hits[0].chunk_id] == texts[3] and all(h.score > 0 for h in hits)
    either = pg.keyword_search(conn, tables, "dog mat", 10)  # any term, not all
    assert {chunk_of[h.chunk_id] for h in either} == {texts[0], texts[1], texts[2]}
    assert pg.keyword_search(conn, tables, "the of and", 10) == []  # stop words only
    assert pg.keyword_search(conn, tables, "zebra", 10) == []
    only = pg.keyword_search(conn, tables, "cats", 10, doc_ids=["d1"])
    assert [chunk_of[h.chunk_id] for h in only] == [texts[1]]


# -- settings and globs -----------------------------------------------------------------------
def test_local_settings_end_with_their_transaction(conn):
    with pg.local_settings(conn, {"hnsw.ef_search": "77"}):
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "77"
    assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"
    # Inside a caller's transaction it is a savepoint, where SET LOCAL alone would leak.
    with conn.transaction():
        with pg.local_settings(conn, {"hnsw.ef_search": "88"}):
            assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "88"
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"


GLOB_CASES = ["*", "src/*", "src/0?/doc.txt", "*.txt", "*.TXT", "src/[0-3]*", "src/[^0-3]*",
              "a.b", "a%b", "a_b", "[]]x", "[x", "src/0[17]/*", "*doc*", "+(x)|y$^", "a\\b",
              "[\\[]x", "[^]]x", "*.[tx]xt"]
GLOB_STRINGS = ["src/07/doc.txt", "src/41/doc.txt", "a.b", "axb", "a%b", "a_b", "]x", "[x",
                "+(x)|y$^", "DOC.TXT", "src/", "", "a\\b", "\\x", "ab"]


def test_glob_to_regex_matches_sqlite_glob(conn):
    lite = sqlite3.connect(":memory:")
    for pattern in GLOB_CASES:
        regex = pg.glob_to_regex(pattern)
        for text in GLOB_STRINGS:
            expected = bool(lite.execute("SELECT ? GLOB ?", (text, pattern)).fetchone()[0])
            got = conn.execute("SELECT %s ~ %s", (text, regex)).fetchone()[0]
            assert got == expected, (pattern, regex, text)
