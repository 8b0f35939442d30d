"""Creating and deleting collections over the API (scope admin), and the names they may take."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import assert_problem, ingest, make_app, wait_job  # noqa: E402

from ragmix.server.auth import KeyRing  # noqa: E402

NOTE = b"# Glossary\n\nA zorbulator calibrates the flux capacitor every morning.\n"
NEW = {"name": "team-docs", "encoder": "hashing-256", "chunker": "words", "chunk_size": 50}


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        yield client


def test_a_created_collection_is_served_takes_uploads_and_lives_in_the_data_folder(client,
                                                                                   tmp_path):
    response = client.post("/v1/collections", json=NEW)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/v1/collections/team-docs"
    info = response.json()
    assert info["name"] == "team-docs" and info["documents"] == 0
    assert info["encoder"] == "hashing-256" and info["chunker"] == {"name": "words",
                                                                    "size": 50, "overlap": 0}
    folder = (tmp_path / "data" / "created" / "team-docs").resolve()
    assert info["path"] == str(folder)
    names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
    assert names == ["notes", "team-docs"]
    ingest(client, {"glossary.md": NOTE}, collection="team-docs")
    hits = client.post("/v1/collections/team-docs/search",
                       json={"query": "zorbulator", "k": 3}).json()["hits"]
    assert len(hits) == 1 and "zorbulator" in hits[0]["text"]
    assert not [p for p in (tmp_path / "data" / "created").iterdir() if p.name != "team-docs"]


def test_a_created_collection_is_served_again_after_a_restart_until_deleted(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        assert client.post("/v1/collections", json=NEW).status_code == 201
        ingest(client, {"glossary.md": NOTE}, collection="team-docs")
    with TestClient(make_app(tmp_path)) as client:
        assert client.get("/v1/collections/team-docs").json()["documents"] == 1
        response = client.delete("/v1/collections/team-docs")
        assert response.status_code == 200 and response.json() == {"deleted": "team-docs"}
        assert_problem(client.get("/v1/collections/team-docs"), 404, "unknown_collection")
        assert_problem(client.post("/v1/collections/team-docs/search", json={"query": "z"}),
                       404, "unknown_collection")
    assert list((tmp_path / "data" / "created").iterdir()) == []
    assert not (tmp_path / "data" / "collections" / "team-docs").exists()  # its uploads too
    with TestClient(make_app(tmp_path)) as client:
        names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
        assert names == ["notes"]
        again = client.post("/v1/collections", json=NEW)  # the name is free again
        assert again.status_code == 201 and again.json()["documents"] == 0


def test_a_name_already_served_is_a_conflict_and_a_given_collection_is_never_deleted(client,
                                                                                    tmp_path):
    assert_problem(client.post("/v1/collections", json={**NEW, "name": "notes"}), 409,
                   "collection_exists")
    assert client.post("/v1/collections", json=NEW).status_code == 201
    assert_problem(client.post("/v1/collections", json=NEW), 409, "collection_exists")
    body = assert_problem(client.delete("/v1/collections/notes"), 409,
                          "collection_not_deletable")
    assert "--collection" in body["detail"]
    assert (tmp_path / "notes").is_dir()
    assert_problem(client.delete("/v1/collections/nope"), 404, "unknown_collection")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "a\\b", "", "x" * 65,
                                  "-dash", "a..b", "sp ace", "/etc", "%2e%2e"])
def test_names_with_separators_or_traversal_are_422_and_write_nothing(client, tmp_path, name):
    before = sorted(p for p in tmp_path.rglob("*"))
    response = client.post("/v1/collections", json={**NEW, "name": name})
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == "body.name"
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("options, says", [
    ({"encoder": "/etc"}, "not one a client may choose"),
    ({"encoder": "hashing-x"}, "not one a client may choose"),
    ({"chunker": "sentences"}, "Input should be"),
    ({"index": "annoy"}, "Input should be"),
    ({"chunker": "recursive", "overlap": 5}, "overlap applies to the words and chars"),
    ({"chunk_size": 10, "overlap": 10}, "overlap"),
    ({"shards": 3}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_422_naming_the_fix(client, tmp_path, options, says):
    response = client.post("/v1/collections", json={**NEW, **options})
    assert response.status_code == 422, response.text
    assert says in response.text
    assert not (tmp_path / "data" / "created" / "team-docs").exists()


def test_creating_and_deleting_need_the_admin_scope(tmp_path):
    reader, writer, admin = "r" * 20, "w" * 20, "a" * 20
    keys = KeyRing.parse(f"{reader} read\n{writer} read,write\n{admin} admin", origin="t")
    with TestClient(make_app(tmp_path, keys=keys)) as client:
        assert_problem(client.post("/v1/collections", json=NEW), 401, "missing_api_key")
        for key in (reader, writer):
            headers = {"Authorization": f"Bearer {key}"}
            assert_problem(client.post("/v1/collections", json=NEW, headers=headers), 403,
                           "insufficient_scope")
        headers = {"Authorization": f"Bearer {admin}"}
        assert client.post("/v1/collections", json=NEW, headers=headers).status_code == 201
        writer_headers = {"Authorization": f"Bearer {writer}"}
        assert_problem(client.delete("/v1/collections/team-docs", headers=writer_headers), 403,
                       "insufficient_scope")
        assert client.delete("/v1/collections/team-docs", headers=headers).status_code == 200


def test_a_job_queued_for_a_deleted_collection_fails_saying_so(client):
    import threading

    assert client.post("/v1/collections", json=NEW).status_code == 201
    jobs = client.app.state.ragmix.jobs
    gate = threading.Event()
    blocker, _ = jobs.create("notes", [])
    jobs.run(blocker, lambda job, progress: gate.wait(10) and [])  # the one job thread waits
    job = client.post("/v1/collections/team-docs/documents",
                      files=[("files", ("g.md", NOTE, "text/markdown"))]).json()
    assert client.delete("/v1/collections/team-docs").status_code == 200
    gate.set()
    record = wait_job(client, job["id"])
    assert record["status"] == "failed" and "'team-docs' was deleted" in record["error"]
    assert list(client.app.state.ragmix.staging.iterdir()) == []
