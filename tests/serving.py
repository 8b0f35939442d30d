"""Helpers for the HTTP API tests: a served hashing-256 collection and a scripted generator."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmix import Collection, Document
from ragmix.server.app import create_app
from ragmix.server.settings import ServerSettings
from ragmix.testing import ScriptedGenerator

ANSWER = "Fishermen founded Kelm in 1672 [1]."
SEED = [
    Document("seed:kelm", "Kelm was founded in 1672 by fishermen on the lake shore.", "kelm.md",
             title="Kelm"),
    Document("seed:varno", "Lake Varno is 310 metres deep and freezes in winter.", "varno.md",
             title="Lake Varno"),
]


def make_collection(folder: Path) -> Path:
    with Collection.create(folder, encoder="hashing-256") as col:
        col.add_documents(SEED)
    return folder


def make_app(tmp_path: Path, *, generator=None, **settings):
    """The app over ``tmp_path/notes`` (two seed documents), keeping data in ``tmp_path/data``."""
    folder = tmp_path / "notes"
    if not folder.exists():
        make_collection(folder)
    gen = generator if generator is not None else ScriptedGenerator(ANSWER)
    return create_app(ServerSettings.build([folder], data_dir=tmp_path / "data",
                                           generator=lambda: gen, **settings))


def upload(client, files: dict[str, bytes] | list[tuple[str, bytes]], *, headers=None,
           collection: str = "notes"):
    items = files.items() if isinstance(files, dict) else files
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in items]
    return client.post(f"/v1/collections/{collection}/documents", files=multipart,
                       headers=headers or {})


def wait_job(client, job_id: str, *, headers=None, timeout: float = 30.0) -> dict:
    """Poll the job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(f"/v1/jobs/{job_id}", headers=headers or {}).json()
        if record["status"] in ("done", "failed") or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def ingest(client, files, **kwargs) -> dict:
    """Upload and wait: the finished job's record (asserted done)."""
    response = upload(client, files, **kwargs)
    assert response.status_code == 202, response.text
    record = wait_job(client, response.json()["id"], headers=kwargs.get("headers"))
    assert record["status"] == "done", record
    return record


def search(client, query: str, **options) -> list[dict]:
    response = client.post("/v1/collections/notes/search", json={"query": query, **options})
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def parse_sse(text: str) -> list[tuple[str, object]]:
    """``[(event, data)]`` of an event stream; comments come as ``(":", text)``."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            events.append((":", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assert_problem(response, status: int, code: str) -> dict:
    """The response is RFC 9457 problem details with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:ragmix:problem:{code}"
    return body


STARTUP_S = 60  # importing FastAPI and opening the collection, on a busy 2-core machine


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Terminate by PID; kill if it has not exited after a grace period."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_ready(process: subprocess.Popen, url: str, log: Path):
    """The first answer of ``url`` from the started server (any status)."""
    import httpx

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ragmix serve exited with {process.returncode}: "
                                 f"{log.read_text()}")
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:  # not listening yet
            time.sleep(0.2)
    raise AssertionError(f"ragmix serve did not answer {url} within {STARTUP_S} s")


@contextmanager
def live(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread: its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
