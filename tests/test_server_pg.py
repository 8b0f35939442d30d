"""The HTTP API over a collection in PostgreSQL (the real server of tests/pg_server.py):
search, ask, and uploads / listing / deletion, as over a directory."""

from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import ANSWER, SEED, assert_problem, ingest  # noqa: E402

from ragmix import Collection  # noqa: E402
from ragmix.errors import BadInputError, CollectionError  # noqa: E402
from ragmix.server.app import create_app  # noqa: E402
from ragmix.server.settings import ServerSettings, collection_names  # noqa: E402
from ragmix.store import pg  # noqa: E402
from ragmix.store.pg.home import location_of  # noqa: E402
from ragmix.testing import ScriptedGenerator  # noqa: E402

NOTE = b"# Glossary\n\nA zorbulator calibrates the flux capacitor every morning.\n"
_names = itertools.count()


@pytest.fixture
def pg_notes(pg_url, monkeypatch, tmp_path):
    """The location of a fresh PostgreSQL collection with the two seed documents."""
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path / "cache"))
    name = f"served_{next(_names)}"
    location = location_of(pg_url, name)
    with Collection.create(location, encoder="hashing-256") as col:
        col.add_documents(SEED)
    yield location, name
    with pg.connect(pg_url) as conn:
        pg.drop_schema(conn, name)


@pytest.fixture
def client(pg_notes, tmp_path):
    location, _ = pg_notes
    settings = ServerSettings.build([location], data_dir=tmp_path / "data",
                                    generator=lambda: ScriptedGenerator(ANSWER))
    with TestClient(create_app(settings)) as client:
        yield client


def search(client, name: str, query: str, **options) -> list[dict]:
    response = client.post(f"/v1/collections/{name}/search", json={"query": query, **options})
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def test_a_postgresql_collection_is_served_under_its_collection_name(client, pg_notes):
    _, name = pg_notes
    listed = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
    assert listed == [name]
    info = client.get(f"/v1/collections/{name}").json()
    assert info["documents"] == 2 and info["path"].startswith("postgresql://")
    for mode in ("dense", "bm25", "hybrid"):
        assert search(client, name, "Kelm fishermen 1672", k=1, retrieval=mode)[0]["doc_id"] \
            == "seed:kelm"
    models = client.get("/v1/models")  # a collection without a folder is still a model
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == [name]
    assert client.delete(f"/v1/collections/{name}").status_code in (401, 403, 409)


def test_ask_answers_from_the_postgresql_collection(client, pg_notes):
    _, name = pg_notes
    response = client.post(f"/v1/collections/{name}/ask",
                           json={"question": "Who founded Kelm?", "mode": "stuff",
                                 "decoding": "free", "k": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == ANSWER and answer["cited"] == [1]
    assert [s["doc_id"] for s in answer["sources"]] == ["seed:kelm"]


def test_uploads_are_listed_searched_and_deleted_in_postgresql(client, pg_notes):
    location, name = pg_notes
    record = ingest(client, {"glossary.md": NOTE}, collection=name)
    (result,) = record["results"]
    doc_id = result["doc_ids"][0]
    assert result["status"] == "added"
    assert search(client, name, "zorbulator flux capacitor", k=1)[0]["doc_id"] == doc_id
    listing = client.get(f"/v1/collections/{name}/documents").json()
    assert listing["total"] == 3
    with Collection.open(location) as col:  # in the database, not only the server's view
        assert doc_id in {row.doc_id for row in col.documents()}
    response = client.delete(f"/v1/collections/{name}/documents",
                             params={"pattern": "*glossary*"})
    assert response.status_code == 200 and response.json() == {"deleted": [doc_id]}
    for mode in ("dense", "bm25", "hybrid"):
        hits = search(client, name, "zorbulator", k=5, retrieval=mode)
        assert doc_id not in [h["doc_id"] for h in hits]
    assert_problem(client.get(f"/v1/collections/{name}/documents/{quote(doc_id, safe='')}"),
                   404, "unknown_document")
    response = client.delete(f"/v1/collections/{name}/documents/seed:kelm")
    assert response.json() == {"deleted": ["seed:kelm"]}
    assert [h["doc_id"] for h in search(client, name, "Kelm fishermen", k=5)] == ["seed:varno"]


def test_a_url_without_a_collection_or_naming_none_is_refused(pg_url):
    with pytest.raises(BadInputError, match="names no collection"):
        collection_names([pg_url])
    with pytest.raises(CollectionError, match="holds no collection 'nothing_here'.*ragmix index"):
        collection_names([location_of(pg_url, "nothing_here")])


def test_a_directory_and_a_postgresql_collection_of_one_name_clash(pg_notes, tmp_path):
    location, name = pg_notes
    folder = tmp_path / name
    with Collection.create(folder, encoder="hashing-256"):
        pass
    with pytest.raises(BadInputError, match=f"both named '{name}'"):
        collection_names([folder, location])


def test_ragmix_serve_takes_a_postgresql_collection_and_store(pg_notes, tmp_path, monkeypatch):
    import uvicorn
    from click.testing import CliRunner

    from ragmix.cli.main import cli

    location, name = pg_notes
    served: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    data = str(tmp_path / "data")
    for args in (["-c", location], ["--store", location.split("?")[0], "-c", name]):
        result = CliRunner().invoke(cli, ["serve", *args, "--data-dir", data])
        assert result.exit_code == 0, result.output
        state = served.pop().state.ragmix
        assert list(state.collections) == [name]
        assert state.collections[name].directory is None
        state.close()
    result = CliRunner().invoke(cli, ["serve", "-c", str(tmp_path / "nowhere"), "--data-dir",
                                      data])
    assert result.exit_code != 0 and "is not a collection" in result.output
