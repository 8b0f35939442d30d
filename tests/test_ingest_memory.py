"""Ingest streams: its peak memory does not grow with the corpus, and it groups commits as before."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

from ragmix.store import Collection
from ragmix.types import Document

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split()


def _write_jsonl(path: Path, n_docs: int) -> Path:
    """A BEIR corpus.jsonl of ``n_docs`` rows of about 60 words: one chunk each."""
    rng = random.Random(n_docs)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_docs):
            text = f"marker{i} " + " ".join(rng.choice(WORDS) for _ in range(60))
            f.write(json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": text}) + "\n")
    return path


class _PeakAtIndexes:
    """A Progress that records the peak of Python allocations when ingest hands over to
    the index update (the FAISS and BM25 views are built from the whole store, as they must)."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self.stages: list[str] = []
        self.embedded = 0

    def start(self, stage: str, total: int | None) -> None:
        self.stages.append(stage)
        if stage == "updating indexes":
            self.peak = tracemalloc.get_traced_memory()[1]

    def advance(self, stage: str, n: int = 1) -> None:
        if stage == "embedding":
            self.embedded += n


def _ingest_peak(tmp_path: Path, n_docs: int) -> int:
    corpus = _write_jsonl(tmp_path / f"corpus{n_docs}.jsonl", n_docs)
    with Collection.create(tmp_path / f"col{n_docs}", encoder="hashing-256") as col:
        col.encoder  # noqa: B018 - built before measuring: its tables are no part of ingest
        progress = _PeakAtIndexes()
        tracemalloc.start()
        try:
            report = col.add([corpus], progress=progress, commit_chunks=64)
        finally:
            tracemalloc.stop()
        assert (report.added, report.chunks, progress.embedded) == (n_docs, n_docs, n_docs)
        assert col.backend.count_documents() == n_docs
        assert progress.peak is not None
        return progress.peak


def test_peak_memory_of_ingest_stays_flat_as_the_corpus_grows(tmp_path: Path) -> None:
    small = _ingest_peak(tmp_path, 2_000)
    large = _ingest_peak(tmp_path, 8_000)
    # Holding every document, chunk and vector (the old ingest) cost about 1,050 bytes
    # more per extra document here (8.70 MB against 2.42 MB). What still grows is the
    # .jsonl loader's index of ids seen (duplicate _id check), about 100 bytes a row.
    per_doc = (large - small) / 6_000
    assert per_doc < 300, f"peak {large} bytes for 8,000 docs, {small} for 2,000"


def _doc(doc_id: str, text: str) -> Document:
    return Document(doc_id=doc_id, text=text, source=f"{doc_id}.txt", content_hash=text)


class _Commits:
    """Records the chunks of each commit (one ``advance("embedding", n)`` per commit)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.stages: list[str] = []

    def start(self, stage: str, total: int | None) -> None:
        self.stages.append(stage)

    def advance(self, stage: str, n: int = 1) -> None:
        if stage == "embedding":
            self.sizes.append(n)


def test_commits_hold_whole_documents_until_commit_chunks(tmp_path: Path) -> None:
    texts = [" ".join(f"w{i}x{j}" for j in range(n)) for i, n in enumerate([3, 1, 4, 2, 2, 5])]
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        progress = _Commits()
        report = col.add_documents((_doc(f"d{i}", t) for i, t in enumerate(texts)),
                                   progress=progress, commit_chunks=4)
        assert report.added == 6
        # whole documents in order until a group reaches 4 chunks
        got = [len(col.chunker.chunk("x", t)) for t in texts]
        assert sum(progress.sizes) == report.chunks == sum(got)
        assert col.backend.generation == len(progress.sizes)
        assert progress.stages == ["reading", "loading encoder", "embedding", "updating indexes"]


def test_duplicates_in_one_run_are_stored_once(tmp_path: Path) -> None:
    docs = [_doc("a", "apple one"), _doc("b", "banana two"), _doc("a", "apple one"),
            _doc("c", "cherry three"), _doc("b", "banana changed")]
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        report = col.add_documents(iter(docs), commit_chunks=1)
        assert col.backend.count_documents() == 3
        stored = {d.doc_id: d.content_hash for d in col.documents()}
        assert stored == {"a": "apple one", "b": "banana changed", "c": "cherry three"}
        assert report.added == 3
        again = col.add_documents(iter(docs), commit_chunks=1)
        # the later b wins again, and is what is stored: nothing to do
        assert (again.unchanged, again.added, again.updated, again.chunks) == (3, 0, 0, 0)


def test_nothing_to_do_never_loads_the_encoder(tmp_path: Path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        col.add_documents([_doc("a", "apple one")])
    with Collection.open(tmp_path / "c") as col:
        progress = _Commits()
        report = col.add_documents([_doc("a", "apple one")], progress=progress)
        assert report.unchanged == 1 and col._encoder is None
        assert progress.stages == ["reading", "updating indexes"]
