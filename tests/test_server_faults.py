"""kill -9 of `ragmix serve` while an upload is being indexed: after a restart the collection
opens consistent, the job says it failed and why, and uploading the same files again adds no
duplicate."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

import httpx  # noqa: E402
from serving import free_port, make_collection, stop, wait_ready  # noqa: E402

from ragmix.server.jobs import STOPPED  # noqa: E402
from ragmix.store import Collection  # noqa: E402

pytestmark = pytest.mark.slow

N_FILES = 3
# Paragraphs of 100 words per file: each file takes a second or more to index with
# hashing-256 here, so the kill lands while the job is still on a later file.
PARAGRAPHS = 4_000


def big_files() -> list[tuple[str, bytes]]:
    rng = random.Random(15)
    vocab = [f"w{i}" for i in range(5_000)]
    files = []
    for n in range(N_FILES):
        body = "\n\n".join(" ".join(rng.choices(vocab, k=100)) for _ in range(PARAGRAPHS))
        files.append((f"big-{n}.md", f"# Big {n}\n\nmarker{n} opens file {n}.\n\n{body}\n"
                      .encode()))
    return files


def start(folder: Path, data: Path, log: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAGMIX_API_KEYS": ""}
    with open(log, "a") as stderr:  # a file, not a pipe: a full pipe would stall the server
        return subprocess.Popen(
            [sys.executable, "-m", "ragmix", "serve", "-c", str(folder), "--port", str(port),
             "--data-dir", str(data)], stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def post_files(base: str, files: list[tuple[str, bytes]]) -> dict:
    multipart = [("files", (name, data, "text/markdown")) for name, data in files]
    response = httpx.post(f"{base}/v1/collections/notes/documents", files=multipart, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()


def job(base: str, job_id: str) -> dict:
    return httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()


def assert_consistent(folder: Path, uploads: Path) -> dict[str, str]:
    """Open with the library: views agree with SQLite, no document is half-stored.

    The ids of the documents uploaded (kept in ``uploads``), by file name.
    """
    with Collection.open(folder) as col:
        want = col.store.chunk_ids()
        assert np.array_equal(np.sort(col.views.dense(persist=True).ids()), want)
        assert np.array_equal(np.sort(np.asarray(col.views.bm25(persist=True).ids)), want)
        info, rows = col.info(), col.documents()
        assert info["documents"] == len(rows) and info["chunks"] == len(want)
        assert sum(row.n_chunks for row in rows) == len(want)
        uploaded = {}
        for row in rows:
            if Path(row.source).parent == uploads.resolve():  # not a seed document
                text = Path(row.source).read_text()
                assert row.n_chunks == len(col.chunker.chunk(row.doc_id, text))
                assert Path(row.source).name not in uploaded, "a file indexed twice"
                uploaded[Path(row.source).name] = row.doc_id
        return uploaded


def test_kill_minus_nine_during_ingestion_then_restart(tmp_path):
    folder = make_collection(tmp_path / "notes")
    data, log = tmp_path / "data", tmp_path / "serve.log"
    files = big_files()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(folder, data, log, port)
    try:
        wait_ready(server, f"{base}/v1/collections", log)
        job_id = post_files(base, files)["id"]
        deadline = time.monotonic() + 120
        while True:  # wait until one file is indexed and the next is under way
            record = job(base, job_id)
            if record["status"] == "running" and record["progress"]["files_done"] >= 1:
                break
            assert record["status"] in ("queued", "running"), (
                f"the job ended before the kill ({record['status']}): make the files larger")
            assert time.monotonic() < deadline, record
            time.sleep(0.02)
        server.kill()  # SIGKILL, to this server's PID
        server.wait(timeout=30)
    finally:
        stop(server)

    # The collection opens consistent, with the files that were committed whole.
    before = assert_consistent(folder, data / "collections" / "notes")
    assert "big-0.md" in before and len(before) < N_FILES

    server = start(folder, data, log, port)
    try:
        wait_ready(server, f"{base}/v1/collections", log)
        record = job(base, job_id)
        assert record["status"] == "failed" and record["error"] == STOPPED
        assert record["progress"]["stage"] == "failed"
        assert record["progress"]["files_done"] >= 1  # saved as each file was done
        assert not list((data / "staging").glob("*")), "staged uploads left behind"
        again = job(base, post_files(base, files)["id"])
        deadline = time.monotonic() + 120
        while again["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, again
            time.sleep(0.05)
            again = job(base, again["id"])
        assert again["status"] == "done", again
        by_name = {r["filename"]: r for r in again["results"]}
        for name, doc_id in before.items():  # already indexed: the same document, once
            assert by_name[name]["status"] == "unchanged"
            assert list(by_name[name]["doc_ids"]) == [doc_id]
        assert all(by_name[n]["status"] == "added" for n, _ in files if n not in before)
        hits = httpx.post(f"{base}/v1/collections/notes/search", timeout=10,
                          json={"query": "marker2 opens file", "k": 1, "retrieval": "bm25"})
        assert hits.json()["hits"][0]["source"].endswith("big-2.md")
    finally:
        stop(server)
    after = assert_consistent(folder, data / "collections" / "notes")
    assert sorted(after) == [name for name, _ in files]
    assert all(after[name] == doc_id for name, doc_id in before.items())
