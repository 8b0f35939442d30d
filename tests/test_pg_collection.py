"""A Collection in PostgreSQL (the real server of tests/pg_server.py): the Python API,
the CLI with --store, and ``ragmix copy`` between a directory and the database."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_corpus
from ragmix.cli.main import cli
from ragmix.errors import CollectionError
from ragmix.store import Collection, pg
from ragmix.store.copy import copy_collection
from ragmix.store.pg.home import MANIFEST_KEY, location_of

_names = itertools.count()
QUERIES = ("marker3 retrieval", "vector index fusion", "marker7")


@pytest.fixture
def pg_location(pg_url, monkeypatch, tmp_path):
    """A factory of locations of fresh PostgreSQL collections, dropped at teardown."""
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path / "cache"))
    names: list[str] = []

    def make(**query: str) -> str:
        names.append(f"col_{next(_names)}")
        extra = "".join(f"&{key}={value}" for key, value in query.items())
        return location_of(pg_url, names[-1]) + extra

    yield make
    with pg.connect(pg_url) as conn:
        for name in names:
            pg.drop_schema(conn, name)


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", 12, words_per_file=150)


def found(col: Collection, query: str, mode: str) -> list[tuple[str, int]]:
    return [(h.doc_id, h.start) for h in col.search(query, k=5, mode=mode)]


def vectors_by_passage(col: Collection) -> dict[tuple[str, int], bytes]:
    ids = col.backend.chunk_ids()
    rows = col.backend.chunk_rows(ids.tolist())
    vectors = col.backend.embeddings(ids)
    return {(rows[int(i)].doc_id, rows[int(i)].start): v.tobytes() for i, v in zip(ids, vectors)}


def test_a_collection_in_postgresql_searches_as_the_embedded_one(pg_location, corpus, tmp_path):
    location = pg_location()
    with Collection.create(location, encoder="hashing-256") as col, \
            Collection.create(tmp_path / "embedded", encoder="hashing-256") as local:
        report = col.add([corpus], commit_chunks=8)
        local.add([corpus])
        assert report.added == 12 and col.backend.generation >= 2  # several commits
        assert col.manifest.index["kind"] == "hnsw" and col.directory is None
        for query in QUERIES:
            for mode in ("dense", "bm25", "hybrid"):
                assert found(col, query, mode) == found(local, query, mode), (query, mode)
        info = col.info()
        assert info["path"] == location and info["chunks"] == local.info()["chunks"]
        assert info["disk_bytes"] > 0
    with Collection.open(location) as again:  # the manifest lives in the meta table
        assert again.manifest == col.manifest
        meta = pg.get_meta(again.backend.connection, again.backend.tables)
        assert json.loads(meta[MANIFEST_KEY])["encoder"] == "hashing-256"
        gone = again.delete(["*doc0003.md"])
        assert len(gone) == 1 and again.documents("*doc0003.md") == []
        assert all(doc_id not in gone for doc_id, _ in found(again, "marker3", "bm25"))


def test_the_write_lock_is_an_advisory_lock(pg_location, corpus, monkeypatch):
    from ragmix.store.pg import home

    monkeypatch.setattr(home, "LOCK_WAIT_S", 0.2)
    location = pg_location()
    with Collection.create(location, encoder="hashing-256") as col:
        with col.home.write_lock():
            with pytest.raises(CollectionError, match="being written by another process"):
                col.add([corpus])
        col.add([corpus])  # released
        assert col.backend.count_documents() == 12


def test_tsvector_keyword_search_and_halfvec_storage(pg_location, corpus):
    location = pg_location()
    with Collection.create(location, encoder="hashing-256",
                           index_params={"storage": "halfvec", "keyword": "tsvector"}) as col:
        col.add([corpus])
        assert [Path(h.source).name for h in col.search("marker5", k=3, mode="bm25")] == ["doc0005.md"]
        hits = col.search("marker5 vector", k=3, mode="hybrid")
        assert "doc0005.md" in [Path(h.source).name for h in hits]  # fused with dense
    with Collection.open(location.replace("?", "?keyword=bm25&")) as bm25:  # per handle
        assert bm25.backend.settings.keyword == "bm25" and bm25.backend.settings.storage == "halfvec"
        assert [Path(h.source).name for h in bm25.search("marker5", k=1, mode="bm25")] == ["doc0005.md"]


def test_copy_there_and_back_keeps_vectors_and_results(pg_location, corpus, tmp_path):
    with Collection.create(tmp_path / "a", encoder="hashing-256") as source:
        source.add([corpus])
    there = pg_location()
    assert copy_collection(tmp_path / "a", there, commit_chunks=7) > 0
    assert copy_collection(there, tmp_path / "b") > 0
    assert copy_collection(there, tmp_path / "b") == 0  # run again: nothing left to copy
    with Collection.open(tmp_path / "a") as a, Collection.open(there) as p, \
            Collection.open(tmp_path / "b") as b:
        want = vectors_by_passage(a)
        assert vectors_by_passage(p) == want and vectors_by_passage(b) == want  # bit for bit
        assert [d.content_hash for d in p.documents()] == [d.content_hash for d in a.documents()]
        for query in QUERIES:
            for mode in ("dense", "bm25", "hybrid"):
                assert found(p, query, mode) == found(a, query, mode) == found(b, query, mode)


def test_cli_index_search_info_delete_with_store(pg_url, pg_location, corpus, monkeypatch):
    name = pg_location().split("collection=")[1]
    runner = CliRunner()
    ok = lambda result: result.exit_code == 0 or pytest.fail(result.output)  # noqa: E731
    ok(runner.invoke(cli, ["index", str(corpus), "-c", name, "--store", pg_url,
                           "--encoder", "hashing-256", "--index-option", "M=8"]))
    monkeypatch.setenv("RAGMIX_STORE", pg_url)
    result = runner.invoke(cli, ["search", "marker4", "-c", name, "-r", "bm25", "--json", "-k", "1"])
    ok(result)
    assert json.loads(result.output)[0]["source"].endswith("doc0004.md")
    result = runner.invoke(cli, ["info", "-c", name, "--json"])
    ok(result)
    assert json.loads(result.output)["index"] == {
        "kind": "hnsw", "storage": "vector", "keyword": "bm25", "M": 8,
        "ef_construction": 200, "ef_search": 40}  # the embedded graph, pgvector's ef_search
    again = runner.invoke(cli, ["index", str(corpus), "-c", name, "--halfvec"])
    assert again.exit_code != 0 and "--halfvec only apply" in again.output
    ok(runner.invoke(cli, ["delete", "*doc0004.md", "-c", name]))
    result = runner.invoke(cli, ["info", "-c", location_of(pg_url, name), "--json"])
    ok(result)
    assert json.loads(result.output)["documents"] == 11


def test_cli_copy_and_bad_locations(pg_location, corpus, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(corpus), "-c", str(tmp_path / "a"),
                               "--encoder", "hashing-256"]).exit_code == 0
    there = pg_location()
    result = runner.invoke(cli, ["copy", str(tmp_path / "a"), there, "--index", "flat"])
    assert result.exit_code == 0, result.output
    with Collection.open(there) as col:
        assert col.manifest.index["kind"] == "flat" and col.backend.count_documents() == 12
    bad = runner.invoke(cli, ["copy", str(tmp_path / "a"), there.split("?")[0]])
    assert bad.exit_code != 0 and "names no collection" in bad.output
    bad = runner.invoke(cli, ["copy", str(tmp_path / "a"), str(tmp_path / "c"), "--halfvec"])
    assert bad.exit_code != 0 and "apply to PostgreSQL collections" in bad.output
