"""`ragmix serve` as a real process on a free loopback port, over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

import httpx  # noqa: E402
from serving import make_collection  # noqa: E402

STARTUP_S = 60  # importing FastAPI and opening the collection, on a busy 2-core machine


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Terminate by PID; kill if it has not exited after a grace period."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen, url: str, log) -> httpx.Response:
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


def test_ragmix_serve_answers_over_http_and_stops_by_pid(tmp_path):
    folder = make_collection(tmp_path / "notes")
    port = _free_port()
    env = {**os.environ, "RAGMIX_API_KEYS": ""}
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragmix", "serve", "-c", str(folder), "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        response = _wait_ready(process, f"http://127.0.0.1:{port}/v1/collections", log)
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
        _stop(process)
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
