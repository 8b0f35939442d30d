"""`ragmix serve` as a real process on a free loopback port, over real HTTP; its log holds no key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

import httpx  # noqa: E402
from serving import free_port, make_collection, stop, wait_ready  # noqa: E402


KEY = "process-key-0123456789abcdef"
WRONG = "wrong-key-0123456789abcdef"


def test_ragmix_serve_answers_over_http_and_stops_by_pid(tmp_path):
    folder = make_collection(tmp_path / "notes")
    port = free_port()
    env = {**os.environ, "RAGMIX_API_KEYS": f"{KEY} read"}
    auth = {"Authorization": f"Bearer {KEY}"}
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragmix", "serve", "-c", str(folder), "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            stdout=stderr, stderr=stderr, env=env)  # access log (stdout) included
    try:
        response = wait_ready(process, f"http://127.0.0.1:{port}/v1/collections", log)
        assert response.status_code == 401
        response = httpx.get(f"http://127.0.0.1:{port}/v1/collections", headers=auth, timeout=10)
        assert response.status_code == 200
        (info,) = response.json()["collections"]
        assert info["name"] == "notes" and info["documents"] == 2
        hits = httpx.post(f"http://127.0.0.1:{port}/v1/collections/notes/search",
                          json={"query": "how deep is Lake Varno", "k": 1}, headers=auth,
                          timeout=10).json()
        assert hits["hits"][0]["doc_id"] == "seed:varno"
        missing = httpx.get(f"http://127.0.0.1:{port}/v1/collections/nope", headers=auth,
                            timeout=10)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        wrong = httpx.get(f"http://127.0.0.1:{port}/v1/collections",
                          headers={"Authorization": f"Bearer {WRONG}"}, timeout=10)
        assert wrong.status_code == 401
        upload = httpx.post(f"http://127.0.0.1:{port}/v1/collections/notes/documents",
                            files={"files": ("a.md", b"text")}, headers=auth, timeout=10)
        assert upload.status_code == 403  # a read key
    finally:
        stop(process)
    assert process.returncode is not None
    logged = log.read_text()
    assert "serving notes on http://127.0.0.1" in logged and "1 API key(s)" in logged
    assert '"GET /v1/collections HTTP/1.1" 401' in logged  # the access log is on
    assert KEY not in logged and WRONG not in logged  # and holds no key, right or wrong


def test_serve_without_the_server_extra_names_the_pip_install(tmp_path, monkeypatch):
    import importlib

    from click.testing import CliRunner

    from ragmix.cli.main import cli

    real = importlib.import_module

    def without_uvicorn(name, *args):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'")
        return real(name, *args)

    monkeypatch.setattr("ragmix._extras.importlib.import_module", without_uvicorn)
    folder = make_collection(tmp_path / "notes")
    result = CliRunner().invoke(cli, ["serve", "-c", str(folder)])
    assert result.exit_code == 1
    assert "install it with: pip install 'ragmix[server]'" in result.output
