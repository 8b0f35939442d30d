"""Reranking over the API: "rerank": true on search and ask uses the server's --rerank model."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import assert_problem, ingest, make_app, search  # noqa: E402

from ragmix.rerank import ScoreReranker  # noqa: E402


class Reversed:
    """Scores passages by their length, shortest first: an order no first stage gives."""

    name = "shortest"

    def __init__(self):
        self.calls, self.threads = 0, set()

    def score(self, query, texts):
        self.calls += 1
        self.threads.add(threading.get_ident())
        return -np.array([len(t) for t in texts], dtype=np.float64)


@pytest.fixture
def scorer():
    return Reversed()


@pytest.fixture
def client(tmp_path, scorer):
    loads = []

    def load():
        loads.append(1)
        return ScoreReranker(scorer)

    with TestClient(make_app(tmp_path, reranker=load)) as client:
        client.loads = loads
        yield client


def test_search_with_rerank_reorders_the_first_stage_and_keeps_its_scores(client, scorer):
    ingest(client, {"a.md": b"Zorbulators hum. " * 30, "b.md": b"Zorbulators glow."})
    plain = search(client, "zorbulators", k=3, retrieval="bm25")
    reranked = search(client, "zorbulators", k=3, retrieval="bm25", rerank=True, rerank_depth=3)
    assert [len(h["text"]) for h in reranked] == sorted(len(h["text"]) for h in reranked)
    first = {h["chunk_id"]: h["score"] for h in plain}
    assert all(h["retrieval_score"] == first[h["chunk_id"]] for h in reranked)
    assert all(h["retrieval_score"] is None for h in plain)
    assert scorer.calls == 1 and client.loads == [1]
    search(client, "zorbulators", k=2, rerank=True)
    assert client.loads == [1]  # loaded once, at the first request that asked


def test_ask_with_rerank_answers_from_reranked_passages(client, scorer):
    response = client.post("/v1/collections/notes/ask",
                           json={"question": "what is in the notes?", "mode": "stuff",
                                 "decoding": "free", "rerank": True, "k": 2})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert len(hits) == 2 and scorer.calls == 1
    assert all(h["retrieval_score"] is not None for h in hits)


def test_a_rerank_depth_out_of_bounds_is_a_422(client):
    response = client.post("/v1/collections/notes/search",
                           json={"query": "x", "rerank": True, "rerank_depth": 10_000})
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == "body.rerank_depth"


def test_rerank_on_a_server_without_a_reranker_says_how_to_start_one(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        response = client.post("/v1/collections/notes/search", json={"query": "x", "rerank": True})
        assert_problem(response, 422, "rerank_unavailable")
        assert "--rerank" in response.json()["detail"]
        assert "rerankers" in client.get("/v1/vocabulary").json()
