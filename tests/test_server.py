"""The HTTP API: uploads as jobs, search, delete, ask as JSON and as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import (  # noqa: E402
    ANSWER,
    assert_problem,
    ingest,
    make_app,
    parse_sse,
    search,
    upload,
    wait_job,
)

from ragmix.server.answering import answerer  # noqa: E402
from ragmix.server.sse import AnswerStream  # noqa: E402
from ragmix.server.worker import Cancelled, GeneratorWorker  # noqa: E402
from ragmix.testing import ScriptedGenerator  # noqa: E402

NOTE = b"# Glossary\n\nA zorbulator calibrates the flux capacitor every morning.\n"


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        yield client


def test_upload_is_a_job_that_ends_done_and_search_then_finds_the_file(client, tmp_path):
    response = upload(client, {"glossary.md": NOTE})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "done") and job["files"] == ["glossary.md"]
    record = wait_job(client, job["id"])
    assert record["status"] == "done" and record["error"] == ""
    assert record["progress"]["files_done"] == 1
    (result,) = record["results"]
    assert result["status"] == "added" and result["stored_as"] == "glossary.md"
    hits = search(client, "zorbulator flux capacitor", k=2)
    assert hits[0]["doc_id"] == result["doc_ids"][0]
    assert "zorbulator" in hits[0]["text"]
    assert {"text", "source", "start", "end", "score", "prob", "rank"} <= set(hits[0])
    assert hits[0]["source"].startswith(str((tmp_path / "data").resolve()))
    info = client.get("/v1/collections/notes").json()
    assert info["name"] == "notes" and info["documents"] == 3


def test_identical_bytes_give_the_existing_document_never_a_duplicate(client):
    first = ingest(client, {"glossary.md": NOTE})["results"][0]
    again = ingest(client, {"glossary.md": NOTE})["results"][0]
    renamed = ingest(client, {"copy of glossary.md": NOTE})["results"][0]
    assert again["status"] == renamed["status"] == "unchanged"
    assert again["doc_ids"] == renamed["doc_ids"] == first["doc_ids"]
    listing = client.get("/v1/collections/notes/documents").json()
    assert listing["total"] == 3
    assert len(search(client, "zorbulator", k=10, retrieval="bm25")) == 1


def test_a_changed_file_with_the_same_name_replaces_the_old_version(client):
    first = ingest(client, {"plan.md": b"The launch is on Monday with the quokka team."})
    second = ingest(client, {"plan.md": b"The launch moved to Friday with the wombat team."})
    assert second["results"][0]["status"] == "updated"
    assert second["results"][0]["doc_ids"] == first["results"][0]["doc_ids"]
    assert not search(client, "quokka", k=5, retrieval="bm25")
    assert "wombat" in search(client, "wombat", k=1, retrieval="bm25")[0]["text"]


def test_a_deleted_document_is_never_retrieved_again(client, tmp_path):
    doc_id = ingest(client, {"glossary.md": NOTE})["results"][0]["doc_ids"][0]
    assert search(client, "zorbulator", k=1)[0]["doc_id"] == doc_id
    got = client.get(f"/v1/collections/notes/documents/{quote(doc_id, safe='')}").json()
    assert got["doc_id"] == doc_id and got["n_chunks"] == 1
    response = client.delete("/v1/collections/notes/documents", params={"pattern": "*glossary*"})
    assert response.status_code == 200 and response.json() == {"deleted": [doc_id]}
    for mode in ("dense", "bm25", "hybrid"):
        assert doc_id not in [h["doc_id"] for h in search(client, "zorbulator", k=5,
                                                            retrieval=mode)]
    assert_problem(client.get(f"/v1/collections/notes/documents/{doc_id}"), 404,
                   "unknown_document")
    assert not list((tmp_path / "data" / "collections" / "notes").glob("glossary*"))
    assert_problem(client.delete("/v1/collections/notes/documents",
                                 params={"pattern": "*glossary*"}), 404, "no_document_matches")


def test_a_document_is_got_and_deleted_by_its_id(client):
    assert client.get("/v1/collections/notes/documents/seed:kelm").json()["title"] == "Kelm"
    response = client.delete("/v1/collections/notes/documents/seed:kelm")
    assert response.json() == {"deleted": ["seed:kelm"]}
    assert [h["doc_id"] for h in search(client, "Kelm fishermen", k=5)] == ["seed:varno"]


@pytest.mark.parametrize("name", ["../../escape.md", "/etc/passwd", "/etc/passwd.md",
                                  "..\\..\\win.md", "..", "a/../../b.md", ".hidden.md"])
def test_hostile_file_names_are_stored_inside_the_data_folder(tmp_path, name):
    before = {p for p in tmp_path.parent.rglob("*") if p.is_file()}
    with TestClient(make_app(tmp_path)) as client:
        record = ingest(client, [(name, b"Text about the ocelot migration.\n")])
    (result,) = record["results"]
    written = {p for p in tmp_path.parent.rglob("*") if p.is_file()} - before
    data, notes = (tmp_path / "data").resolve(), (tmp_path / "notes").resolve()
    outside = [p for p in written if not (p.resolve().is_relative_to(data)
                                          or p.resolve().is_relative_to(notes))]
    assert outside == []
    if name in ("/etc/passwd", ".."):  # kept as "passwd", "upload": no extension, no loader
        assert result["status"] == "skipped" and result["reason"].startswith("unsupported")
        return
    kept = data / "collections" / "notes" / result["stored_as"]
    assert kept.is_file() and "/" not in result["stored_as"]
    assert not result["stored_as"].startswith(".")


def test_skipped_files_give_the_reasons_ragmix_index_gives(client):
    record = ingest(client, {"photo.png": b"\x89PNG....", "empty.md": b""})
    reasons = {r["filename"]: (r["status"], r["reason"]) for r in record["results"]}
    assert reasons["photo.png"][0] == "skipped"
    assert reasons["photo.png"][1].startswith("unsupported file type .png (supported: .txt")
    assert reasons["empty.md"] == ("skipped", "empty")


def test_the_same_idempotency_key_gives_the_same_job(client):
    key = {"Idempotency-Key": "upload-7f3a"}
    first = upload(client, {"glossary.md": NOTE}, headers=key).json()
    again = upload(client, {"glossary.md": NOTE}, headers=key).json()
    other = upload(client, {"glossary.md": NOTE}, headers={"Idempotency-Key": "other"}).json()
    assert again["id"] == first["id"] != other["id"]
    assert wait_job(client, other["id"])["results"][0]["status"] == "unchanged"


def test_a_job_whose_ingestion_raises_is_marked_failed_with_the_reason(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("ragmix.server.routes_documents.index_upload", broken)
    record = wait_job(client, upload(client, {"glossary.md": NOTE}).json()["id"])
    assert record["status"] == "failed" and record["error"] == "RuntimeError: disk on fire"
    assert list((client.app.state.ragmix.staging).iterdir()) == []
    assert_problem(client.get("/v1/jobs/nope"), 404, "unknown_job")


def test_a_job_left_running_by_a_stopped_server_is_failed_at_restart(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        job_id = ingest(client, {"glossary.md": NOTE})["id"]
    record_file = tmp_path / "data" / "jobs" / f"{job_id}.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "status": "running", "finished": None}))
    with TestClient(make_app(tmp_path)) as client:
        record = client.get(f"/v1/jobs/{job_id}").json()
        assert record["status"] == "failed" and "server stopped" in record["error"]
        again = ingest(client, {"glossary.md": NOTE})["results"][0]
    assert again["status"] == "unchanged"


def test_ask_answers_as_json_with_hits_citations_and_sources(client):
    response = client.post("/v1/collections/notes/ask",
                           json={"question": "Who founded Kelm?", "mode": "stuff",
                                 "decoding": "free", "k": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == ANSWER and answer["cited"] == [1]
    assert answer["hits"][0]["doc_id"] == "seed:kelm"
    assert [s["doc_id"] for s in answer["sources"]] == ["seed:kelm"]


@pytest.mark.parametrize("how", ["body", "accept"])
def test_ask_streams_retrieval_then_tokens_then_final(client, how):
    body = {"question": "Who founded Kelm?", "mode": "stuff", "decoding": "free", "k": 2}
    headers = {}
    if how == "body":
        body["stream"] = True
    else:
        headers["Accept"] = "text/event-stream"
    with client.stream("POST", "/v1/collections/notes/ask", json=body,
                       headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        events = parse_sse(response.read().decode())
    names = [name for name, _ in events]
    assert names[0] == "retrieval" and names[-2:] == ["citation", "final"]
    assert set(names[1:-2]) == {"token"}
    retrieval = events[0][1]
    assert retrieval["hits"][0]["doc_id"] == "seed:kelm"
    assert len(retrieval["prior"]) == len(retrieval["hits"]) == 2
    assert "".join(data["text"] for name, data in events if name == "token") == ANSWER
    final = events[-1][1]
    assert final["text"] == ANSWER and final["sources"][0]["doc_id"] == "seed:kelm"
    citation = events[-2][1]  # the answer cites [1]: that passage, whole
    assert citation["n"] == 1 and citation["kind"] == "passage"
    assert citation["doc_id"] == "seed:kelm" and citation["quote"] == retrieval["hits"][0]["text"]


def _one_generator_thread(names: set[str]) -> bool:
    """The generator ran on one of the worker's lanes only: a scripted generator's tasks never
    pause for a shared decoding step, so each ends before the next starts, on the same lane."""
    return len(names) == 1 and next(iter(names)).startswith("ragmix-generator-lane")


class _SlowGenerator(ScriptedGenerator):
    """Answers after ``delay`` seconds, recording the thread it ran on."""

    def __init__(self, answer: str, *, delay: float = 0.0, fail: bool = False) -> None:
        super().__init__(answer)
        self.delay, self.fail, self.threads = delay, fail, set()

    def generate(self, prompt, **options):
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the model fell over")
        return super().generate(prompt, **options)


def test_a_stream_sends_heartbeats_while_the_answer_is_awaited(tmp_path):
    gen = _SlowGenerator("Late.", delay=0.3)
    with TestClient(make_app(tmp_path, generator=gen, heartbeat_s=0.05)) as client:
        response = client.post("/v1/collections/notes/ask",
                               json={"question": "Kelm?", "mode": "stuff", "decoding": "free",
                                     "stream": True})
    events = parse_sse(response.text)
    assert (":", "heartbeat") in events and events[-1][0] == "final"
    assert _one_generator_thread(gen.threads)


def test_a_generation_error_is_a_problem_as_json_and_an_error_event(tmp_path):
    gen = _SlowGenerator("", fail=True)
    app = make_app(tmp_path, generator=gen)
    body = {"question": "Kelm?", "mode": "stuff", "decoding": "free"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_problem(client.post("/v1/collections/notes/ask", json=body), 500,
                       "internal_error")
        events = parse_sse(client.post("/v1/collections/notes/ask",
                                       json={**body, "stream": True}).text)
    assert [name for name, _ in events] == ["retrieval", "error"]
    assert events[-1][1]["code"] == "internal_error" and events[-1][1]["status"] == 500


def test_concurrent_asks_all_run_on_the_one_generator_thread(tmp_path):
    gen = _SlowGenerator(ANSWER, delay=0.01)
    body = {"question": "Who founded Kelm?", "mode": "stuff", "decoding": "free"}
    with TestClient(make_app(tmp_path, generator=gen)) as client:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.post("/v1/collections/notes/ask",
                                                          json=body).json()["text"], range(8)))
    assert answers == [ANSWER] * 8 and _one_generator_thread(gen.threads)
    assert len(gen.prompts) == 8


class _NoPassages:
    def search(self, query, k, *, mode):
        return []


def test_a_closed_stream_stops_its_generation_at_the_next_token():
    gen = ScriptedGenerator(" ".join(f"w{i}" for i in range(50)))
    worker = GeneratorWorker(lambda: gen)
    worker.start()
    stream = AnswerStream(heartbeat_s=5.0)
    stream.answering = answerer(_NoPassages(), gen, mode="stuff", decoding="free")
    pieces = []
    original = stream.on_token

    def slow_token(piece):
        time.sleep(0.01)
        original(piece)
        pieces.append(piece)

    stream.on_token = slow_token

    async def read_one_then_close():
        events = stream.events(worker, "question?")
        first = await events.__anext__()
        await events.aclose()  # what the server does when the client goes away
        return first

    assert asyncio.run(read_one_then_close()).startswith("event: token")
    worker.submit(lambda g: None).result(timeout=5)  # the worker has moved on
    worker.close()
    assert 1 <= len(pieces) < 50 and stream.cancelled.is_set()


def test_a_task_cancelled_before_its_turn_never_runs():
    worker = GeneratorWorker(lambda: ScriptedGenerator("x"))
    cancelled = threading.Event()
    cancelled.set()
    future = worker.submit(lambda gen: pytest.fail("ran"), cancelled=cancelled)
    worker.start()
    with pytest.raises(Cancelled):
        future.result(timeout=5)
    worker.close()


@pytest.mark.parametrize("options, says", [
    ({"mode": "stuff", "decoding": "grounded"}, "ScoringGenerator"),
    ({"mode": "stuff", "decoding": "fast"}, "mode stuff takes decoding"),
    ({"mode": "stuff", "decoding": "free", "explain": True}, "explain needs mode"),
    ({"mode": "stuff", "decoding": "free", "min_confidence": 0.5}, "needs grounded decoding"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_ask_options_that_cannot_work_are_422_before_any_stream(client, options, says, stream):
    response = client.post("/v1/collections/notes/ask",
                           json={"question": "Who?", "stream": stream, **options})
    assert says in assert_problem(response, 422, "bad_input")["detail"]


def test_openapi_and_offline_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/collections/{name}/ask" in schema["paths"]
    assert "application/problem+json" in json.dumps(schema["paths"]["/v1/collections"])
    docs = client.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
