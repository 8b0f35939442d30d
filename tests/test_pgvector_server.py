"""What the PostgreSQL backend relies on, shown against the real server (pgvector 0.8.6).

Plain SQL on purpose: these tests pin pgvector's own behaviour, not ragmix's layer.
"""

from __future__ import annotations

import numpy as np
import pytest

import psycopg
from pgvector.psycopg import register_vector

N_ROWS, DIM, N_CATEGORIES = 5000, 16, 50  # category 3 holds 2% of the rows
FILTERED = "SELECT id, cat FROM fact_items WHERE cat = 3 ORDER BY embedding <#> %s LIMIT 10"


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def conn(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        register_vector(conn)
        yield conn


@pytest.fixture(scope="module")
def items(conn) -> np.ndarray:
    """fact_items: N_ROWS unit vectors with an HNSW inner-product index; category = id % 50."""
    x = _unit_rows(N_ROWS, DIM, seed=0)
    conn.execute("DROP TABLE IF EXISTS fact_items")
    conn.execute("CREATE TABLE fact_items (id bigint PRIMARY KEY, cat int, "
                 f"embedding vector({DIM}))")
    with conn.cursor() as cur, cur.copy(
            "COPY fact_items (id, cat, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int4", "vector"])
        for i, row in enumerate(x):
            copy.write_row((i, i % N_CATEGORIES, row))
    conn.execute("CREATE INDEX fact_items_hnsw ON fact_items USING hnsw (embedding vector_ip_ops)")
    conn.execute("ANALYZE fact_items")
    return x


def _plan(conn, query: str, params: tuple) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params).fetchall())


def test_server_runs_pgvector_08(conn):
    version = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert tuple(int(p) for p in version[0].split(".")) >= (0, 8, 0)
    assert int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 130000


def _filtered(conn, queries: np.ndarray, **settings: str) -> list[list[tuple[int, int]]]:
    """FILTERED for each query, on the HNSW index, with ``settings`` SET LOCAL."""
    with conn.transaction():
        # At 5k rows the planner prefers an exact scan for a 2% filter (at 20k it takes the
        # index by itself); the index's own behaviour is what is shown here, so force it.
        conn.execute("SET LOCAL enable_seqscan = off")
        for name, value in settings.items():
            conn.execute(f"SET LOCAL {name} = {value}")
        assert "Index Scan using fact_items_hnsw" in _plan(conn, FILTERED, (queries[0],))
        return [conn.execute(FILTERED, (q,)).fetchall() for q in queries]


def test_filtered_hnsw_returns_short_results_without_iterative_scan(conn, items):
    queries = _unit_rows(5, DIM, seed=1)
    # ef_search = 40 candidates, 2% of them match: about 1 row where 10 were asked for.
    short = [len(rows) for rows in _filtered(conn, queries)]
    assert max(short) < 10, short
    assert sum(short) < 5 * 5, short


def test_relaxed_order_iterative_scan_fills_the_limit(conn, items):
    queries = _unit_rows(5, DIM, seed=1)
    results = _filtered(conn, queries, **{"hnsw.iterative_scan": "relaxed_order"})
    assert [len(r) for r in results] == [10] * 5
    assert all(cat == 3 for rows in results for _, cat in rows)
    # SET LOCAL ended with its transaction: short results again.
    assert conn.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "off"
    assert max(len(rows) for rows in _filtered(conn, queries)) < 10
    # relaxed_order: close to the exact filtered top-10 (it may be slightly out of order).
    matching = np.flatnonzero(np.arange(N_ROWS) % N_CATEGORIES == 3)
    for q, rows in zip(queries, results):
        exact = matching[np.argsort(-(items[matching] @ q))[:10]]
        assert len(set(exact.tolist()) & {i for i, _ in rows}) >= 8


def test_negative_inner_product_and_index_use(conn, items):
    assert conn.execute("SELECT '[1,0]'::vector <#> '[1,0]'::vector").fetchone()[0] == -1.0
    q = _unit_rows(1, DIM, seed=2)[0]
    rows = conn.execute("SELECT id, embedding <#> %s FROM fact_items ORDER BY id LIMIT 50",
                        (q,)).fetchall()
    np.testing.assert_allclose([d for _, d in rows], -(items[:50] @ q), rtol=1e-5, atol=1e-6)
    ascending = "SELECT id FROM fact_items ORDER BY embedding <#> %s LIMIT 10"
    assert "Index Scan using fact_items_hnsw" in _plan(conn, ascending, (q,))
    # Any other spelling of "largest inner product first" gives up the index.
    for other in ("SELECT id FROM fact_items ORDER BY embedding <#> %s DESC LIMIT 10",
                  "SELECT id FROM fact_items ORDER BY -(embedding <#> %s) LIMIT 10"):
        assert "fact_items_hnsw" not in _plan(conn, other, (q,)), other
    exact = np.argsort(-(items @ q))[:10]
    found = [r[0] for r in conn.execute(ascending, (q,)).fetchall()]
    assert len(set(found) & set(exact.tolist())) >= 9


def test_halfvec_storage_with_hnsw(conn):
    from pgvector import HalfVector

    x = _unit_rows(1000, DIM, seed=3)
    conn.execute("DROP TABLE IF EXISTS fact_half")
    conn.execute(f"CREATE TABLE fact_half (id bigint PRIMARY KEY, embedding halfvec({DIM}))")
    with conn.cursor() as cur, cur.copy(
            "COPY fact_half (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "halfvec"])
        for i, row in enumerate(x):
            copy.write_row((i, HalfVector(row)))
    conn.execute("CREATE INDEX fact_half_hnsw ON fact_half USING hnsw (embedding halfvec_ip_ops)")
    conn.execute("ANALYZE fact_half")
    query = "SELECT id, embedding <#> %s::halfvec FROM fact_half ORDER BY 2 LIMIT 10"
    by_name = "SELECT id FROM fact_half ORDER BY embedding <#> %s::halfvec LIMIT 10"
    q = x[7]
    assert "Index Scan using fact_half_hnsw" in _plan(conn, by_name, (q,))
    rows = conn.execute(query, (q,)).fetchall()
    assert rows[0][0] == 7  # a unit vector is its own best match
    stored = conn.execute("SELECT embedding FROM fact_half WHERE id = 7").fetchone()[0]
    np.testing.assert_array_equal(stored.to_numpy(), x[7].astype(np.float16))
    exact = np.argsort(-(x.astype(np.float16).astype(np.float32) @ q))[:10]
    assert len({r[0] for r in rows} & set(exact.tolist())) >= 9
