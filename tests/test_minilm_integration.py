"""Integration: the real packaged all-MiniLM-L6-v2 on a small corpus the tests own.

``tests/fixtures/handbook/`` holds six short how-to documents on unrelated topics,
written for these tests; the user guide in docs/ is free to change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmix.encoders import load_encoder
from ragmix.store import Collection

HANDBOOK = Path(__file__).resolve().parent / "fixtures" / "handbook"

# Paraphrases that share (almost) no content word with their document: only the
# encoder's semantics can rank it first. Measured cosine margins over the next
# document: 0.25 (sourdough) to 0.58 (beekeeping).
PARAPHRASES = {
    "what stops a bee colony from dying in the cold season?": "beekeeping.md",
    "my bike has a flat, how do I repair it?": "bicycle.md",
    "why does the sea level go up and down along the shore twice a day?": "tides.md",
    "how often should I feed the yeast culture I bake bread with?": "sourdough.md",
    "what should I do in the first few moves of a game?": "chess.md",
    "why do some mountains explode?": "volcanoes.md",
}
MARGIN = 0.15  # cosine; unrelated short texts score about 0 to 0.2 under MiniLM

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def test_minilm_embeds_normalised_vectors(minilm) -> None:
    vectors = minilm.encode_documents(["a cat sits on the mat", "FAISS inner product search"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = minilm.encode_queries(["where is the cat?"])
    assert (query @ vectors.T)[0].argmax() == 0


def test_dense_search_ranks_the_paraphrased_document_first(tmp_path: Path, minilm) -> None:
    with Collection.create(tmp_path / "col", encoder=minilm) as col:
        report = col.add([HANDBOOK])
        assert report.added == report.chunks == len(list(HANDBOOK.glob("*.md")))
        for query, expected in PARAPHRASES.items():
            hits = col.search(query, k=report.chunks, mode="dense")  # one chunk per document
            assert Path(hits[0].source).name == expected, (query, hits[0].source)
            assert hits[0].score - hits[1].score > MARGIN, (query, hits[0].score, hits[1])
        # hybrid: the words and the meaning agree, so fusion keeps the document first
        for query, expected in {
            "how long can a sourdough starter rest in the refrigerator?": "sourdough.md",
            "what are neap tides and when do they happen?": "tides.md",
        }.items():
            top = col.search(query, k=3, mode="hybrid")
            assert Path(top[0].source).name == expected, (query, top[0].source)
    with Collection.open(tmp_path / "col") as col:  # the manifest names the encoder
        assert col.encoder.name == "all-MiniLM-L6-v2"


def test_int8_onnx_minilm_agrees_with_fp32(minilm) -> None:
    int8 = load_encoder("minilm-int8")
    assert (int8.name, int8.dim) == ("all-MiniLM-L6-v2-int8", 384)
    texts = [
        "Retrieval-augmented generation mixes a retriever with a generator.",
        "short",
        " ".join(["a very long passage about kill -9 and crash safety"] * 60),  # > 256 tokens
        "FAISS HNSW graphs trade memory for search speed",
    ]
    a, b = int8.encode_documents(texts, batch_size=2), minilm.encode_documents(texts)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(axis=1)  # (4,)
    assert cosine.min() > 0.995, cosine
    # order inside a batch must not matter: sorting by length is internal
    assert np.allclose(int8.encode_documents(texts[::-1])[::-1], a, atol=1e-5)
