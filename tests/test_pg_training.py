"""Joint RAG training on a collection in PostgreSQL: what a checkpoint is matched against."""

from __future__ import annotations

from types import SimpleNamespace

from ragmix import Collection, Document
from ragmix.evaluation.datasets import QAExample
from ragmix.store import pg
from ragmix.store.pg.home import location_of
from ragmix.training.rag import RagTrainer

DOCS = [Document("d1", "Kelm was founded in 1672 by fishermen.", "kelm.md"),
        Document("d2", "Lake Varno is 310 metres deep.", "varno.md")]


def _fingerprint(col: Collection) -> dict[str, str]:
    # Only what fingerprint() reads: no generator or query model is built (no torch).
    trainer = object.__new__(RagTrainer)
    trainer.col, trainer.passages = col, col.passage_index()
    trainer.examples = [QAExample("q1", "Who founded Kelm?", ("fishermen",))]
    trainer.gen = SimpleNamespace(name="tiny")
    return trainer.fingerprint()


def test_the_fingerprint_names_a_postgresql_collection_by_its_url(pg_url, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path / "cache"))
    password_url = pg_url.replace("postgres@", "postgres:secret@")
    try:
        with Collection.create(location_of(password_url, "trained"), encoder="hashing-64") as col:
            assert col.directory is None
            col.add_documents(DOCS)
            first = _fingerprint(col)
            assert first["collection"] == f"{col.location}@{col.backend.generation}"
            assert first["collection"].startswith("postgresql://") and "secret" not in first[
                "collection"]
            col.delete(["d2"])  # a new generation: a checkpoint of the old one must not match
            assert _fingerprint(col)["collection"] != first["collection"]
    finally:
        with pg.connect(pg_url) as conn:
            pg.drop_schema(conn, "trained")


def test_the_fingerprint_of_a_directory_collection_is_its_resolved_folder(tmp_path):
    with Collection.create(tmp_path / "col", encoder="hashing-64") as col:
        col.add_documents(DOCS)
        where = _fingerprint(col)["collection"]
    assert where == f"{(tmp_path / 'col').resolve()}@1"
