"""Integration: the real packaged all-MiniLM-L6-v2 over ragmix's own docs/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmix.encoders import load_encoder
from ragmix.store import Collection

DOCS = Path(__file__).resolve().parent.parent / "docs"

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


def test_dense_search_over_the_user_guide(tmp_path: Path, minilm) -> None:
    with Collection.create(tmp_path / "col", encoder=minilm) as col:
        report = col.add([DOCS])
        assert report.added == len(list(DOCS.glob("*.md")))
        cases = {
            "what survives if the process is killed with kill -9?": "collections.md",
            "can ragmix read PDF and HTML files?": "indexing.md",
            "how is reciprocal rank fusion computed?": "retrieval.md",
        }
        for query, expected in cases.items():
            for mode in ("dense", "hybrid"):
                top = col.search(query, k=3, mode=mode)
                assert Path(top[0].source).name == expected, (query, mode, top[0].source)
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
