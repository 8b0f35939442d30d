"""`ragmix serve` as a real process on a free loopback port, over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

import httpx  # noqa: E402
from serving import free_port, make_collection, stop, wait_ready  # noqa: E402


def test_ragmix_serve_answers_over_http_and_stops_by_pid(tmp_path):
    folder = make_collection(tmp_path / "notes")
    port = free_port()
    env = {**os.environ, "RAGMIX_API_KEYS": ""}
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragmix", "serve", "-c", str(folder), "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        response = wait_ready(process, f"http://127.0.0.1:{port}/v1/collections", log)
        assert response.status_code == 200
        (info,) = response.json()["collections"]
        assert info["name"] == "notes" and info["documents"] == 2
        hits = httpx.post(f"http://127.0.0.1:{port}/v1/collections/notes/search",
                          json={"query": "how deep is Lake Varno", "k": 1}, timeout=10).json()
        assert hits["hits"][0]["doc_id"] == "seed:varno"
        missing = httpx.get(f"http://127.0.0.1:{port}/v1/collections/nope", timeout=10)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
    finally:
        stop(process)
    assert process.returncode is not None
    assert "serving notes on http://127.0.0.1" in log.read_text()


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
