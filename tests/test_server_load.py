"""The short version of bench/bench_serve.py: a real server process under concurrent clients,
and Schemathesis on its own OpenAPI. Errors are asserted, timings are not (bench_serve measures
them on a quiet machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")
pytest.importorskip("httpx", reason="the dev extra: pip install 'ragmix[dev]'")

from serving import make_collection  # noqa: E402

# The bench's own load and fuzz code, so that what make test runs is what the bench measures.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _serve_load import PacedGenerator, rss_mb, run_load, server_process  # noqa: E402

QUERIES = ["who founded Kelm", "how deep is Lake Varno", "when was Kelm founded",
           "does the lake freeze in winter", "fishermen on the lake shore"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    folder = make_collection(tmp / "notes")
    with server_process(folder, tmp / "data", tmp / "serve.log", token_ms=2) as running:
        yield running


def test_the_paced_generator_streams_its_answer_at_its_speed():
    pieces = []
    gen = PacedGenerator("one two three", token_s=0.0)
    assert gen.generate("q", on_token=pieces.append) == "one two three"
    assert "".join(pieces) == "one two three" and gen.generate("q") == "one two three"
    for _ in range(10):
        gen.generate("a prompt")
    assert len(gen.prompts) == 4  # a long load keeps no growing list of prompts


def test_eight_clients_searching_and_asking_get_no_errors(server):
    stats = run_load(server.url, "notes", QUERIES, clients=8, seconds=3)
    assert stats.errors == 0, stats.error_samples
    assert stats.latencies_ms["search"] and stats.latencies_ms["ask"]
    assert stats.requests == sum(map(len, stats.latencies_ms.values()))
    assert rss_mb(server.pid) > 10  # read from the server process, not this one


def test_schemathesis_finds_no_server_error_and_no_schema_break(server):
    pytest.importorskip("schemathesis", reason="the dev extra: pip install 'ragmix[dev]'")
    from _serve_fuzz import fuzz

    result = fuzz(server.url, "notes", cases=100)
    assert result.cases >= 100 and result.operations >= 15
    assert result.server_errors == 0, result.samples
    assert result.schema_violations == 0, result.samples
