"""The StoreBackend contract on PostgreSQL + pgvector (the real server of tests/pg_server.py).

Each parameter is an index kind with a keyword search: the embedding index is built
on the empty table first, so every insert goes through the index PostgreSQL maintains.
"""

from __future__ import annotations

import itertools

import pytest

from backend_contract import DIM, StoreBackendContract, put

from ragmix.store.pg import drop_schema
from ragmix.store.pg.backend import PgBackend
from ragmix.store.pg.settings import PgSettings

_names = itertools.count()

SETTINGS = {
    "hnsw-bm25": PgSettings(kind="hnsw"),
    "halfvec-tsvector": PgSettings(kind="hnsw", storage="halfvec", keyword="tsvector"),
    # nprobe = nlist: every list is read, so a tiny IVF index is exact
    "ivf-bm25": PgSettings(kind="ivf", nlist=4, nprobe=4),
    "flat-tsvector": PgSettings(kind="flat", keyword="tsvector"),
}


@pytest.fixture
def pg_backend(pg_url, tmp_path):
    """A factory of backends on fresh collections, dropped at teardown."""
    opened: list[PgBackend] = []
    names: list[str] = []

    def make(dim: int = DIM, *, same_as: PgBackend | None = None,
             settings: PgSettings = PgSettings()) -> PgBackend:
        if same_as is not None:
            made = PgBackend.open(pg_url, same_as.tables.name, settings=same_as.settings,
                                  cache_dir=tmp_path / "cache")
        else:
            names.append(f"contract_{next(_names)}")
            made = PgBackend.create(pg_url, names[-1], dim, settings=settings,
                                    cache_dir=tmp_path / "cache")
            made.build_index()  # on the empty table: inserts are indexed as they come
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()
    if opened:
        from ragmix.store.pg import connect

        with connect(pg_url) as conn:
            for name in names:
                drop_schema(conn, name)


class TestPgBackend(StoreBackendContract):
    @pytest.fixture(params=list(SETTINGS))
    def backend(self, request, pg_backend):
        settings = SETTINGS[request.param]

        def make(dim: int = DIM, *, same_as: PgBackend | None = None) -> PgBackend:
            return pg_backend(dim, same_as=same_as, settings=settings)

        return make


def test_refresh_saves_the_bm25_view_and_another_handle_loads_it(pg_backend, monkeypatch):
    b = pg_backend()
    ids = put(b, "a", ["lava flows", "ash falls"])
    b.refresh()
    other = pg_backend(same_as=b)
    from ragmix.store.pg import keyword

    monkeypatch.setattr(keyword, "read_bm25", None)  # a rebuild would fail
    assert [h.chunk_id for h in other.keyword_search("lava", 3)] == [int(ids[0])]


def test_the_first_refresh_builds_the_index_after_the_load(pg_backend):
    b = pg_backend(settings=PgSettings(kind="flat"))
    b.settings = PgSettings(kind="hnsw", M=8, ef_construction=32)
    assert not b._has_index("embedding")
    b.refresh()  # nothing loaded yet: nothing to build from
    assert not b._has_index("embedding")
    put(b, "a", [f"chunk {i}" for i in range(40)], seed=4)
    b.refresh()
    assert b._has_index("embedding")
    from ragmix.store import pg

    assert pg.index_options(b.connection, b.tables) == pg.HnswOptions(m=8, ef_construction=32)
    assert pg.get_meta(b.connection, b.tables)["index_rows"] == "40"
